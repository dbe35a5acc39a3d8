"""Server-driven paging: `Prefer: odata.maxpagesize`, keyset continuation, `@odata.nextLink`.

Pages continue after the last row sent (its `$orderby` values and primary key), so rows inserted
or deleted between requests never cause duplicates or gaps among the rows that stay. The
`$skiptoken` looks like Dataverse's (`<cookie pagenumber="2" pagingcookie="..." .../>`) and is
just as opaque: the paging cookie is signed, so a made-up or edited token is a 400.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from devstack.dataverse.errors import BadRequest
from devstack.dataverse.options import OrderBy
from devstack.dataverse.schema import TEXT_TYPES, Table
from devstack.dataverse.sqlserver import COLLATION
from devstack.dataverse.store import quote as sql_quote

_COOKIE = re.compile(
    r'<cookie pagenumber="(\d+)" pagingcookie="([A-Za-z0-9_\-]+)" istracking="False" />'
)
_SAFE_QUERY_CHARS = "$'(),*/:;=@!"


@dataclass(frozen=True)
class Position:
    page: int
    values: list[Any]  # the last row's order-by values, then its primary key


class SkipTokens:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def encode(self, position: Position, columns: Sequence[str]) -> str:
        payload = json.dumps({"c": list(columns), "v": position.values}, separators=(",", ":"))
        body = payload.encode()
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()[:16]
        cookie = base64.urlsafe_b64encode(mac + body).decode().rstrip("=")
        return f'<cookie pagenumber="{position.page}" pagingcookie="{cookie}" istracking="False" />'

    def decode(self, token: str, columns: Sequence[str]) -> Position:
        invalid = BadRequest("The $skiptoken value is not valid.")
        match = _COOKIE.fullmatch(token)
        if match is None:
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(match.group(2) + "=" * (-len(match.group(2)) % 4))
        except ValueError:
            raise invalid from None
        mac, body = raw[:16], raw[16:]
        expected = hmac.new(self._secret, body, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            raise invalid
        data = json.loads(body)
        if data.get("c") != list(columns) or len(data.get("v", ())) != len(columns):
            raise invalid  # a token from a query with another $orderby
        return Position(int(match.group(1)), list(data["v"]))


def order_columns(table: Table, orderby: Sequence[OrderBy]) -> list[OrderBy]:
    """The effective order: what was asked for, then the primary key to make it total."""
    columns = [o for o in orderby if o.property != table.key]
    key_desc = next((o.descending for o in orderby if o.property == table.key), False)
    return [*columns, OrderBy(table.key, key_desc)]


def _expression(table: Table, name: str) -> str:
    sql = f"t.{sql_quote(name)}"
    return f"{sql} COLLATE {COLLATION}" if table.property_type(name) in TEXT_TYPES else sql


def order_sql(table: Table, columns: Sequence[OrderBy]) -> str:
    return ", ".join(
        f"{_expression(table, o.property)} {'DESC' if o.descending else 'ASC'}" for o in columns
    )


def after_sql(
    table: Table, columns: Sequence[OrderBy], values: Sequence[Any]
) -> tuple[str, list[Any]]:
    """WHERE clause for rows strictly after `values` in this order (NULLs sort first, as in
    SQL Server and SQLite ascending)."""
    alternatives: list[str] = []
    params: list[Any] = []
    equal_prefix: list[str] = []
    equal_params: list[Any] = []
    for column, value in zip(columns, values, strict=True):
        expr = _expression(table, column.property)
        after_params: list[Any] = []
        eq_params: list[Any] = []
        if value is None:
            # NULL is the smallest value: after it come the non-NULLs (asc) or nothing (desc)
            after = "0" if column.descending else f"{expr} IS NOT NULL"
            equal = f"{expr} IS NULL"
        else:
            after = f"({expr} < ? OR {expr} IS NULL)" if column.descending else f"{expr} > ?"
            after_params, equal, eq_params = [value], f"{expr} = ?", [value]
        alternatives.append("(" + " AND ".join([*equal_prefix, after]) + ")")
        params += [*equal_params, *after_params]
        equal_prefix.append(equal)
        equal_params += eq_params
    return "(" + " OR ".join(alternatives) + ")", params


def next_link(api_root: str, path: str, params: Sequence[tuple[str, str]], token: str) -> str:
    kept = [(k, v) for k, v in params if k != "$skiptoken"]
    kept.append(("$skiptoken", token))
    query = "&".join(
        f"{quote(k, safe='$@')}={quote(v, safe=_SAFE_QUERY_CHARS if k != '$skiptoken' else '')}"
        for k, v in kept
    )
    return f"{api_root}/{path}?{query}"


def page_size(prefer: dict[str, str]) -> tuple[int, bool]:
    """(page size, whether the preference was honoured and must be echoed)."""
    raw = prefer.get("odata.maxpagesize")
    if raw is None or not raw.isascii() or not raw.isdigit() or int(raw) <= 0:
        return 5000, False
    size = int(raw)
    return (size, True) if size <= 5000 else (5000, False)
