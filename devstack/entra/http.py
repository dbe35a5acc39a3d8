"""HTTP surface of the emulator: routes, request parsing, and the one place errors become HTTP.

Handlers are thin: check the tenant in the path, parse, call one service, render JSON.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.entra.directory import MULTI_TENANT_ALIASES
from devstack.entra.emulator import Entra
from devstack.entra.errors import InvalidClient, InvalidRequest, ProtocolError
from devstack.entra.grants import Audit, TokenRequest
from devstack.entra.metadata import openid_configuration, user_realm

MAX_BODY = 1 << 20  # Entra refuses large bodies; so do we, before parsing
_NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
# Browsers call the token, device-code, discovery and key endpoints cross-origin (a single-page
# app's MSAL.js does). Every preflight is answered; the discovery documents, keys and device
# codes are readable from any origin; token answers only for spa codes and refresh tokens
# (`Audit.cross_origin`), as Entra does: CORS for spa redirect URIs only.
_PREFLIGHT_MAX_AGE = "86400"


def _entra(request: Request) -> Entra:
    entra: Entra = request.app.state.entra
    return entra


# --- errors --------------------------------------------------------------------------------------


def render_error(request: Request, exc: Exception) -> Response:
    """Entra's error JSON: `error`, `error_description` with trace/correlation/timestamp lines,
    `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`, `suberror`, `claims`."""
    assert isinstance(exc, ProtocolError)
    entra = _entra(request)
    trace_id = str(uuid.uuid4())
    correlation_id = _correlation_id(request)
    stamp = dt.datetime.fromtimestamp(entra.clock(), dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body: dict[str, Any] = {
        "error": exc.error,
        "error_description": (
            f"AADSTS{exc.code}: {exc.message}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}"
        ),
        "error_codes": [exc.code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": entra.urls.error_uri(exc.code),
    }
    if exc.suberror:
        body["suberror"] = exc.suberror
    if exc.claims:
        body["claims"] = exc.claims
    readable = getattr(request.state, "cross_origin", True)
    headers = {**_response_headers(trace_id, correlation_id), **cors_headers(request, readable)}
    return JSONResponse(body, exc.status, headers=headers)


def cors_headers(request: Request, readable: bool = True) -> dict[str, str]:
    """For a cross-origin request (one with `Origin`) whose answer the page may read."""
    if not readable or "origin" not in request.headers:
        return {}
    return {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "*"}


async def preflight(request: Request) -> Response:
    """A CORS preflight (OPTIONS) to a protocol endpoint: any origin, POST and GET, the headers
    asked for (MSAL.js sends its telemetry headers)."""
    asked = request.headers.get("access-control-request-headers", "")
    headers = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE,
    }
    if asked:
        headers["Access-Control-Allow-Headers"] = asked
    return Response(status_code=204, headers=headers)


def _correlation_id(request: Request) -> str:
    """The client's `client-request-id` when it is a GUID (as Entra echoes it), else a new one."""
    sent = request.headers.get("client-request-id", "")
    try:
        return str(uuid.UUID(sent))
    except ValueError:
        return str(uuid.uuid4())


def _response_headers(trace_id: str, correlation_id: str) -> dict[str, str]:
    return {**_NO_STORE, "x-ms-request-id": trace_id, "client-request-id": correlation_id}


# --- discovery -----------------------------------------------------------------------------------


async def openid_configuration_v2(request: Request) -> Response:
    return _discovery(request, version=2)


async def openid_configuration_v1(request: Request) -> Response:
    return _discovery(request, version=1)


def _discovery(request: Request, *, version: int) -> Response:
    entra = _entra(request)
    segment = entra.directory.check_tenant(request.path_params["tenant"])
    document = openid_configuration(entra.urls, segment, version)
    return JSONResponse(document, headers=cors_headers(request))


async def jwks(request: Request) -> Response:
    entra = _entra(request)
    entra.directory.check_tenant(request.path_params["tenant"])
    return JSONResponse(entra.keys.jwks(), headers=cors_headers(request))


async def userrealm(request: Request) -> Response:
    entra = _entra(request)
    return JSONResponse(user_realm(entra.tenant, request.path_params["username"]))


# --- token endpoint ------------------------------------------------------------------------------


async def token_v2(request: Request) -> Response:
    return await _token(request, version=2)


async def token_v1(request: Request) -> Response:
    return await _token(request, version=1)


async def _token(request: Request, *, version: int) -> Response:
    entra = _entra(request)
    if request.method != "POST":
        raise InvalidRequest(
            900561,
            "The endpoint only accepts POST, OPTIONS requests. "
            f"Received a {request.method} request.",
        )
    segment = entra.directory.check_tenant(request.path_params["tenant"])
    form = await read_form(request)
    basic = _basic_credentials(request)
    audit = Audit()
    request.state.cross_origin = False
    try:
        result = entra.token_service.exchange(
            TokenRequest(
                form=form,
                basic=basic,
                multi_tenant_alias=segment in MULTI_TENANT_ALIASES,
                endpoint_version=version,
                origin=request.headers.get("origin"),
            ),
            audit,
        )
    finally:
        request.state.grant_type = audit.grant_type
        request.state.caller = audit.caller or None
        request.state.cross_origin = audit.cross_origin
        request.state.client_auth = audit.client_auth
    correlation_id = _correlation_id(request)
    cors = cors_headers(request, audit.cross_origin)
    return JSONResponse(
        result, headers={**_response_headers(str(uuid.uuid4()), correlation_id), **cors}
    )


async def read_form(request: Request) -> dict[str, str]:
    """The url-encoded body; the first value wins when a parameter repeats."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidRequest(90015, "Requested query string is too long.")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest(
            900144, "The request body must contain the following parameter: 'grant_type'."
        ) from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """`Authorization: Basic` client credentials (client_secret_basic), url-decoded per RFC 6749."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient(
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        ) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


ROUTES = [
    Route("/{tenant}/oauth2/v2.0/token", preflight, methods=["OPTIONS"]),
    Route("/{tenant}/oauth2/token", preflight, methods=["OPTIONS"]),
    Route("/{tenant}/oauth2/v2.0/devicecode", preflight, methods=["OPTIONS"]),
    Route("/{tenant}/v2.0/.well-known/openid-configuration", preflight, methods=["OPTIONS"]),
    Route("/{tenant}/discovery/v2.0/keys", preflight, methods=["OPTIONS"]),
    Route(
        "/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration_v2, methods=["GET"]
    ),
    Route("/{tenant}/.well-known/openid-configuration", openid_configuration_v1, methods=["GET"]),
    Route("/{tenant}/discovery/v2.0/keys", jwks, methods=["GET"]),
    Route("/{tenant}/discovery/keys", jwks, methods=["GET"]),
    Route("/common/userrealm/{username:path}", userrealm, methods=["GET"]),
    Route(
        "/{tenant}/oauth2/v2.0/token", token_v2, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]
    ),
    Route("/{tenant}/oauth2/token", token_v1, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
]
