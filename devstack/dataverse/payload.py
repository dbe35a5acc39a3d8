"""Request bodies for create and update, read as Dataverse reads them.

A body is a JSON object of column values and `<navigation>@odata.bind` references
(`"parentcustomerid_account@odata.bind": "/accounts(<guid>)"`). Values are converted to the
column's type; anything Dataverse would refuse is a `PayloadError` (0x80048d19, the cause after
"InnerException") or a `ValidationError` (0x80044331). Columns the server owns (`createdon`,
`fullname`, `versionnumber`...) are ignored, as Dataverse ignores them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from devstack.dataverse.errors import NotImplementedByEmulator, PayloadError, ValidationError
from devstack.dataverse.schema import Column, Lookup, Table

MAX_BODY_BYTES = 4 * 1024 * 1024
_BIND = re.compile(r"(?:https?://[^/]+/api/data/v9\.\d+)?/?([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)\)")


@dataclass(frozen=True)
class Reference:
    entity_set: str
    key: str


@dataclass
class Changes:
    values: dict[str, Any] = field(default_factory=dict)
    binds: dict[str, tuple[Lookup, Reference | None]] = field(default_factory=dict)
    key: str | None = None


def parse_body(raw: bytes, table: Table) -> Changes:
    data = _json_object(raw, table)
    changes = Changes()
    for name, item in data.items():
        if name.startswith("@"):
            continue  # @odata.type and friends
        prop, at, annotation = name.partition("@")
        if at:
            if annotation == "odata.bind":
                _bind(changes, table, prop, item)
            elif table.property_type(prop) is None and table.navigation(prop) is None:
                raise _undeclared(table, prop)
            continue
        if table.navigation(prop) is not None:
            raise NotImplementedByEmulator("deep insert through navigation properties")
        if table.lookup_by_column(prop) is not None:
            raise PayloadError(
                table.entity_set,
                "Microsoft.Crm.CrmException: CRM do not support direct update of Entity "
                "Reference properties, Use Navigation properties instead.",
            )
        column = table.column(prop)
        if column is None:
            raise PayloadError(
                table.entity_set,
                f"Microsoft.Crm.CrmException: Invalid property '{prop}' was found in entity "
                f"'Microsoft.Dynamics.CRM.{table.logical_name}'. ---> "
                "Microsoft.OData.ODataException: Does not support untyped value in non-open type.",
            )
        if prop == table.key:
            changes.key = _convert(table, column, item)
            continue
        if column.read_only:
            continue
        changes.values[prop] = _convert(table, column, item)
    return changes


def _json_object(raw: bytes, table: Table) -> dict[str, Any]:
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadError(table.entity_set, "System.ArgumentException: The body is too large.")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, val in pairs:
            if key in seen:
                raise PayloadError(
                    table.entity_set,
                    "Microsoft.OData.ODataException: Multiple property annotations or properties "
                    f"with the name '{key}' were detected.",
                )
            seen[key] = val
        return seen

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    try:
        data = json.loads(
            raw.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constants
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PayloadError(
            table.entity_set,
            "Microsoft.OData.ODataException: Invalid JSON. The body could not be read as a JSON "
            "object.",
        ) from None
    if not isinstance(data, dict):
        raise PayloadError(
            table.entity_set,
            "Microsoft.OData.ODataException: An unexpected node was found when reading from the "
            "JSON reader. A 'StartObject' node was expected.",
        )
    return data


def _undeclared(table: Table, prop: str) -> PayloadError:
    return PayloadError(
        table.entity_set,
        f"Microsoft.OData.ODataException: An undeclared property '{prop}' which only has "
        "property annotations in the payload but no property value was found in the payload. "
        "In OData, only declared navigation properties and declared named streams can be "
        "represented as properties without values.",
    )


def _bind(changes: Changes, table: Table, navigation: str, item: Any) -> None:
    found = table.navigation(navigation)
    if found is None:
        raise _undeclared(table, navigation)
    lookup, target_set = found
    if lookup.read_only:
        raise _undeclared(table, navigation)
    if item is None:
        changes.binds[lookup.name] = (lookup, None)
        return
    match = _BIND.fullmatch(item) if isinstance(item, str) else None
    if match is None:
        raise PayloadError(
            table.entity_set,
            f"Microsoft.OData.ODataException: The value of the '{navigation}@odata.bind' "
            "annotation is not a valid entity reference such as '/accounts(<guid>)'.",
        )
    entity_set, key_text = match.groups()
    if entity_set != target_set:
        raise PayloadError(
            table.entity_set,
            f"Microsoft.OData.ODataException: A resource of entity set '{entity_set}' cannot be "
            f"bound to the navigation property '{navigation}', which refers to '{target_set}'.",
        )
    key = key_text.split("=", 1)[1] if "=" in key_text else key_text
    try:
        reference = Reference(entity_set, str(uuid.UUID(key.strip())))
    except ValueError:
        raise PayloadError(
            table.entity_set, "Microsoft.OData.ODataException: Bad Request - Error in query syntax."
        ) from None
    if lookup.name in changes.binds:
        raise PayloadError(
            table.entity_set,
            f"Microsoft.Crm.CrmException: The lookup '{lookup.name}' was bound more than once.",
        )
    changes.binds[lookup.name] = (lookup, reference)


def _cannot_convert(table: Table, column: Column, item: Any) -> PayloadError:
    literal = item if isinstance(item, str) else json.dumps(item)
    return PayloadError(
        table.entity_set,
        f"Microsoft.OData.ODataException: Cannot convert the literal '{literal}' to the expected "
        f"type '{column.edm_type}'.",
    )


def _convert(table: Table, column: Column, item: Any) -> Any:
    if item is None:
        return None
    kind = column.type
    if kind in ("string", "memo"):
        if not isinstance(item, str):
            raise _cannot_convert(table, column, item)
        if column.max_length is not None and len(item) > column.max_length:
            raise ValidationError(
                f"A validation error occurred. The length of the '{column.name}' attribute of "
                f"the '{table.logical_name}' entity exceeded the maximum allowed length of "
                f"'{column.max_length}'."
            )
        return item
    if kind in ("int", "bigint", "choice"):
        limit = 2**63 if kind == "bigint" else 2**31
        if isinstance(item, bool) or not isinstance(item, int) or not -limit <= item < limit:
            raise _cannot_convert(table, column, item)
        if column.options and item not in column.options:
            accepted = ",".join(str(v) for v in column.options)
            raise ValidationError(
                f"A validation error occurred. The value {item} of '{column.name}' on record of "
                f"type '{table.logical_name}' is outside the valid range. Accepted Values: "
                f"{accepted}"
            )
        return item
    if kind in ("decimal", "money"):
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise _cannot_convert(table, column, item)
        return float(item)
    if kind == "bool":
        if not isinstance(item, bool):
            raise _cannot_convert(table, column, item)
        return int(item)
    if kind == "datetime":
        return _datetime(table, column, item)
    if not isinstance(item, str):  # guid
        raise _cannot_convert(table, column, item)
    try:
        return str(uuid.UUID(item))
    except ValueError:
        raise _cannot_convert(table, column, item) from None


def _datetime(table: Table, column: Column, item: Any) -> str:
    if not isinstance(item, str):
        raise _cannot_convert(table, column, item)
    try:
        parsed = dt.datetime.fromisoformat(item)
    except ValueError:
        raise _cannot_convert(table, column, item) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
