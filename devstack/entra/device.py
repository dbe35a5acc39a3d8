"""The device code flow's endpoints: `/devicecode` starts a flow for a client, `/devicelogin` is
the page where the person types the user code and then signs in on the ordinary sign-in page
(which approves or declines the flow). Polling is the token endpoint's (`grants.py`); the
flows themselves are `devicecodes.py`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.entra import interactive, pages
from devstack.entra.authorize import DeviceRequest, Pending, target_of, trusted_app
from devstack.entra.claims import parse_claims
from devstack.entra.devicecodes import EXPIRES_IN
from devstack.entra.emulator import Entra
from devstack.entra.errors import InvalidRequest
from devstack.entra.http import cors_headers, read_form


def _entra(request: Request) -> Entra:
    entra: Entra = request.app.state.entra
    return entra


async def devicecode(request: Request) -> Response:
    entra = _entra(request)
    entra.directory.check_tenant(request.path_params["tenant"])
    form = await read_form(request)
    client_id = form.get("client_id", "").strip().lower()
    request.state.caller = {"appid": client_id} if client_id else None
    app = trusted_app(entra, client_id)
    scope = form.get("scope", "").strip()
    if not scope:
        raise InvalidRequest(
            900144, "The request body must contain the following parameter: 'scope'."
        )
    target_of(entra, scope)
    parse_claims(form.get("claims"))
    flow = entra.device_codes.start(app.client_id, scope, form.get("claims") or None)
    uri = f"{entra.base_url}/devicelogin"
    body: dict[str, Any] = {
        "user_code": flow.user_code,
        "device_code": flow.device_code,
        "verification_uri": uri,
        "expires_in": EXPIRES_IN,
        "interval": entra.device_codes.interval,
        "message": (
            f"To sign in, use a web browser to open the page {uri} and enter the code "
            f"{flow.user_code} to authenticate."
        ),
    }
    return JSONResponse(body, headers=cors_headers(request))


async def devicelogin_page(request: Request) -> Response:
    return pages.device_code("/devicelogin")


async def devicelogin(request: Request) -> Response:
    entra = _entra(request)
    form = await read_form(request)
    flow = entra.device_codes.by_user_code(form.get("otc", ""))
    if flow is None:
        return pages.device_code(
            "/devicelogin",
            error=InvalidRequest(
                70018,
                "Invalid verification code due to the user typing in a wrong user code for the "
                "device code flow. Authorization is not approved.",
            ),
        )
    app = trusted_app(entra, flow.client_id)
    request.state.caller = {"appid": app.client_id}
    device = DeviceRequest(app, flow, target_of(entra, flow.scope), parse_claims(flow.claims))
    handle = entra.pending.add(Pending(device))
    return interactive.sign_in_page(entra, handle, app)


ROUTES = [
    Route("/{tenant}/oauth2/v2.0/devicecode", devicecode, methods=["POST"]),
    Route("/devicelogin", devicelogin_page, methods=["GET"]),
    Route("/devicelogin", devicelogin, methods=["POST"]),
]
