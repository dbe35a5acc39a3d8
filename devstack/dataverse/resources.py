"""What a path under `/api/data/v9.2/` names: the service document, `$metadata`, a function or
action, an entity set, `$count` of one, a record by key, or one property of a record.

Keys are GUIDs (`contacts(<guid>)` or `contacts(contactid=<guid>)`); anything else in the
parentheses is a 400 as in Dataverse, an unknown first segment a 404
"Resource not found for the segment".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from devstack.dataverse.errors import BadRequest, NotImplementedByEmulator, SegmentNotFound
from devstack.dataverse.schema import Table

_SEGMENT = re.compile(r"([A-Za-z_$][A-Za-z0-9_.]*)(?:\((.*)\))?", re.DOTALL)
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
FUNCTIONS = {"WhoAmI": "GET", "CloseIncident": "POST"}


@dataclass(frozen=True)
class Resource:
    kind: str  # service | metadata | function | collection | count | entity | property
    table: Table | None = None
    key: str | None = None
    name: str | None = None  # function name or property name


def resolve(path: str, tables: Mapping[str, Table]) -> Resource:
    segments = path.split("/") if path else []
    if segments and segments[-1] == "":
        segments.pop()
    if not segments:
        return Resource("service")
    first = segments[0]
    if first == "$metadata" and len(segments) == 1:
        return Resource("metadata")
    match = _SEGMENT.fullmatch(first)
    if match is None:
        raise SegmentNotFound(first)
    name, key_text = match.groups()
    if name in FUNCTIONS and len(segments) == 1 and key_text in (None, ""):
        return Resource("function", name=name)
    table = tables.get(name)
    if table is None:
        raise SegmentNotFound(name)
    if key_text is None:
        if len(segments) == 1:
            return Resource("collection", table)
        if segments[1:] == ["$count"]:
            return Resource("count", table)
        raise SegmentNotFound(segments[1])
    key = parse_key(key_text, table)
    if len(segments) == 1:
        return Resource("entity", table, key)
    prop = segments[1]
    if len(segments) == 2 and table.property_type(prop) is not None:
        return Resource("property", table, key, prop)
    if table.navigation(prop) is not None:
        raise NotImplementedByEmulator("navigation property paths (use $expand)")
    raise SegmentNotFound(prop)


def parse_key(text: str, table: Table) -> str:
    body = text.strip()
    if "=" in body:
        name, _, body = body.partition("=")
        if name.strip() != table.key:
            if table.property_type(name.strip()) is not None:
                raise BadRequest(
                    f"The key '{name.strip()}' is not defined as an alternate key for "
                    f"entity '{table.logical_name}'."
                )
            raise BadRequest.query_syntax()
        body = body.strip()
    if not GUID.fullmatch(body):
        raise BadRequest.query_syntax()
    return body.lower()
