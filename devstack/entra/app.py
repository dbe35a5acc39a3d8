"""`create_app`: the Entra ID emulator as a Starlette app, wrapped in the shared control plane."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from devstack.control import ControlPlane
from devstack.entra import control_routes, http
from devstack.entra.emulator import Clock, Entra
from devstack.entra.errors import ProtocolError
from devstack.pki import Material
from devstack.tenant import Tenant


def create_app(
    tenant: Tenant, material: Material, *, base_url: str, clock: Clock = time.time
) -> Starlette:
    """The emulator for `tenant`, reachable at `base_url` (e.g. `https://localhost:7443`).

    `app.state.entra` is the in-process handle (`devstack.entra.Entra`): `.control`, `.keys`,
    `.sign(claims, headers)`.
    """
    entra = Entra(tenant, material, base_url=base_url, clock=clock)
    app = Starlette(
        routes=[*entra.control.routes(extra=control_routes.ROUTES), *http.ROUTES],
        middleware=[Middleware(_ControlPlaneMiddleware, control=entra.control)],
        exception_handlers={ProtocolError: http.render_error},
    )
    app.state.entra = entra
    return app


class _ControlPlaneMiddleware:
    """`ControlPlane.wrap` as middleware, so the object handed out stays the Starlette app."""

    def __init__(self, app: ASGIApp, control: ControlPlane) -> None:
        self._wrapped = control.wrap(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._wrapped(scope, receive, send)
