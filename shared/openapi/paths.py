"""Paths: one operation per `shared.domains.routes.Operation`, with the scopes its `Policy`
accepts, its parameters, responses and links; and the two anonymous endpoints."""

from __future__ import annotations

from typing import Any

from shared.domains.model import Domain, Text
from shared.domains.routes import Operation, operations
from shared.domains.service import MAX_SEARCH_LENGTH
from shared.http.pipeline import CORRELATION_HEADER
from shared.openapi.components import ERROR_NAMES
from shared.openapi.names import (
    EXTENSION_DELEGATED,
    EXTENSION_PERMISSIONS,
    OAUTH_SCHEME,
    SUBSCRIPTION_SCHEME,
)

# The error statuses an operation can answer, by kind (the contract's tables). Dataverse's 429
# is never passed on (throttling that cannot be waited out is a 503); a 429 is the API's own:
# the subscription's rate limit or the per-caller cap on concurrent requests, which every
# protected operation applies.
COMMON_ERRORS = ("400", "401", "403", "429", "500", "502", "503", "504")
ERRORS_BY_KIND: dict[str, tuple[str, ...]] = {
    "list": (),
    "get": ("404",),
    "create": ("413", "415"),
    "update": ("404", "412", "413", "415"),
}


def operation(domain: Domain, op: Operation, app_id_uri: str) -> dict[str, Any]:
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
    return {**success, **{s: {"$ref": f"#/components/responses/{ERROR_NAMES[s]}"} for s in errors}}


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


# --- the anonymous endpoints --------------------------------------------------------------


def health_path() -> dict[str, Any]:
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


def openapi_path() -> dict[str, Any]:
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
