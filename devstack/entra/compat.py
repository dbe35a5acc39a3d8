"""Client-side shim for one MSAL quirk against an emulator on a non-default port.

MSAL Python's resource-owner password flow first asks `https://{host}/common/userrealm/...`,
building that URL from the authority's *host name* only (`msal/authority.py`: the instance is
`urlparse(authority).hostname`), so the port is lost and the request goes to port 443. Real
Entra listens on 443, so this only bites emulators (MSAL Python issue 259; its fix, PR 484, kept
the port for tenant discovery only). Nothing the emulator answers can help: the request never
reaches it, and MSAL keeps no port to follow. `msal_session(entra_url, verify)` returns a
`requests.Session` to pass as MSAL's `http_client=`: it puts the port back on those requests and
leaves every other URL alone.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests


class _UserRealmPortSession(requests.Session):
    def __init__(self, entra_url: str) -> None:
        super().__init__()
        parts = urlsplit(entra_url)
        self._host = parts.hostname or ""
        self._netloc = parts.netloc

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if isinstance(url, str):
            parts = urlsplit(url)
            if parts.netloc == self._host and parts.path.startswith("/common/userrealm/"):
                url = urlunsplit(parts._replace(netloc=self._netloc))
        return super().request(method, url, *args, **kwargs)


def msal_session(entra_url: str, verify: str | bool = True) -> requests.Session:
    """An HTTP client for MSAL (`http_client=`) that reaches the emulator's user-realm endpoint.

    `trust_env` is off so that a `REQUESTS_CA_BUNDLE` in the environment cannot override
    `verify` (requests prefers the environment over a session's own setting).
    """
    session = _UserRealmPortSession(entra_url)
    session.verify = verify
    session.trust_env = False
    return session
