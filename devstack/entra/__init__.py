"""The Entra ID emulator: discovery, JWKS with live key rotation, the v2/v1 token endpoints
(client credentials, on-behalf-of, resource-owner password, refresh token, authorization code
with PKCE, device code), interactive sign-in (authorize, a sign-in page with a second-factor
step, device login, sign-out), with Entra's error shapes and a control plane for tests. What it
reproduces, and what it simplifies: README.md here.

Public surface:
    create_app(tenant, material, *, base_url, clock=time.time) -> Starlette
    Entra       the in-process handle at `app.state.entra` (`.control`, `.keys`, `.sign()`)
    KeyRing     the signing keys (`.active`, `.jwks()`, `.add()`, `.promote()`, `.retire()`)
    msal_session(entra_url, verify)  an MSAL `http_client=` that works around MSAL dropping the
                port from the user-realm URL (needed for the password grant on a non-443 port)
"""

from devstack.entra.app import create_app
from devstack.entra.compat import msal_session
from devstack.entra.emulator import Entra
from devstack.entra.keys import KeyRing

__all__ = ["Entra", "KeyRing", "create_app", "msal_session"]
