"""Records and context URLs as Dataverse writes them (`odata.metadata=minimal`).

Each record starts with `@odata.etag` (`W/"<versionnumber>"`), carries the selected properties
(all of them without `$select`) and always its primary key, then any expanded navigation
properties. With `Prefer: odata.include-annotations`, choice, boolean and lookup values gain their
`OData.Community.Display.V1.FormattedValue` and lookups their `lookuplogicalname` and
`associatednavigationproperty`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devstack.dataverse.options import Expand
from devstack.dataverse.schema import Table

FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
ASSOCIATED_NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"


def etag(version: int | None) -> str:
    return f'W/"{version or 0}"'


@dataclass(frozen=True)
class Annotations:
    """Which instance annotations the client asked for (`odata.include-annotations`)."""

    patterns: tuple[str, ...] = ()

    def wants(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    @property
    def any(self) -> bool:
        return bool(self.patterns)

    @classmethod
    def parse(cls, value: str | None) -> Annotations:
        if not value:
            return cls()
        items = (p.strip() for p in value.strip('"').split(","))
        return cls(tuple(p for p in items if p and not p.startswith("-")))


def value(kind: str, raw: Any) -> Any:
    if raw is None:
        return None
    if kind == "bool":
        return bool(raw)
    if kind in ("decimal", "money"):
        return float(raw)
    return raw


@dataclass(frozen=True)
class View:
    """What shapes a record besides its row: tables, annotations asked for, lookup names."""

    tables: Mapping[str, Table]
    annotations: Annotations = Annotations()
    names: Mapping[tuple[str, str], str] = field(default_factory=dict)


def record(
    view: View,
    table: Table,
    row: Mapping[str, Any],
    select: Sequence[str] | None,
    *,
    expanded: Mapping[str, tuple[Expand, Mapping[str, Any] | None]] | None = None,
    with_etag: bool = True,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if with_etag:
        out["@odata.etag"] = etag(row.get("versionnumber"))
    properties = list(select) if select is not None else table.property_names()
    if table.key not in properties:
        properties.append(table.key)
    for name in properties:
        _property(view, out, table, row, name)
    for navigation, (expand, target_row) in (expanded or {}).items():
        out[navigation] = (
            None
            if target_row is None
            else record(view, expand.target, target_row, expand.select, with_etag=False)
        )
    return out


def _property(
    view: View, out: dict[str, Any], table: Table, row: Mapping[str, Any], name: str
) -> None:
    raw = row.get(name)
    wants = view.annotations.wants
    lookup = table.lookup_by_column(name)
    if lookup is not None:
        target_set = str(row.get(lookup.type_column))
        if raw is not None and target_set in lookup.targets.values() and view.annotations.any:
            if wants(FORMATTED) and (target_set, str(raw)) in view.names:
                out[f"{name}@{FORMATTED}"] = view.names[(target_set, str(raw))]
            if wants(ASSOCIATED_NAVIGATION):
                navigation = next(n for n, s in lookup.targets.items() if s == target_set)
                out[f"{name}@{ASSOCIATED_NAVIGATION}"] = navigation
            if wants(LOOKUP_LOGICAL_NAME):
                out[f"{name}@{LOOKUP_LOGICAL_NAME}"] = view.tables[target_set].logical_name
        out[name] = raw
        return
    column = table.column(name)
    assert column is not None
    if raw is not None and wants(FORMATTED):
        if column.options:
            label = column.options.get(int(raw))
            if label is not None:
                out[f"{name}@{FORMATTED}"] = label
        elif column.type == "bool":
            out[f"{name}@{FORMATTED}"] = "Yes" if raw else "No"
    out[name] = value(column.type, raw)


def context_url(
    api_root: str,
    table: Table,
    select: Sequence[str] | None,
    expand: Sequence[Expand] = (),
    *,
    entity: bool = False,
) -> str:
    items = list(select or ())
    for e in expand:
        items.append(f"{e.navigation}({','.join(e.select or ())})")
    shape = f"({','.join(items)})" if items else ""
    return f"{api_root}/$metadata#{table.entity_set}{shape}{'/$entity' if entity else ''}"
