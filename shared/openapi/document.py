"""The whole document: info, the security schemes (named after the tenant), tags, every path
and the components, assembled from `paths`, `schemas` and `components`."""

from __future__ import annotations

from typing import Any

from shared.domains.model import Domain
from shared.domains.routes import operations, registered
from shared.http.pipeline import CORRELATION_HEADER, SUBSCRIPTION_HEADER, SUBSCRIPTION_QUERY
from shared.openapi.components import HEADERS, PARAMETERS, RESPONSES
from shared.openapi.names import (
    EXTENSION_DELEGATED,
    EXTENSION_PERMISSIONS,
    OAUTH_SCHEME,
    SUBSCRIPTION_SCHEME,
)
from shared.openapi.paths import health_path, openapi_path, operation
from shared.openapi.schemas import ERROR_SCHEMA, HEALTH_SCHEMA, domain_schemas

TITLE = "Central API"
VERSION = "0.1.0"
PLACEHOLDER_AUTHORITY = "https://login.microsoftonline.com/YOUR-TENANT-ID"
PLACEHOLDER_CLIENT_ID = "YOUR-API-CLIENT-ID"


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
    paths: dict[str, Any] = {"/health": health_path(), "/openapi.json": openapi_path()}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, "Health": HEALTH_SCHEMA}
    for domain in domains:
        schemas.update(domain_schemas(domain))
        for op in operations(domain):
            item = paths.setdefault(_path(op.route), {})
            if "{id}" in op.route:
                item["parameters"] = [{"$ref": "#/components/parameters/Id"}]
            item[op.method.lower()] = operation(domain, op, app_id_uri)
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
                # Entra takes only `/.default` for client credentials: a named scope is refused
                # (AADSTS1002012), and the token carries every app role granted to the client.
                "clientCredentials": {
                    "tokenUrl": f"{authority}/oauth2/v2.0/token",
                    "scopes": {
                        f"{app_id_uri}/.default": "Every app role granted to the client app",
                    },
                },
            },
        },
    }
