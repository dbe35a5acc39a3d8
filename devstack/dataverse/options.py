"""OData system query options, read and checked against the table: `$select`, `$filter`,
`$orderby`, `$top`, `$count`, `$expand` (single-valued navigation properties, nested `$select`),
`$skiptoken`. `$skip` is refused as Dataverse refuses it; an unknown `$option` is a 400;
`fetchXml`, `sql`, `savedQuery` and `userQuery` are 501; other parameters (aliases such as `@p1`)
are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from devstack.dataverse.errors import BadRequest, NotImplementedByEmulator
from devstack.dataverse.filters import CompiledFilter, compile_filter
from devstack.dataverse.schema import Lookup, Table

MAX_PAGE_SIZE = 5000
_KNOWN = {"$select", "$filter", "$orderby", "$top", "$count", "$expand", "$skiptoken", "$format"}
_NOT_IMPLEMENTED = {"$apply", "$search", "$compute", "$levels", "$index", "$schemaversion"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Other ways Dataverse queries an entity set; answered 501, never ignored
_OTHER_QUERIES = {
    "fetchXml": "FetchXML queries (?fetchXml=)",
    "sql": "SQL queries (?sql=)",
    "savedQuery": "saved queries (?savedQuery=)",
    "userQuery": "user queries (?userQuery=)",
}


@dataclass(frozen=True)
class Expand:
    navigation: str
    lookup: Lookup
    target: Table
    select: tuple[str, ...] | None


@dataclass(frozen=True)
class OrderBy:
    property: str
    descending: bool = False


@dataclass
class QueryOptions:
    select: tuple[str, ...] | None = None
    filter: CompiledFilter | None = None
    orderby: tuple[OrderBy, ...] = ()
    top: int | None = None
    count: bool = False
    expand: tuple[Expand, ...] = ()
    skiptoken: str | None = None
    raw: list[tuple[str, str]] = field(default_factory=list)


def parse_options(
    params: Sequence[tuple[str, str]],
    table: Table,
    tables: Mapping[str, Table],
    *,
    collection: bool,
) -> QueryOptions:
    seen: dict[str, str] = {}
    for name, value in params:
        if name in _OTHER_QUERIES:
            raise NotImplementedByEmulator(_OTHER_QUERIES[name])
        if not name.startswith("$"):
            continue
        if name == "$skip":
            raise BadRequest("Skip Clause is not supported in CRM")
        if name in _NOT_IMPLEMENTED:
            raise NotImplementedByEmulator(f"the query option '{name}'")
        if name not in _KNOWN:
            raise BadRequest(f"The query parameter '{name}' is not supported.")
        if name in seen:
            raise BadRequest(
                f"Query option '{name}' was specified more than once, but it must be "
                "specified at most once."
            )
        seen[name] = value
    options = QueryOptions(raw=list(params))
    if "$select" in seen:
        options.select = parse_select(seen["$select"], table)
    if "$expand" in seen:
        options.expand = parse_expand(seen["$expand"], table, tables)
    if not collection:
        return options
    if "$filter" in seen:
        options.filter = compile_filter(seen["$filter"], table, tables)
    if "$orderby" in seen:
        options.orderby = parse_orderby(seen["$orderby"], table)
    if "$top" in seen:
        options.top = _top(seen["$top"])
    if "$count" in seen:
        options.count = _count(seen["$count"])
    options.skiptoken = seen.get("$skiptoken")
    return options


def split_top_level(text: str, separator: str) -> list[str]:
    """Split on `separator` outside parentheses and quotes; unbalanced input is a 400."""
    parts: list[str] = []
    depth, start, quoted = 0, 0, False
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise BadRequest.query_syntax()
        elif ch == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise BadRequest.query_syntax()
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_select(text: str, table: Table) -> tuple[str, ...]:
    names = split_top_level(text, ",")
    chosen: list[str] = []
    for name in names:
        if name == "*":
            return tuple(table.property_names())
        if not name or not _NAME.fullmatch(name):
            raise BadRequest(f"Syntax error at position 0 in '{text}'.")
        if table.property_type(name) is None:
            raise BadRequest.unknown_property(table.logical_name, name)
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def parse_orderby(text: str, table: Table) -> tuple[OrderBy, ...]:
    items: list[OrderBy] = []
    for item in split_top_level(text, ","):
        words = item.split()
        if not words or len(words) > 2:
            raise BadRequest(f"Syntax error at position 0 in '{text}'.")
        name = words[0]
        direction = words[1] if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Syntax error at position {len(name) + 1} in '{item}'.")
        if "/" in name:
            raise NotImplementedByEmulator("$orderby on related tables")
        if table.property_type(name) is None:
            raise BadRequest.unknown_property(table.logical_name, name)
        items.append(OrderBy(name, direction == "desc"))
    return tuple(items)


def parse_expand(text: str, table: Table, tables: Mapping[str, Table]) -> tuple[Expand, ...]:
    expands: list[Expand] = []
    for item in split_top_level(text, ","):
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?", item, re.DOTALL)
        if item == "*":
            raise NotImplementedByEmulator("$expand=*")
        if match is None:
            raise BadRequest(f"Syntax error in '$expand={text}'.")
        navigation, inner = match.group(1), match.group(2)
        found = table.navigation(navigation)
        if found is None:
            raise BadRequest.unknown_property(table.logical_name, navigation)
        lookup, target_set = found
        target = tables[target_set]
        select: tuple[str, ...] | None = None
        for option in split_top_level(inner, ";") if inner and inner.strip() else []:
            name, eq, value = option.partition("=")
            name = name.strip()
            if not eq:
                raise BadRequest(f"Syntax error in '$expand={text}'.")
            if name == "$select":
                select = parse_select(value, target)
            elif name == "$expand":
                raise NotImplementedByEmulator("nested $expand")
            else:
                raise BadRequest(
                    f"The query option '{name}' is not allowed inside $expand of the "
                    f"single-valued navigation property '{navigation}'."
                )
        expands.append(Expand(navigation, lookup, target, select))
    return tuple(expands)


def _top(value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", value):
        raise BadRequest(
            f"Invalid value '{value}' for $top query option found. The $top query option "
            "requires a non-negative integer value."
        )
    return min(int(value), MAX_PAGE_SIZE)


def _count(value: str) -> bool:
    if value not in ("true", "false"):
        raise BadRequest(
            f"Invalid value '{value}' for $count query option found. Valid values are "
            "'true' and 'false'."
        )
    return value == "true"
