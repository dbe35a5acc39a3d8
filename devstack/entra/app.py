"""`create_app`: the Entra ID emulator as a Starlette app, wrapped in the shared control plane."""

from __future__ import annotations

import time

from starlette.applications import Starlette

from devstack.control import emulator_app
from devstack.entra import control_routes, device, http, interactive
from devstack.entra.emulator import Clock, Entra
from devstack.entra.errors import ProtocolError
from devstack.latency import LatencySetting
from devstack.pki import Material
from devstack.tenant import Tenant


def create_app(
    tenant: Tenant,
    material: Material,
    *,
    base_url: str,
    clock: Clock = time.time,
    latency: LatencySetting | None = None,
) -> Starlette:
    """The emulator for `tenant`, reachable at `base_url` (e.g. `https://localhost:7443`),
    answering with the latency profile `latency` (default: none; devstack/latency.py).

    `app.state.entra` is the in-process handle (`devstack.entra.Entra`): `.control`, `.keys`,
    `.sign(claims, headers)`.
    """
    entra = Entra(tenant, material, base_url=base_url, clock=clock, latency=latency)
    app = emulator_app(
        entra.control,
        routes=[*http.ROUTES, *interactive.ROUTES, *device.ROUTES],
        control_routes=control_routes.ROUTES,
        exception_handlers={ProtocolError: http.render_error},
    )
    app.state.entra = entra
    return app
