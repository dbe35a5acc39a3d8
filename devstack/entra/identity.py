"""The managed-identity endpoint of App Service and Azure Functions, for the demo tenant.

On Azure the platform runs a local token service for the app and hands it two environment
variables: `IDENTITY_ENDPOINT` (a plain-HTTP loopback URL) and `IDENTITY_HEADER` (a value the
app sends back as `X-IDENTITY-HEADER`, so that a request forged through the app, SSRF, gets
nothing). azure-identity's `ManagedIdentityCredential` and redis-entraid (both through MSAL's
`ManagedIdentityClient`) find it by those variables alone. The dev stack serves it the same way,
on its own port, and `stack.env` carries both variables.

    GET /msi/token?api-version=2019-08-01&resource=<uri>[&client_id=|object_id=|mi_res_id=]
        X-IDENTITY-HEADER: <IDENTITY_HEADER>
    200 {"access_token", "expires_on": "<epoch seconds>", "resource", "token_type": "Bearer",
         "client_id"}
    4xx {"statusCode": n, "message": "...", "correlationId": "..."}

Only user-assigned identities are declared (`[managed_identities]` in tenant.toml), so a request
must name one; a request naming none, or one not assigned, gets App Service's 400. Tokens are
signed with the tenant's active key, issued by the tenant's v2.0 issuer, with `oid` and `sub` the
identity's object id and `aud` the resource as asked: for `api://AzureADTokenExchange` that is
the token Entra accepts as a federated client assertion (devstack/entra/federated.py). Azure's
tokens live about a day; `PUT /_emulator/lifetime {"seconds": n}` shortens them for tests
(MSAL's managed-identity cache treats a token with under 5 minutes left as expired).

The shapes follow Microsoft's REST reference for App Service and MSAL Python's parser
(`msal/managed_identity.py`); the status codes for a missing header or a bad api-version are the
emulator's reading, not checked against the live service.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.control import ControlPlane, emulator_app
from devstack.entra.emulator import Entra
from devstack.tenant import ManagedIdentity

API_VERSION = "2019-08-01"
PATH = "/msi/token"
DEFAULT_LIFETIME = 24 * 3600
# The identity parameters App Service accepts (MSAL sends `mi_res_id` for a resource id).
_ID_PARAMETERS = ("client_id", "object_id", "principal_id", "mi_res_id")


class IdentityEndpoint:
    """The in-process handle (`app.state.identity`): the header, the lifetime, the log."""

    def __init__(self, entra: Entra, header: str) -> None:
        self.entra = entra
        self.header = header
        self.lifetime = DEFAULT_LIFETIME
        self.control = ControlPlane("identity", on_reset=self.reset)

    def reset(self) -> None:
        self.lifetime = DEFAULT_LIFETIME

    def identity(self, params: dict[str, str]) -> ManagedIdentity | None:
        named = [(k, params[k].lower()) for k in _ID_PARAMETERS if params.get(k)]
        if len(named) != 1:
            return None
        kind, value = named[0]
        for mi in self.entra.tenant.managed_identities.values():
            if value in (mi.client_id, mi.principal_id) and kind != "mi_res_id":
                return mi
            if kind == "mi_res_id" and value.rstrip("/").endswith(f"/{mi.name}"):
                return mi
        return None

    def token(self, mi: ManagedIdentity, resource: str) -> dict[str, Any]:
        now = int(self.entra.clock())
        expires_on = now + self.lifetime
        claims = {
            "aud": resource,
            "iss": self.entra.urls.issuer(2),
            "iat": now,
            "nbf": now,
            "exp": expires_on,
            "azp": mi.client_id,
            "azpacr": "2",
            "idtyp": "app",
            "oid": mi.principal_id,
            "sub": mi.principal_id,
            "tid": self.entra.tenant.id,
            "uti": uuid.uuid4().hex,
            "ver": "2.0",
        }
        return {
            "access_token": self.entra.sign(claims),
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": mi.client_id,
        }


def _error(status: int, message: str) -> Response:
    return JSONResponse(
        {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}, status
    )


async def token(request: Request) -> Response:
    endpoint: IdentityEndpoint = request.app.state.identity
    sent = request.headers.get("x-identity-header", "")
    if not sent or not hmac.compare_digest(sent.encode(), endpoint.header.encode()):
        return _error(401, "The X-IDENTITY-HEADER header is missing or does not match.")
    params = dict(request.query_params)
    if params.get("api-version") != API_VERSION:
        return _error(400, f"The api-version is missing or not supported; use {API_VERSION}.")
    resource = params.get("resource", "").strip()
    if not resource:
        return _error(400, "The resource parameter is missing.")
    mi = endpoint.identity(params)
    if mi is None:
        return _error(
            400,
            "No User Assigned or Delegated Managed Identity found for specified "
            "ClientId/ResourceId/PrincipalId.",
        )
    request.state.caller = {"appid": mi.client_id}
    return JSONResponse(endpoint.token(mi, resource), headers={"Cache-Control": "no-store"})


async def put_lifetime(request: Request) -> Response:
    endpoint: IdentityEndpoint = request.app.state.identity
    data = await request.json()
    seconds = data.get("seconds") if isinstance(data, dict) else None
    if type(seconds) is not int or not 1 <= seconds <= 7 * 24 * 3600:
        raise ValueError("'seconds' must be a whole number of seconds, up to a week")
    endpoint.lifetime = seconds
    return JSONResponse({"seconds": seconds})


def create_identity_app(entra: Entra, *, header: str) -> Starlette:
    """The endpoint for `entra`'s tenant, answering requests that send `header`.

    `app.state.identity` is the in-process handle (`IdentityEndpoint`); its control plane
    (`/_emulator/requests`, `/_emulator/faults`, ...) works as the other emulators' do, plus
    `PUT /_emulator/lifetime`."""
    endpoint = IdentityEndpoint(entra, header)
    app = emulator_app(
        endpoint.control,
        routes=[Route(PATH, token, methods=["GET"])],
        control_routes=[Route("/_emulator/lifetime", put_lifetime, methods=["PUT"])],
    )
    app.state.identity = endpoint
    return app
