"""Reading `EntityDefinitions`: the paths and query options Dataverse's metadata endpoint takes.

    EntityDefinitions                                   every table
    EntityDefinitions(LogicalName='contact')            one table (or by MetadataId)
      .../Attributes                                    its columns
      .../Attributes/Microsoft.Dynamics.CRM.<Type>      its columns of one derived type
      .../Attributes(LogicalName='x')[/<Type>]          one column (or by MetadataId)
      .../Attributes(...)/<Type>/OptionSet              a choice column's options

`$select` (MetadataId always comes back), `$filter` (eq, ne, lt, gt, and, or, not, in, on
primitive and enumeration properties, `Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned'` enum
literals and `X/Value` complex properties, as Dataverse documents), `$expand=Attributes(...)` on
tables and `$expand=OptionSet,GlobalOptionSet` on columns cast to a type that has them. As in
Dataverse there is no paging. Read-only: writes to definitions, relationships and keys are 501.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from odata_query import ast

from devstack.dataverse import definitions
from devstack.dataverse.definitions import NAMESPACE
from devstack.dataverse.errors import (
    BadRequest,
    DefinitionNotFound,
    NotImplementedByEmulator,
    SegmentNotFound,
)
from devstack.dataverse.filters import parse
from devstack.dataverse.options import split_top_level
from devstack.dataverse.replies import Reply
from devstack.dataverse.resources import DEFINITIONS as ENTITY_SET
from devstack.dataverse.resources import GUID
from devstack.dataverse.schema import Table

_ENTITY_NAVIGATION = (
    "Keys",
    "ManyToOneRelationships",
    "OneToManyRelationships",
    "ManyToManyRelationships",
    "Privileges",
)
_SEGMENT = re.compile(r"([A-Za-z_.]+)(?:\((.*)\))?", re.DOTALL)
_ENUM_LITERAL = re.compile(rf"{re.escape(NAMESPACE)}\.[A-Za-z]+('(?:[^']|'')*')")
_OPTIONS = {"$select", "$filter", "$expand"}


@dataclass
class Query:
    select: tuple[str, ...] | None = None
    filter: ast._Node | None = None
    expand: dict[str, Query] = field(default_factory=dict)


class DefinitionReads:
    def __init__(self, tables: Mapping[str, Table], api_root: str) -> None:
        self.tables = tables
        self.api_root = api_root
        self._by_logical = {t.logical_name: t for t in tables.values()}
        self._by_id = {definitions.metadata_id(t.logical_name): t for t in tables.values()}

    def get(self, path: str, params: Sequence[tuple[str, str]]) -> Reply:
        segments = path.split("/")
        name, key = _split(segments[0])
        if name != ENTITY_SET:
            raise SegmentNotFound(name)
        if key is None:
            if len(segments) > 1:
                raise SegmentNotFound(segments[1])
            query = _query(params, collection=True)
            rows = [self._table_item(t, query) for t in self.tables.values()]
            rows = [r for r in rows if r is not None]
            context = f"{self.api_root}/$metadata#{ENTITY_SET}{_context_columns(query)}"
            return Reply(200, {"@odata.context": context, "value": rows})
        table = self._table(key)
        if len(segments) == 1:
            query = _query(params, collection=False)
            item = self._table_item(table, query)
            assert item is not None
            context = f"{self.api_root}/$metadata#{ENTITY_SET}{_context_columns(query)}/$entity"
            return Reply(200, {"@odata.context": context, **item})
        return self._attributes(table, segments[1:], params)

    # --- tables -------------------------------------------------------------------------------

    def _table(self, key: str) -> Table:
        by_id, name = _key(key)
        found = self._by_id.get(name) if by_id else self._by_logical.get(name)
        if found is not None:
            return found
        if by_id:
            raise DefinitionNotFound(f"Could not find an entity with id {name}.")
        raise DefinitionNotFound(
            f"The entity with a name = '{name}' with namemapping = 'Logical' was not "
            "found in the MetadataCache."
        )

    def _table_item(self, table: Table, query: Query) -> dict[str, Any] | None:
        """The table's definition as the query shapes it, or None when `$filter` excludes it."""
        item = definitions.entity(table)
        _check_names(query, item, "EntityMetadata", navigation=("Attributes", *_ENTITY_NAVIGATION))
        if query.filter is not None and not _matches(query.filter, item):
            return None
        result = _project(item, query.select)
        for navigation, inner in query.expand.items():
            if navigation in _ENTITY_NAVIGATION:
                raise NotImplementedByEmulator(f"$expand={navigation} on table definitions")
            if navigation != "Attributes":
                raise BadRequest.unknown_property("EntityMetadata", navigation)
            columns = self._columns(table, None, inner)
            result["Attributes"] = columns
        return result

    # --- columns ------------------------------------------------------------------------------

    def _attributes(
        self, table: Table, segments: Sequence[str], params: Sequence[tuple[str, str]]
    ) -> Reply:
        name, key = _split(segments[0])
        if name in _ENTITY_NAVIGATION:
            raise NotImplementedByEmulator(f"the table definitions' {name}")
        if name != "Attributes":
            raise SegmentNotFound(name)
        rest = list(segments[1:])
        cast = None
        if rest and rest[0].startswith(f"{NAMESPACE}."):
            cast = definitions.KINDS.get(rest[0].removeprefix(f"{NAMESPACE}."))
            if cast is None:
                raise SegmentNotFound(rest[0])
            rest.pop(0)
        entity_id = definitions.metadata_id(table.logical_name)
        base = f"{self.api_root}/$metadata#{ENTITY_SET}({entity_id})/Attributes"
        type_path = f"/{cast.qualified}" if cast else ""
        if key is None:
            if rest:
                raise SegmentNotFound(rest[0])
            query = _query(params, collection=True)
            context = f"{base}{type_path}{_context_columns(query)}"
            rows = self._columns(table, cast, query)
            return Reply(200, {"@odata.context": context, "value": rows})
        column = self._column_name(table, key)
        kind = definitions.kind_of(table, column)
        if cast is not None and kind != cast:
            raise DefinitionNotFound(f"The attribute '{column}' is not of type '{cast.qualified}'.")
        if rest:
            if rest != ["OptionSet"] or cast is None or not cast.has_option_set:
                raise SegmentNotFound(rest[0])
            query = _query(params, collection=False)
            option_set = definitions.option_set(table, column)
            assert option_set is not None
            _check_names(query, option_set, "OptionSetMetadata")
            context = f"{base}({key}){type_path}/OptionSet{_context_columns(query)}/$entity"
            return Reply(200, {"@odata.context": context, **_project(option_set, query.select)})
        query = _query(params, collection=False)
        item = definitions.attribute(table, self.tables, column)
        result = self._column_item(table, item, cast, query)
        context = f"{base}{type_path}{_context_columns(query)}/$entity"
        return Reply(200, {"@odata.context": context, **result})

    def _column_name(self, table: Table, key: str) -> str:
        by_id, name = _key(key)
        names = [c.name for c in table.columns] + [lk.name for lk in table.lookups]
        if by_id:
            ids = {definitions.metadata_id(table.logical_name, n): n for n in names}
            found = ids.get(name)
        else:
            found = name if name in names else None
        if found is None:
            raise DefinitionNotFound(
                f"Could not find attribute {name} on entity {table.logical_name}."
            )
        return found

    def _columns(
        self, table: Table, cast: definitions.AttributeKind | None, query: Query
    ) -> list[dict[str, Any]]:
        items = definitions.attributes(table, self.tables)
        if cast is not None:
            items = [i for i in items if i["@odata.type"] == f"#{cast.qualified}"]
        rows = []
        for item in items:
            row = self._column_item(table, item, cast, query)  # checks the names first
            if query.filter is None or _matches(query.filter, item):
                rows.append(row)
        return rows

    def _column_item(
        self,
        table: Table,
        item: dict[str, Any],
        cast: definitions.AttributeKind | None,
        query: Query,
    ) -> dict[str, Any]:
        typed = cast is not None
        allowed = item if typed else {k: v for k, v in item.items() if k in _BASE}
        type_name = cast.odata_type if cast else "AttributeMetadata"
        _check_names(query, allowed, type_name, navigation=definitions.NAVIGATION if typed else ())
        result = _project(item, query.select)
        if typed:
            result.pop("@odata.type", None)  # the cast names the type already
        for navigation, inner in query.expand.items():
            if cast is None or not cast.has_option_set:
                raise BadRequest.unknown_property(f"{type_name}", navigation)
            if navigation == "GlobalOptionSet":
                result["GlobalOptionSet"] = None  # the emulator's choices are all local
                continue
            option_set = definitions.option_set(table, item["LogicalName"])
            assert option_set is not None
            _check_names(inner, option_set, "OptionSetMetadata")
            result["OptionSet"] = _project(option_set, inner.select)
        return result


_BASE = definitions.BASE_PROPERTIES | {"@odata.type"}


# --- query options -------------------------------------------------------------------------------


def _query(params: Sequence[tuple[str, str]], *, collection: bool) -> Query:
    seen: dict[str, str] = {}
    for name, value in params:
        if not name.startswith("$"):
            continue
        if name not in _OPTIONS:
            raise NotImplementedByEmulator(f"the query option '{name}' on table definitions")
        if name in seen:
            raise BadRequest(
                f"Query option '{name}' was specified more than once, but it must be "
                "specified at most once."
            )
        seen[name] = value
    return _options(seen, collection=collection)


def _options(seen: Mapping[str, str], *, collection: bool) -> Query:
    query = Query()
    if "$select" in seen:
        query.select = tuple(n.strip() for n in split_top_level(seen["$select"], ","))
    if "$filter" in seen:
        if not collection:
            raise BadRequest("The query option '$filter' is only allowed on collections.")
        query.filter = parse(_ENUM_LITERAL.sub(r"\1", seen["$filter"]))
    if "$expand" in seen:
        for item in split_top_level(seen["$expand"], ","):
            match = re.fullmatch(r"([A-Za-z]+)\s*(?:\((.*)\))?", item, re.DOTALL)
            if match is None:
                raise BadRequest(f"Syntax error in '$expand={seen['$expand']}'.")
            inner: dict[str, str] = {}
            text = match.group(2)
            for option in split_top_level(text, ";") if text and text.strip() else []:
                key, eq, value = option.partition("=")
                if not eq or key.strip() not in ("$select", "$filter"):
                    raise BadRequest(f"Syntax error in '$expand={seen['$expand']}'.")
                inner[key.strip()] = value
            query.expand[match.group(1)] = _options(inner, collection=True)
    return query


def _context_columns(query: Query) -> str:
    names = list(query.select or ())
    names += [n for n in query.expand if n not in names]
    return f"({','.join(names)})" if names else ""


def _check_names(
    query: Query, item: Mapping[str, Any], type_name: str, navigation: Sequence[str] = ()
) -> None:
    for name in query.select or ():
        if name not in item or name.startswith("@"):
            raise BadRequest.unknown_property(type_name, name)
    if query.filter is not None:
        for name in _identifiers(query.filter):
            if name not in item:
                raise BadRequest.unknown_property(type_name, name)
    for name in query.expand:
        if navigation and name not in navigation:
            raise BadRequest.unknown_property(type_name, name)


def _project(item: Mapping[str, Any], select: tuple[str, ...] | None) -> dict[str, Any]:
    if select is None:
        return dict(item)
    keep = {*select, "MetadataId", "@odata.type"}
    return {k: v for k, v in item.items() if k in keep}


# --- $filter over definitions -------------------------------------------------------------


def _identifiers(node: ast._Node) -> list[str]:
    if isinstance(node, ast.Identifier):
        return [node.name]
    if isinstance(node, ast.Attribute):
        return _identifiers(node.owner)
    found: list[str] = []
    for child in ("left", "right", "operand"):
        if hasattr(node, child):
            found += _identifiers(getattr(node, child))
    return found


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: bool(a == b),
    ast.NotEq: lambda a, b: bool(a != b),
    ast.Lt: lambda a, b: a is not None and b is not None and a < b,
    ast.LtE: lambda a, b: a is not None and b is not None and a <= b,
    ast.Gt: lambda a, b: a is not None and b is not None and a > b,
    ast.GtE: lambda a, b: a is not None and b is not None and a >= b,
}


def _matches(node: ast._Node, item: Mapping[str, Any]) -> bool:
    result = _value(node, item)
    if not isinstance(result, bool):
        raise BadRequest("The $filter expression must evaluate to a single boolean value.")
    return result


def _value(node: ast._Node, item: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Identifier):
        return item.get(node.name)
    if isinstance(node, ast.Attribute):
        owner = _value(node.owner, item)
        return owner.get(node.attr) if isinstance(owner, dict) else None
    if isinstance(node, ast.String):
        return node.val
    if isinstance(node, ast.Boolean):
        return node.val == "true"
    if isinstance(node, ast.Integer):
        return int(node.val)
    if isinstance(node, ast.Null):
        return None
    if isinstance(node, ast.GUID):
        return str(node.val).lower()
    if isinstance(node, ast.List):
        return [_value(v, item) for v in node.val]
    if isinstance(node, ast.BoolOp):
        left, right = _value(node.left, item), _value(node.right, item)
        return (left and right) if isinstance(node.op, ast.And) else (left or right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _value(node.operand, item)
    if isinstance(node, ast.Compare):
        left, right = _value(node.left, item), _value(node.right, item)
        if isinstance(node.comparator, ast.In):
            return isinstance(right, list) and left in right
        compare = _COMPARE.get(type(node.comparator))
        if compare is not None:
            return compare(left, right)
    raise NotImplementedByEmulator("this $filter expression on table definitions")


def _key(text: str) -> tuple[bool, str]:
    """`(True, metadata id)` or `(False, logical name)` from `<guid>` or `LogicalName='x'`."""
    text = text.strip()
    if GUID.fullmatch(text):
        return True, text.lower()
    match = re.fullmatch(r"(?:LogicalName\s*=\s*)?'((?:[^']|'')*)'", text)
    if match is None:
        raise BadRequest.query_syntax()
    return False, match.group(1).replace("''", "'")


def _split(segment: str) -> tuple[str, str | None]:
    match = _SEGMENT.fullmatch(segment)
    if match is None:
        raise SegmentNotFound(segment)
    return match.group(1), match.group(2)
