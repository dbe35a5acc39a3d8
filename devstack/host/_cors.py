"""CORS as the Functions host does it: the host answers preflights itself, and adds the CORS
headers to every answer for an allowed origin.

Where the policy comes from, in each place the app runs:

- Core Tools: `Host.CORS` (origins, comma-separated, or `*`) and `Host.CORSCredentials` in
  local.settings.json (`make settings` writes both from the dev stack's settings);
- Azure: the function app's platform CORS (`az functionapp cors add --allowed-origins`, and
  `supportCredentials` in the site's `cors` configuration), or API Management's `cors` policy;
- the dev host: `DEVSTACK_CORS` and `DEVSTACK_CORS_CREDENTIALS`, the same two values. Unset, the
  dev host does no CORS, as Core Tools without `Host.CORS`; the dev stack sets `DEVSTACK_CORS` to
  the sample single-page app's origin (devstack/spa.py) unless the environment sets it.

The policy is the host's (azure-functions-host, `CorsOptionsSetup`): the configured origins,
credentials when asked for, any header and any method, and nothing exposed. ASP.NET Core's CORS
middleware applies it:

- a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered 204 by the
  host and never reaches a function: for an allowed origin with `Access-Control-Allow-Origin`,
  the requested method and headers echoed in `Access-Control-Allow-Methods` and `-Headers`, and
  `Access-Control-Allow-Credentials: true` with credentials; for any other origin with no CORS
  header at all, so that the browser refuses the call;
- any other request from an allowed origin runs as usual, and its answer (whoever gives it, the
  function or the host) gets `Access-Control-Allow-Origin` (and `-Credentials`); from another
  origin it runs too, without them, and the browser hides the answer from the page.

The allowed origin is echoed, with `Vary: Origin`, except under `*` without credentials, where it
is `*`. `*` with credentials is refused at start, as ASP.NET Core refuses that policy.

What a browser may read of an answer beyond the CORS-safelisted headers is the app's business,
not the host's: this API lists it in host.json's `customHeaders`
(`Access-Control-Expose-Headers`), which the host adds to every response.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from devstack.host._errors import HostConfigError

ORIGINS_SETTING = "DEVSTACK_CORS"
CREDENTIALS_SETTING = "DEVSTACK_CORS_CREDENTIALS"

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class CorsPolicy:
    """`origins`: allowed origins, lower case without a trailing slash; `any_origin` for `*`.
    Neither: CORS is off and the host answers nothing of it."""

    origins: frozenset[str] = frozenset()
    any_origin: bool = False
    credentials: bool = False

    @classmethod
    def parse(cls, origins: str, credentials: str = "") -> CorsPolicy:
        """From the two settings' text, as Core Tools reads `Host.CORS` and `CORSCredentials`.
        HostConfigError names the setting that is malformed, never its value."""
        allow = {part.strip() for part in origins.split(",") if part.strip()}
        flag = credentials.strip().lower()
        if flag not in ("", "true", "false"):
            raise HostConfigError(f"{CREDENTIALS_SETTING} must be true or false")
        any_origin = "*" in allow
        allow.discard("*")
        normalised = frozenset(_origin(text) for text in allow)
        if any_origin and flag == "true":
            raise HostConfigError(
                f"{ORIGINS_SETTING}: '*' cannot be combined with {CREDENTIALS_SETTING}=true "
                "(the CORS protocol allows credentials only for named origins)"
            )
        return cls(origins=normalised, any_origin=any_origin, credentials=flag == "true")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CorsPolicy:
        return cls.parse(environ.get(ORIGINS_SETTING, ""), environ.get(CREDENTIALS_SETTING, ""))

    @property
    def enabled(self) -> bool:
        return self.any_origin or bool(self.origins)

    def environment(self) -> dict[str, str]:
        """The settings that give another host process this policy."""
        origins = ",".join(sorted(self.origins) + (["*"] if self.any_origin else []))
        return {ORIGINS_SETTING: origins, CREDENTIALS_SETTING: str(self.credentials).lower()}

    def preflight(self, method: str, headers: Mapping[str, str]) -> Headers | None:
        """The headers of the host's 204 when this request is a preflight the host answers;
        None when it is not one (it goes on to the functions)."""
        if not self.enabled or method.upper() != "OPTIONS":
            return None
        requested = headers.get("access-control-request-method", "").strip()
        if "origin" not in headers or not requested:
            return None
        answer = self._allow(headers["origin"])
        if answer:
            answer.append((b"access-control-allow-methods", requested.encode("latin-1")))
            asked = headers.get("access-control-request-headers", "").strip()
            if asked:
                answer.append((b"access-control-allow-headers", asked.encode("latin-1")))
        return answer

    def response_headers(self, headers: Mapping[str, str]) -> Headers:
        """What the host adds to the answer of any other request (none for a refused origin)."""
        if not self.enabled or "origin" not in headers:
            return []
        return self._allow(headers["origin"])

    def _allow(self, origin: str) -> Headers:
        if self.any_origin and not self.credentials:
            return [(b"access-control-allow-origin", b"*")]
        if not self.any_origin and origin.strip().lower().rstrip("/") not in self.origins:
            return []
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"vary", b"Origin"),
        ]
        if self.credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers


def _origin(text: str) -> str:
    """`scheme://host[:port]`, lower case: what a browser sends as `Origin`."""
    parts = urlsplit(text.lower().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise HostConfigError(
            f"{ORIGINS_SETTING} must be '*' or origins like https://app.example.com, "
            "comma-separated"
        )
    try:
        parts.port  # noqa: B018 - raises for a malformed port
    except ValueError as exc:
        raise HostConfigError(f"{ORIGINS_SETTING}: an origin has a malformed port") from exc
    return f"{parts.scheme}://{parts.netloc}"
