"""One Web API operation: what a request (or one part of a `$batch`) names, answered by `Reads`,
`Writes` or the table definitions. `handle` raises `DataverseError`s; the caller renders them
(`devstack.dataverse.http` for a request, `devstack.dataverse.batch` for a part).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.datastructures import Headers

from devstack.dataverse import metadata
from devstack.dataverse.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    NotImplementedByEmulator,
)
from devstack.dataverse.options import parse_options
from devstack.dataverse.render import Annotations
from devstack.dataverse.replies import Conditions, Prefer, Reply
from devstack.dataverse.resources import FUNCTIONS, Resource, resolve
from devstack.dataverse.security import Principal

if TYPE_CHECKING:
    from devstack.dataverse.app import Dataverse

_ETAG = re.compile(r'(?:W/)?"(\d+)"')


@dataclass(frozen=True)
class Operation:
    """A request as the Web API reads it: `path` is relative to `/api/data/v9.2/`."""

    method: str
    path: str
    params: Sequence[tuple[str, str]]
    headers: Headers
    body: bytes = b""


def handle(dv: Dataverse, principal: Principal, op: Operation) -> Reply:
    """One operation, answered by `Reads`, `Writes` or the definitions; errors are raised."""
    path, method, body, params = op.path, op.method, op.body, op.params
    resource = resolve(path, dv.tables)
    prefer = parse_prefer(op.headers.getlist("prefer"))
    conditions = parse_conditions(op.headers.get("if-match"), op.headers.get("if-none-match"))
    reads, writes = dv.reads, dv.writes
    if resource.kind == "batch":
        _allow(method, "POST")  # a POST reaches here only from inside a $batch
        raise BadRequest("A $batch request cannot contain another $batch request.")
    if resource.kind == "definitions":
        assert resource.name is not None
        if method != "GET":
            raise NotImplementedByEmulator(
                "changes to table definitions (EntityDefinitions is read-only)"
            )
        return dv.definitions.get(resource.name, params)
    if resource.kind == "service":
        _allow(method, "GET")
        return Reply(200, metadata.service_document(dv.api_root, dv.tables))
    if resource.kind == "metadata":
        _allow(method, "GET")
        return Reply(200, text=metadata.csdl(dv.tables), media_type="application/xml")
    if resource.kind == "function":
        assert resource.name is not None
        if method != FUNCTIONS[resource.name]:
            raise NotFound(
                f"No HTTP resource was found that matches the request URI '{dv.api_root}/{path}'.",
                code="",
            )
        if resource.name == "WhoAmI":
            return reads.whoami(principal)
        return writes.close_incident(principal, body)
    table = resource.table
    assert table is not None
    collection = resource.kind in ("collection", "count") and method == "GET"
    options = parse_options(params, table, dv.tables, collection=collection)
    if resource.kind == "collection":
        if method == "GET":
            return reads.query(principal, table, options, prefer)
        _allow(method, "POST")
        return writes.create(principal, table, body, options, prefer)
    if resource.kind == "count":
        _allow(method, "GET")
        return reads.count(principal, table, options)
    key = _key(resource)
    if resource.kind == "property":
        if method in ("PUT", "DELETE"):
            raise NotImplementedByEmulator(f"{method} of a single property (use PATCH)")
        _allow(method, "GET")
        assert resource.name is not None
        return reads.property(principal, table, key, resource.name)
    if method == "GET":
        return reads.retrieve(principal, table, key, options, prefer, conditions)
    if method == "PATCH":
        return writes.upsert(principal, table, key, body, options, prefer, conditions)
    if method == "DELETE":
        return writes.delete(principal, table, key, conditions)
    if method == "PUT":
        raise NotImplementedByEmulator("PUT on a record (use PATCH)")
    raise MethodNotAllowed(method)


def _key(resource: Resource) -> str:
    assert resource.key is not None
    return resource.key


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(method)


# --- request headers ---------------------------------------------------------------------------


def parse_prefer(values: list[str]) -> Prefer:
    """`Prefer` preferences, from any number of headers, comma separated, values maybe quoted."""
    found: dict[str, str] = {}
    for header in values:
        for item in re.findall(r'(?:[^,"]|"[^"]*")+', header):
            name, _, value = item.strip().partition("=")
            found[name.strip().lower()] = value.strip()
    raw_annotations = found.get("odata.include-annotations")
    return Prefer(
        return_representation=found.get("return") == "representation",
        maxpagesize=found.get("odata.maxpagesize"),
        annotations=Annotations.parse(raw_annotations),
        annotations_header=raw_annotations,
    )


def parse_conditions(if_match: str | None, if_none_match: str | None) -> Conditions:
    def condition(value: str | None) -> str | frozenset[int] | None:
        if value is None or value.strip().lower() in ("", "null"):
            return None
        if value.strip() == "*":
            return "*"
        return frozenset(int(v) for v in _ETAG.findall(value))

    return Conditions(if_match=condition(if_match), if_none_match=condition(if_none_match))
