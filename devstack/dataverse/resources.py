"""What a path under `/api/data/v9.2/` names: the service document, `$metadata`, `$batch`, table
definitions (`EntityDefinitions...`), a function or action, an entity set, `$count` of one, a
record by key, or one property of a record.

Dataverse's functions and actions are PascalCase (`WhoAmI`, `BulkDelete`, `RetrieveVersion`),
its entity sets lower case: a PascalCase first segment that is not one the emulator implements,
and any bound operation (`contacts/Microsoft.Dynamics.CRM.CreateMultiple`), is a 501 naming it,
never a 404 that would read as "Dataverse has no such thing".

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
DEFINITIONS = "EntityDefinitions"
OTHER_DEFINITIONS = frozenset(
    {"RelationshipDefinitions", "GlobalOptionSetDefinitions", "ManagedPropertyDefinitions"}
)
OPERATION_PREFIX = "Microsoft.Dynamics.CRM."


@dataclass(frozen=True)
class Resource:
    # service | metadata | batch | definitions | function | collection | count | entity |
    # property
    kind: str
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
    if first == "$batch" and len(segments) == 1:
        return Resource("batch")
    match = _SEGMENT.fullmatch(first)
    if match is None:
        raise SegmentNotFound(first)
    name, key_text = match.groups()
    if name == DEFINITIONS:
        return Resource("definitions", name="/".join(segments))
    if name in OTHER_DEFINITIONS:
        raise NotImplementedByEmulator(f"{name} (only EntityDefinitions is served)")
    if name in FUNCTIONS and len(segments) == 1 and key_text in (None, ""):
        return Resource("function", name=name)
    table = tables.get(name)
    if table is None:
        operation = name.removeprefix(OPERATION_PREFIX)
        # "Contacts" is a mistyped entity set (Dataverse: 404), "BulkDelete" an operation
        if operation[:1].isupper() and operation.lower() not in tables:
            raise NotImplementedByEmulator(f"the function or action '{operation}'")
        raise SegmentNotFound(name)
    if len(segments) > 1 and segments[1].startswith(OPERATION_PREFIX):
        operation = segments[1].removeprefix(OPERATION_PREFIX).split("(")[0]
        raise NotImplementedByEmulator(f"the bound function or action '{operation}'")
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
