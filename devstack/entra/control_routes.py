"""The Entra emulator's own control routes, mounted next to the shared ones under `/_emulator/`.

    GET    /_emulator/keys          -> {"keys": [KEY], "jwks": {...}}
                                       KEY = {"kid", "x5t", "active"}
    POST   /_emulator/keys          {"action": "add"}                 -> 201 KEY (published only)
                                    {"action": "promote", "kid": ...} -> KEY (now signing)
                                    {"action": "retire", "kid": ...}  -> KEY (unpublished)
    POST   /_emulator/sign          {"claims": {...}, "headers": {...}?} -> {"token": ...}
    GET    /_emulator/apps          -> {"apps": {name: APP}}
                                       APP = {"client_id", "access_token_version",
                                              "optional_claims"}
    PUT    /_emulator/apps/{name}   {"access_token_version": 1|2?, "optional_claims": [...]?}
                                    -> {"name", "access_token_version", "optional_claims"}
    GET    /_emulator/consents      -> {"consents": [CONSENT]}
                                       CONSENT = {"client", "resource", "scopes"} (app names)
    POST   /_emulator/consents      CONSENT -> CONSENT now held (scopes added)
    DELETE /_emulator/consents      CONSENT, scopes optional (none: revoke all) -> CONSENT now held
    GET    /_emulator/apps/{name}/federated-credentials
                                    -> {"federated_credentials": [FIC]}
                                       FIC = {"name", "issuer", "subject", "audiences"}
                                       ("{issuer}" stands for this tenant's v2.0 issuer)
    PUT    /_emulator/apps/{name}/federated-credentials
                                    {"federated_credentials": [FIC]} -> the same, now held
                                    (replaces them all; [] leaves the app without any)

Errors answer 400 `{"error": "..."}`.
"""

from __future__ import annotations

from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.entra.emulator import Entra
from devstack.entra.errors import ControlError
from devstack.tenant import App, FederatedCredential


def _entra(request: Request) -> Entra:
    entra: Entra = request.app.state.entra
    return entra


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise ControlError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ControlError("the body must be a JSON object")
    return data


def _string(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ControlError(f"{name!r} must be a non-empty string")
    return value


def _strings(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ControlError(f"{name!r} must be a list of strings")
    return value


def _key_facts(entra: Entra, kid: str) -> dict[str, Any]:
    return next(k for k in entra.keys.describe() if k["kid"] == kid)


async def get_keys(request: Request) -> Response:
    entra = _entra(request)
    return JSONResponse({"keys": entra.keys.describe(), "jwks": entra.keys.jwks()})


async def post_keys(request: Request) -> Response:
    entra = _entra(request)
    data = await _json_object(request)
    action = data.get("action")
    if action == "add":
        key = entra.keys.add()
        return JSONResponse(_key_facts(entra, key.kid), 201)
    if action == "promote":
        kid = _string(data, "kid")
        entra.keys.promote(kid)
        return JSONResponse(_key_facts(entra, kid))
    if action == "retire":
        kid = _string(data, "kid")
        facts = _key_facts(entra, kid) if entra.keys.find(kid) else None
        entra.keys.retire(kid)
        assert facts is not None
        return JSONResponse({**facts, "active": False})
    raise ControlError("action must be 'add', 'promote' or 'retire'")


async def post_sign(request: Request) -> Response:
    entra = _entra(request)
    data = await _json_object(request)
    claims = data.get("claims")
    headers = data.get("headers") or {}
    if not isinstance(claims, dict) or not isinstance(headers, dict):
        raise ControlError("'claims' (and 'headers', if given) must be JSON objects")
    try:
        token = entra.sign(claims, headers)
    except (TypeError, ValueError, NotImplementedError, jwt.PyJWTError) as exc:
        raise ControlError(f"cannot sign: {exc}") from None
    return JSONResponse({"token": token})


def _app_facts(entra: Entra, app: App) -> dict[str, Any]:
    return {
        "access_token_version": entra.directory.version(app),
        "optional_claims": list(entra.directory.optional_claims(app)),
    }


async def get_apps(request: Request) -> Response:
    entra = _entra(request)
    apps = {
        a.name: {"client_id": a.client_id, **_app_facts(entra, a)}
        for a in entra.tenant.apps.values()
    }
    return JSONResponse({"apps": apps})


async def put_app(request: Request) -> Response:
    """The registration's token configuration: `accessTokenAcceptedVersion` and the optional
    access-token claims (`idtyp` is the one the minter knows)."""
    entra = _entra(request)
    name = request.path_params["name"]
    data = await _json_object(request)
    if not data.keys() & {"access_token_version", "optional_claims"}:
        raise ControlError("give 'access_token_version', 'optional_claims' or both")
    version = data.get("access_token_version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise ControlError("'access_token_version' must be 1 or 2")
    claims = _strings(data, "optional_claims") if "optional_claims" in data else None
    app = entra.directory.configure(name, version=version, optional_claims=claims)
    return JSONResponse({"name": name, **_app_facts(entra, app)})


async def get_consents(request: Request) -> Response:
    entra = _entra(request)
    return JSONResponse({"consents": [_consent(c) for c in entra.directory.consents()]})


async def post_consent(request: Request) -> Response:
    entra = _entra(request)
    data = await _json_object(request)
    consent = entra.directory.grant(
        _string(data, "client"), _string(data, "resource"), _strings(data, "scopes")
    )
    return JSONResponse(_consent(consent))


async def delete_consent(request: Request) -> Response:
    entra = _entra(request)
    data = await _json_object(request)
    scopes = _strings(data, "scopes") if "scopes" in data else None
    consent = entra.directory.revoke(_string(data, "client"), _string(data, "resource"), scopes)
    return JSONResponse(_consent(consent))


def _fics(entra: Entra, name: str) -> Response:
    app = entra.directory.app_named(name)
    return JSONResponse(
        {
            "federated_credentials": [
                {
                    "name": f.name,
                    "issuer": f.issuer,
                    "subject": f.subject,
                    "audiences": list(f.audiences),
                }
                for f in entra.directory.federated_credentials(app)
            ]
        }
    )


async def get_fics(request: Request) -> Response:
    return _fics(_entra(request), request.path_params["name"])


async def put_fics(request: Request) -> Response:
    entra = _entra(request)
    name = request.path_params["name"]
    data = await _json_object(request)
    records = data.get("federated_credentials")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ControlError("'federated_credentials' must be a list of objects")
    entra.directory.set_federated_credentials(
        name,
        [
            FederatedCredential(
                name,
                _string(r, "name"),
                _string(r, "issuer"),
                _string(r, "subject"),
                tuple(_strings(r, "audiences")),
            )
            for r in records
        ],
    )
    return _fics(entra, name)


def _consent(consent: Any) -> dict[str, Any]:
    return {"client": consent.client, "resource": consent.resource, "scopes": list(consent.scopes)}


def _guard(handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            response: Response = await handler(request)
        except ControlError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return response

    return endpoint


ROUTES = [
    Route("/_emulator/keys", _guard(get_keys), methods=["GET"]),
    Route("/_emulator/keys", _guard(post_keys), methods=["POST"]),
    Route("/_emulator/sign", _guard(post_sign), methods=["POST"]),
    Route("/_emulator/apps", _guard(get_apps), methods=["GET"]),
    Route("/_emulator/apps/{name}", _guard(put_app), methods=["PUT"]),
    Route("/_emulator/consents", _guard(get_consents), methods=["GET"]),
    Route("/_emulator/consents", _guard(post_consent), methods=["POST"]),
    Route("/_emulator/consents", _guard(delete_consent), methods=["DELETE"]),
    Route("/_emulator/apps/{name}/federated-credentials", _guard(get_fics), methods=["GET"]),
    Route("/_emulator/apps/{name}/federated-credentials", _guard(put_fics), methods=["PUT"]),
]
