"""`GET /api/openapi.json`: the OpenAPI 3.1 description of this API, generated from the same
declarations the code serves.

Paths, parameters, bodies and record schemas come from each `Domain` and from
`shared.domains.routes.operations`; the scopes an operation names come from its `Policy`. Only
the tenant's authority and the API's client id come from settings, read per request; without
settings the document still renders, with placeholders. It is built on first request (per
tenant and client id) and kept, so importing this module builds nothing.

Every domain whose blueprint was built (`shared.domains.routes.blueprint`, which `function_app.py`
registers) is described, so adding a domain needs nothing here; a test compares this document
with the functions the app registers.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import azure.functions as func

from shared.domains.model import GUID, Domain, Field, Text
from shared.domains.paging import MAX_PAGE_TOKEN_LENGTH
from shared.domains.routes import Operation, operations, registered
from shared.domains.service import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_SEARCH_LENGTH
from shared.http.pipeline import CORRELATION_HEADER, SUBSCRIPTION_HEADER, SUBSCRIPTION_QUERY
from shared.settings import SettingsError, get_settings

TITLE = "Central API"
VERSION = "0.1.0"
PLACEHOLDER_AUTHORITY = "https://login.microsoftonline.com/YOUR-TENANT-ID"
PLACEHOLDER_CLIENT_ID = "YOUR-API-CLIENT-ID"
SUBSCRIPTION_SCHEME = "subscriptionKey"
OAUTH_SCHEME = "entraId"
EXTENSION_DELEGATED = "x-user-delegated"
EXTENSION_PERMISSIONS = "x-required-permissions"

# The error statuses an operation can answer, by kind (the contract's tables). Dataverse's 429
# is never passed on (throttling that cannot be waited out is a 503); a 429 is the API's own
# per-caller cap on concurrent requests, which every protected operation applies.
COMMON_ERRORS = ("400", "401", "403", "429", "500", "502", "503", "504")
ERRORS_BY_KIND: dict[str, tuple[str, ...]] = {
    "list": (),
    "get": ("404",),
    "create": ("413", "415"),
    "update": ("404", "412", "413", "415"),
}

bp = func.Blueprint()


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    authority, client_id = _tenant()
    return func.HttpResponse(
        _rendered(authority, client_id),
        status_code=200,
        mimetype="application/json",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def _tenant() -> tuple[str, str]:
    try:
        settings = get_settings()
    except SettingsError:
        return PLACEHOLDER_AUTHORITY, PLACEHOLDER_CLIENT_ID
    return settings.authority, settings.api_client_id


@lru_cache(maxsize=4)
def _rendered(authority: str, client_id: str) -> bytes:
    return json.dumps(document(authority=authority, client_id=client_id)).encode("utf-8")


def document(
    *,
    authority: str = PLACEHOLDER_AUTHORITY,
    client_id: str = PLACEHOLDER_CLIENT_ID,
    domains: tuple[Domain, ...] | None = None,
) -> dict[str, Any]:
    """The whole OpenAPI document, as a JSON-ready dict (of the registered domains, unless
    `domains` says otherwise)."""
    domains = registered() if domains is None else domains
    app_id_uri = f"api://{client_id}"
    paths: dict[str, Any] = {"/health": _health_path(), "/openapi.json": _openapi_path()}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, "Health": HEALTH_SCHEMA}
    for domain in domains:
        schemas.update(_domain_schemas(domain))
        for op in operations(domain):
            item = paths.setdefault(_path(op.route), {})
            if "{id}" in op.route:
                item["parameters"] = [{"$ref": "#/components/parameters/Id"}]
            item[op.method.lower()] = _operation(domain, op, app_id_uri)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": _description(domains, app_id_uri),
        },
        "servers": [{"url": "/api", "description": "This API, wherever it is hosted."}],
        "tags": [
            *({"name": d.title, "description": d.description} for d in domains),
            {"name": "Service", "description": "Readiness and this document; anonymous."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": PARAMETERS,
            "headers": HEADERS,
            "responses": RESPONSES,
            "securitySchemes": _security_schemes(authority, app_id_uri, domains),
        },
    }


def _path(route: str) -> str:
    return "/" + route.strip("/")


def _description(domains: tuple[Domain, ...], app_id_uri: str) -> str:
    app_only = [f"`/{d.route}`" for d in domains if not d.delegated]
    lines = [
        "Every endpoint except `/health` and `/openapi.json` needs two credentials:",
        "",
        f"1. a subscription key in the `{SUBSCRIPTION_HEADER}` header (or, where the "
        f"deployment allows it, in the `{SUBSCRIPTION_QUERY}` query parameter);",
        "2. an Entra ID access token for this API in `Authorization: Bearer <token>`.",
        "",
        "The token decides how the API calls the backend. A **user-delegated** token (a user "
        "signed in to a client app; its scopes are in `scp`) is exchanged On-Behalf-Of the user, "
        "so the backend applies that user's own permissions. An **application** token (client "
        f"credentials, requested with `{app_id_uri}/.default`; its app roles are in `roles`) "
        "calls the backend as the API's application user.",
        "",
        "Reads accept `{domain}.read` or `{domain}.readwrite`; writes need `{domain}.readwrite`, "
        "as a delegated scope or as an app role of the same name. Each operation lists them in "
        f"`security` and `{EXTENSION_PERMISSIONS}`; `{EXTENSION_DELEGATED}` says whether it "
        "accepts user-delegated tokens at all.",
    ]
    if app_only:
        lines.append(f"Application tokens only: {', '.join(app_only)}.")
    lines += [
        "",
        "Every error has the same JSON body (`statusCode`, `message`, `code`, `correlationId`) "
        f"and every response of a protected endpoint carries `{CORRELATION_HEADER}`; send your "
        "own (8 to 64 letters, digits, `.`, `_`, `-`) to follow a request through the logs.",
    ]
    return "\n".join(lines)


def _security_schemes(
    authority: str, app_id_uri: str, domains: tuple[Domain, ...]
) -> dict[str, Any]:
    scopes = {
        f"{app_id_uri}/{d.name}.{level}": f"{verb} {d.title.lower()}"
        for d in domains
        for level, verb in (("read", "Read"), ("readwrite", "Read and write"))
    }
    return {
        SUBSCRIPTION_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": SUBSCRIPTION_HEADER,
            "description": "The key of your subscription (primary or secondary).",
        },
        OAUTH_SCHEME: {
            "type": "oauth2",
            "description": "Entra ID access tokens for this API (v1 or v2). User apps request "
            "the scopes they need (delegated); daemon apps request "
            f"`{app_id_uri}/.default` and receive the app roles granted to them, which carry "
            "the same names as the scopes.",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": f"{authority}/oauth2/v2.0/authorize",
                    "tokenUrl": f"{authority}/oauth2/v2.0/token",
                    "scopes": scopes,
                },
                "clientCredentials": {
                    "tokenUrl": f"{authority}/oauth2/v2.0/token",
                    "scopes": {
                        f"{app_id_uri}/.default": "Every app role granted to the client app",
                        **scopes,
                    },
                },
            },
        },
    }


# --- operations ---------------------------------------------------------------------------


def _operation(domain: Domain, op: Operation, app_id_uri: str) -> dict[str, Any]:
    required = op.policy.required
    who = (
        "user-delegated or application tokens"
        if op.policy.delegated
        else "application tokens only (a user-delegated token gets 403)"
    )
    result: dict[str, Any] = {
        "operationId": op.name,
        "summary": op.summary,
        "description": f"Needs {' or '.join(f'`{s}`' for s in required)}; accepts {who}.",
        "tags": [domain.title],
        "security": [
            {SUBSCRIPTION_SCHEME: [], OAUTH_SCHEME: [f"{app_id_uri}/{scope}"]} for scope in required
        ],
        EXTENSION_PERMISSIONS: list(required),
        EXTENSION_DELEGATED: op.policy.delegated,
        "parameters": [*_parameters(domain, op), {"$ref": "#/components/parameters/CorrelationId"}],
        "responses": _responses(domain, op),
    }
    if op.kind in ("create", "update"):
        name = f"{domain.resource}{'Create' if op.kind == 'create' else 'Update'}"
        result["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    return result


def _parameters(domain: Domain, op: Operation) -> list[dict[str, Any]]:
    if op.kind == "update":
        return [{"$ref": "#/components/parameters/IfMatch"}]
    if op.kind != "list":
        return []
    params: list[dict[str, Any]] = [
        {"$ref": "#/components/parameters/PageSize"},
        {"$ref": "#/components/parameters/PageToken"},
    ]
    if "q" in op.params:
        names = [f"`{name}`" for name in domain.search]
        searched = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        params.append(
            {
                "name": "q",
                "in": "query",
                "required": False,
                "description": f"Only {domain.route} whose {searched} contains this text "
                "(case-insensitive; every character is matched literally, wildcards included).",
                "schema": Text(MAX_SEARCH_LENGTH).schema(),
            }
        )
    for flt in domain.filters:
        if flt.param in op.params:
            field = domain.by_name[flt.field]
            params.append(
                {
                    "name": flt.param,
                    "in": "query",
                    "required": False,
                    "description": flt.description,
                    "schema": field.kind.schema(),
                }
            )
    return params


def _responses(domain: Domain, op: Operation) -> dict[str, Any]:
    record = {"$ref": f"#/components/schemas/{domain.resource}"}
    cid = {CORRELATION_HEADER: {"$ref": "#/components/headers/CorrelationId"}}
    etag = {"ETag": {"$ref": "#/components/headers/ETag"}}
    success: dict[str, Any]
    if op.kind == "list":
        schema = {"$ref": f"#/components/schemas/{domain.resource}List"}
        success = {"200": _json(f"A page of {domain.route}.", schema, cid)}
    elif op.kind == "create":
        location = {"Location": {"$ref": "#/components/headers/Location"}}
        success = {"201": _json(f"The new {domain.name}.", record, {**cid, **etag, **location})}
        success["201"]["links"] = _links(domain, ("get", "update"))
    else:
        what = "updated" if op.kind == "update" else "requested"
        success = {"200": _json(f"The {what} {domain.name}.", record, {**cid, **etag})}
        success["200"]["links"] = _links(domain, ("update",))
    errors = sorted({*COMMON_ERRORS, *ERRORS_BY_KIND[op.kind]})
    return {**success, **{s: {"$ref": f"#/components/responses/{_ERROR_NAMES[s]}"} for s in errors}}


def _links(domain: Domain, kinds: tuple[str, ...]) -> dict[str, Any]:
    """How a returned record leads to the operations on it (OpenAPI links)."""
    by_kind = {op.kind: op for op in operations(domain)}
    links: dict[str, Any] = {}
    for kind in kinds:
        parameters = {"id": "$response.body#/id"}
        if kind == "update":
            parameters["header.If-Match"] = "$response.body#/etag"
        links[f"{kind.capitalize()}{domain.resource}"] = {
            "operationId": by_kind[kind].name,
            "parameters": parameters,
        }
    return links


def _json(description: str, schema: dict[str, Any], headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": schema}},
    }


# --- schemas ------------------------------------------------------------------------------


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _stored(schema: dict[str, Any]) -> dict[str, Any]:
    """A field as the API returns it: types and formats only, because the backend may hold
    values other systems wrote, within the API's input rules or not."""
    return {k: v for k, v in schema.items() if k in ("type", "format", "enum")}


def _input(f: Field, *, allow_null: bool) -> dict[str, Any]:
    schema = f.kind.schema()
    described = _nullable(schema) if allow_null else dict(schema)
    return {"description": f.description, **described}


def _domain_schemas(domain: Domain) -> dict[str, Any]:
    name = domain.resource
    properties: dict[str, Any] = {
        "id": {"type": "string", "format": "uuid", "readOnly": True, "description": "The id."}
    }
    for f in domain.fields:
        properties[f.name] = {
            "description": f.description,
            **({} if f.writable else {"readOnly": True}),
            **_nullable(_stored(f.kind.schema())),
        }
    properties["etag"] = {
        "type": "string",
        "readOnly": True,
        "description": "The record's version; send it in `If-Match` to update only this version.",
    }
    writable = [f for f in domain.fields if f.writable]
    nullable = {f.name for f in writable if f.nullable and not f.required}
    return {
        name: {
            "type": "object",
            "description": domain.description,
            "properties": properties,
            "required": list(properties),
        },
        f"{name}List": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
                "nextPageToken": {
                    "type": ["string", "null"],
                    "description": "Pass as `pageToken` (with the same other parameters) for the "
                    "next page; null on the last page. Opaque, and only for this caller.",
                },
            },
            "required": ["items", "nextPageToken"],
        },
        f"{name}Create": {
            "type": "object",
            "description": f"A new {domain.name}. Fields not given are left empty.",
            "properties": {f.name: _input(f, allow_null=f.name in nullable) for f in writable},
            "required": [f.name for f in writable if f.required],
            "additionalProperties": False,
        },
        f"{name}Update": {
            "type": "object",
            "description": "The fields to change, and only those; null clears a field.",
            "properties": {f.name: _input(f, allow_null=f.name in nullable) for f in writable},
            "minProperties": 1,
            "additionalProperties": False,
        },
    }


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error, from every protected endpoint.",
    "properties": {
        "statusCode": {"type": "integer", "description": "The HTTP status again."},
        "message": {"type": "string", "description": "What went wrong, for a developer."},
        "code": {"type": "string", "description": "Stable and machine-readable."},
        "correlationId": {"type": "string", "description": "Quote it when asking for help."},
    },
    "required": ["statusCode", "message", "code", "correlationId"],
}

HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "checks": {
            "type": "object",
            "properties": {
                "settings": {"type": "string", "enum": ["ok", "invalid"]},
                "signingKeys": {
                    "type": "string",
                    # stale: older than their maximum age and not refreshed, still ready
                    "enum": ["ok", "stale", "unavailable", "unknown"],
                },
                "dataverse": {"type": "string", "enum": ["reachable", "unreachable", "unknown"]},
                # off: no REDIS_URL; degraded: failing, the API works without it (still 200)
                "sharedStore": {"type": "string", "enum": ["ok", "degraded", "off", "unknown"]},
            },
            "additionalProperties": {"type": "string"},
        },
    },
    "required": ["status", "checks"],
}

PARAMETERS: dict[str, Any] = {
    "Id": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The record's id: a GUID in its canonical 36-character form.",
        "schema": {"type": "string", "format": "uuid", "pattern": GUID.pattern},
    },
    "PageSize": {
        "name": "pageSize",
        "in": "query",
        "required": False,
        "description": f"Records per page (default {DEFAULT_PAGE_SIZE}).",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_SIZE,
            "default": DEFAULT_PAGE_SIZE,
        },
    },
    "PageToken": {
        "name": "pageToken",
        "in": "query",
        "required": False,
        "description": "`nextPageToken` of the previous page, opaque. Valid only for the caller "
        "who received it, with the same other parameters (`pageSize` may change), for a limited "
        "time; otherwise 400, and paging starts again from the first page.",
        "schema": {
            "type": "string",
            "maxLength": MAX_PAGE_TOKEN_LENGTH,
            "pattern": "^[A-Za-z0-9_-]+$",
        },
    },
    "IfMatch": {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": "The `etag` of the version you read: the update is refused with 412 if "
        "the record changed since. Without it (or with `*`) the update applies to whatever "
        "version is current. An update never creates a record.",
        "schema": {"type": "string", "pattern": r'^(\*|(W/)?"[\x21\x23-\x7e]{1,64}")$'},
    },
    "CorrelationId": {
        "name": CORRELATION_HEADER,
        "in": "header",
        "required": False,
        "description": "Your id for this request (8 to 64 letters, digits, `.`, `_`, `-`), "
        "echoed in the response and written to the logs; any other value is replaced by a new "
        "id, not refused.",
        "schema": {"type": "string"},
    },
}

HEADERS: dict[str, Any] = {
    "CorrelationId": {
        "description": "The request's correlation id (yours, or a new one).",
        "required": True,
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": "The record's version, as in its `etag` field.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Location": {
        "description": "The new record's URL.",
        "required": True,
        "schema": {"type": "string"},
    },
    "WWWAuthenticate": {
        "description": "Why the token was not accepted (`invalid_token`, `insufficient_scope` "
        "with the scopes needed, or `insufficient_claims` with the claims to request).",
        "schema": {"type": "string"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before retrying, when known.",
        "schema": {"type": "integer", "minimum": 1},
    },
}


def _error(description: str, *headers: str) -> dict[str, Any]:
    named = {CORRELATION_HEADER: {"$ref": "#/components/headers/CorrelationId"}}
    for header in headers:
        named[header] = {"$ref": f"#/components/headers/{header.replace('-', '')}"}
    return {
        "description": description,
        "headers": named,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_ERROR_NAMES = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "403": "Forbidden",
    "404": "NotFound",
    "412": "PreconditionFailed",
    "413": "PayloadTooLarge",
    "415": "UnsupportedMediaType",
    "429": "TooManyRequests",
    "500": "InternalServerError",
    "502": "BadGateway",
    "503": "ServiceUnavailable",
    "504": "GatewayTimeout",
}

RESPONSES: dict[str, Any] = {
    "BadRequest": _error(
        "A parameter, header or body field is not acceptable; the message names it and says "
        "why. Nothing was sent to the backend. Also: the backend refused the request as invalid."
    ),
    "Unauthorized": _error(
        "The subscription key is missing or unknown, or the access token is missing, invalid or "
        'expired: get a new token. With `error="insufficient_claims"` in WWW-Authenticate '
        "the backend needs more (for example MFA): sign the user in again requesting the "
        "claims it carries.",
        "WWW-Authenticate",
    ),
    "Forbidden": _error(
        "The token lacks the scopes or app roles this operation needs (`insufficient_scope`; "
        "the message and WWW-Authenticate name them), this operation takes application tokens "
        "only (`application_only`), the client application that obtained the token may not "
        "call this API, or not with this subscription key (`client_app_not_allowed`), consent "
        "for the backend is missing (`consent_required`), or the backend denied the calling "
        "user (`backend_forbidden`).",
        "WWW-Authenticate",
    ),
    "NotFound": _error("No such record, or the caller may not see it."),
    "PreconditionFailed": _error(
        "The record changed since the etag in If-Match was read: read it again and retry."
    ),
    "PayloadTooLarge": _error("The body is larger than the API accepts (64 KiB)."),
    "UnsupportedMediaType": _error("Send the body as `application/json`."),
    "TooManyRequests": _error(
        "`too_many_concurrent_requests`: this caller (the user, or the application for "
        "application tokens) already has as many requests in progress as the API allows one "
        "caller at once. Nothing was sent to the backend. Wait for one of them to finish, or "
        "retry after Retry-After seconds.",
        "Retry-After",
    ),
    "InternalServerError": _error("The API is misconfigured or failed; quote the correlation id."),
    "BadGateway": _error("The backend or the identity platform failed or answered nonsense."),
    "ServiceUnavailable": _error(
        "The backend is throttling requests, or the identity platform is not answering: retry "
        "after Retry-After seconds.",
        "Retry-After",
    ),
    "GatewayTimeout": _error(
        "The backend or the identity platform did not answer in time; retry later.",
        "Retry-After",
    ),
}


# --- the anonymous endpoints --------------------------------------------------------------


def _health_path() -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Health"}
    return {
        "get": {
            "operationId": "health",
            "summary": "Readiness of this instance",
            "description": "Whether settings load, the tenant's signing keys are available and "
            "the backend is reachable. Anonymous; results are kept for a short while. "
            "`sharedStore` (the store shared by all instances) is informative: `degraded` still "
            "answers 200, since each instance works without it.",
            "tags": ["Service"],
            "security": [],
            "responses": {
                "200": {
                    "description": "Ready.",
                    "content": {"application/json": {"schema": schema}},
                },
                "503": {
                    "description": "Not ready; `checks` says what is missing.",
                    "content": {"application/json": {"schema": schema}},
                },
            },
        }
    }


def _openapi_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "tags": ["Service"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 description of this API.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
