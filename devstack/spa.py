"""The sample single-page app (samples/spa), served by the dev stack on its own origin.

A browser app is served from one origin and calls the API on another, so the dev stack serves it
on a port of its own (`DEVSTACK_SPA_PORT`, default 7070; http://localhost:7070/), and the API
host allows that origin by CORS (devstack/host/_cors.py). What it serves:

- `/`, `/app.js`, `/app.css`: the app itself, `samples/spa/public/`, as written (no build step);
- `/config.js`: generated from the running stack (`SpaConfig`): the Entra emulator's authority,
  the client app's id, the API's URL and scopes, and the demo subscription key. A real SPA ships
  these in its own configuration; none of them is a secret (see the README: a subscription key
  in a browser app names the app, it does not authenticate it; the token does);
- `/vendor/msal-browser.min.js`: `@azure/msal-browser`'s browser bundle, from
  `samples/spa/node_modules` as `npm ci` installs it from the committed package-lock.json
  (`make run` and `make test` run it when the lock file is newer than the install). Without it
  the app cannot sign in, and `/vendor/...` answers 404 naming the command to run.

Every answer has a Content-Security-Policy that lets the page load scripts only from itself and
talk only to itself, the API and the Entra emulator; that is the policy a real deployment of such
an app would send too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devstack.config import ROOT

SPA_DIR = ROOT / "samples" / "spa"
PUBLIC_DIR = SPA_DIR / "public"
MSAL_BUNDLE = SPA_DIR / "node_modules" / "@azure" / "msal-browser" / "lib" / "msal-browser.min.js"
SPA_CLIENT = "portal-spa"  # the demo tenant's client app the sample signs in to (a spa platform)


@dataclass(frozen=True)
class SpaConfig:
    """What the app reads from `/config.js` (as `window.CENTRAL_API_CONFIG`)."""

    client_id: str
    authority: str  # {entra}/{tenant id}
    redirect_uri: str  # the app's own URL, a `spa` redirect URI of the client app
    api_url: str  # ending in /api
    scopes: list[str]
    subscription_key: str

    @property
    def known_authority(self) -> str:
        """The authority's host and port: MSAL.js trusts it without asking Microsoft's
        instance discovery, which knows nothing of the emulator."""
        return urlsplit(self.authority).netloc

    def script(self) -> str:
        values = asdict(self) | {"known_authorities": [self.known_authority]}
        return f"window.CENTRAL_API_CONFIG = {json.dumps(values, indent=2)};\n"


def create_app(config: SpaConfig, *, bundle: Path = MSAL_BUNDLE) -> ASGIApp:
    """The app's files and its generated config, behind the security headers."""

    async def config_js(request: Request) -> Response:
        return Response(
            config.script(),
            media_type="text/javascript",
            headers={"Cache-Control": "no-store"},
        )

    async def msal(request: Request) -> Response:
        if not bundle.is_file():
            return PlainTextResponse(
                "@azure/msal-browser is not installed: run `npm ci` in samples/spa "
                "(make run does it when npm is installed).",
                status_code=404,
            )
        return FileResponse(bundle, media_type="text/javascript")

    app = Starlette(
        routes=[
            Route("/config.js", config_js),
            Route("/vendor/msal-browser.min.js", msal),
            Mount("/", StaticFiles(directory=PUBLIC_DIR, html=True)),
        ]
    )
    return _SecurityHeaders(app, _policy(config))


def _policy(config: SpaConfig) -> str:
    api = _origin(config.api_url)
    entra = _origin(config.authority)
    return "; ".join(
        [
            "default-src 'self'",
            f"connect-src 'self' {api} {entra}",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'self'",  # MSAL.js may frame its own redirect page, nobody else
            f"form-action 'self' {entra}",
        ]
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _SecurityHeaders:
    def __init__(self, app: ASGIApp, policy: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", policy.encode("ascii")),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
