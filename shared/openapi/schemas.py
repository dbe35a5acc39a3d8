"""Record schemas from a `Domain`'s fields, and the fixed schemas (errors, health).

A field's kind describes its own input (`Kind.schema`); the record as returned keeps only the
types and formats (`_stored`), because the backend may hold values other systems wrote.
"""

from __future__ import annotations

from typing import Any

from shared.domains.model import Domain, Field


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


def domain_schemas(domain: Domain) -> dict[str, Any]:
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
