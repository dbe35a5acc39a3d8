"""Reading the organisation's tables: queries with paging, `$count`, records by key, single
properties, WhoAmI. Every read is checked against the caller's read privilege and depth: rows the
caller may not read are absent from lists; reading one by key is a 403.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from devstack.dataverse import paging, render
from devstack.dataverse.errors import NotFound
from devstack.dataverse.options import MAX_PAGE_SIZE, Expand, QueryOptions
from devstack.dataverse.replies import Conditions, Prefer, Reply, matches, preference_applied
from devstack.dataverse.schema import Table
from devstack.dataverse.security import Directory, Principal
from devstack.dataverse.store import Store, quote

WHOAMI_RESPONSE = "Microsoft.Dynamics.CRM.WhoAmIResponse"
TOTAL_RECORD_COUNT = "Microsoft.Dynamics.CRM.totalrecordcount"
TOTAL_LIMIT_EXCEEDED = "Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"


class Reads:
    def __init__(
        self,
        *,
        store: Store,
        tables: Mapping[str, Table],
        directory: Directory,
        api_root: str,
        skiptokens: paging.SkipTokens,
    ) -> None:
        self.store = store
        self.tables = tables
        self.directory = directory
        self.api_root = api_root
        self._tokens = skiptokens

    def query(
        self, principal: Principal, table: Table, options: QueryOptions, prefer: Prefer
    ) -> Reply:
        where, params = self._visible(principal, table, options)
        body: dict[str, Any] = {
            "@odata.context": render.context_url(
                self.api_root, table, options.select, options.expand
            )
        }
        counted = self._count(table, where, params, cap=MAX_PAGE_SIZE + 1) if options.count else -1
        if options.count:
            body["@odata.count"] = min(counted, MAX_PAGE_SIZE)
        # count-rows.md: whether a count of 5000 means "5000 or more", when asked for
        if prefer.annotations.wants(TOTAL_RECORD_COUNT):
            body[f"@{TOTAL_RECORD_COUNT}"] = min(counted, MAX_PAGE_SIZE)
        if prefer.annotations.wants(TOTAL_LIMIT_EXCEEDED):
            body[f"@{TOTAL_LIMIT_EXCEEDED}"] = counted > MAX_PAGE_SIZE
        size, honoured = paging.page_size({"odata.maxpagesize": prefer.maxpagesize or ""})
        columns = paging.order_columns(table, options.orderby)
        names = [c.property for c in columns]
        page = 1
        if options.skiptoken is not None:
            position = self._tokens.decode(options.skiptoken, names)
            page = position.page
            after, after_params = paging.after_sql(table, columns, position.values)
            where, params = [*where, after], [*params, *after_params]
        # Dataverse: with both $top and odata.maxpagesize, $top is ignored and pages follow
        top = None if honoured else options.top
        limit = top if top is not None else size + 1
        rows = self.store.query(
            f"SELECT t.* FROM {quote(table.entity_set)} t{_where(where)} "  # noqa: S608
            f"ORDER BY {paging.order_sql(table, columns)} LIMIT {int(limit)}",
            params,
        )
        more = top is None and len(rows) > size
        rows = rows[:size]
        view = self._view(prefer, table, rows, options.expand)
        expansions = self._expansions(principal, rows, options.expand)
        body["value"] = [
            render.record(view, table, row, options.select, expanded=expanded)
            for row, expanded in zip(rows, expansions, strict=True)
        ]
        if more:
            last = rows[-1]
            token = self._tokens.encode(paging.Position(page + 1, [last[n] for n in names]), names)
            body["@odata.nextLink"] = paging.next_link(
                self.api_root, table.entity_set, options.raw, token
            )
        applied = [f"odata.maxpagesize={size}"] if honoured else []
        return Reply(200, body, preference_applied(applied, prefer))

    def count(self, principal: Principal, table: Table, options: QueryOptions) -> Reply:
        where, params = self._visible(principal, table, options)
        return Reply(200, text=str(self._count(table, where, params)), media_type="text/plain")

    def retrieve(
        self,
        principal: Principal,
        table: Table,
        key: str,
        options: QueryOptions,
        prefer: Prefer,
        conditions: Conditions,
    ) -> Reply:
        row = self._readable(principal, table, key)
        version = int(row["versionnumber"] or 0)
        if (
            conditions.if_none_match is not None
            and conditions.if_none_match != "*"
            and matches(conditions.if_none_match, version)
            and not options.expand
            and not prefer.annotations.any
        ):
            return Reply(304, headers={"ETag": render.etag(version)})
        return self.entity_reply(200, principal, table, row, options, prefer)

    def property(self, principal: Principal, table: Table, key: str, name: str) -> Reply:
        row = self._readable(principal, table, key)
        kind = table.property_type(name) or "string"
        value = render.value(kind, row.get(name))
        if value is None:
            return Reply(204)
        context = f"{self.api_root}/$metadata#{table.entity_set}({key})/{name}"
        return Reply(200, {"@odata.context": context, "value": value})

    def whoami(self, principal: Principal) -> Reply:
        return Reply(
            200,
            {
                "@odata.context": f"{self.api_root}/$metadata#{WHOAMI_RESPONSE}",
                "BusinessUnitId": self.directory.business_unit_id,
                "UserId": principal.systemuserid,
                "OrganizationId": self.directory.organization_id,
            },
        )

    def _visible(
        self, principal: Principal, table: Table, options: QueryOptions
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if principal.require(table, "read") == "user" and table.ownership == "user":
            where.append(f"t.{quote('_ownerid_value')} = ?")
            params.append(principal.systemuserid)
        if options.filter is not None:
            where.append(options.filter.sql)
            params.extend(options.filter.params)
        return where, params

    def _count(
        self, table: Table, where: Sequence[str], params: Sequence[Any], cap: int = MAX_PAGE_SIZE
    ) -> int:
        rows = self.store.query(
            f"SELECT COUNT(*) AS n FROM (SELECT 1 FROM {quote(table.entity_set)} t"  # noqa: S608
            f"{_where(where)} LIMIT {int(cap)})",
            params,
        )
        return int(rows[0]["n"])

    def _readable(self, principal: Principal, table: Table, key: str) -> dict[str, Any]:
        principal.require(table, "read")
        row = self.store.get(table, key)
        if row is None:
            raise NotFound.record(table.logical_name, key)
        principal.check_row(table, "read", key, row.get("_ownerid_value"))
        return row

    def _expansions(
        self, principal: Principal, rows: Sequence[Mapping[str, Any]], expands: Sequence[Expand]
    ) -> list[dict[str, tuple[Expand, dict[str, Any] | None]]]:
        result: list[dict[str, tuple[Expand, dict[str, Any] | None]]] = [{} for _ in rows]
        for expand in expands:
            target, lookup = expand.target, expand.lookup
            principal.require(target, "read")
            ids = sorted(
                {
                    str(r[lookup.column])
                    for r in rows
                    if r.get(lookup.column) and r.get(lookup.type_column) == target.entity_set
                }
            )
            found = {str(r[target.key]): r for r in self._rows_by_key(target, ids)}
            for out, row in zip(result, rows, strict=True):
                target_row = None
                if row.get(lookup.type_column) == target.entity_set:
                    target_row = found.get(str(row.get(lookup.column)))
                if target_row is not None and not principal.may(
                    target, "read", target_row.get("_ownerid_value")
                ):
                    target_row = None
                out[expand.navigation] = (expand, target_row)
        return result

    def _rows_by_key(self, table: Table, keys: Sequence[str]) -> list[dict[str, Any]]:
        if not keys:
            return []
        marks = ", ".join("?" for _ in keys)
        return self.store.query(
            f"SELECT * FROM {quote(table.entity_set)} WHERE {quote(table.key)} IN ({marks})",  # noqa: S608
            keys,
        )

    def _view(
        self,
        prefer: Prefer,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        expands: Sequence[Expand] = (),
    ) -> render.View:
        if not prefer.annotations.wants(render.FORMATTED):
            return render.View(self.tables, prefer.annotations)
        wanted: dict[str, set[str]] = {}
        for lookup in table.lookups:
            for row in rows:
                target_set, value = row.get(lookup.type_column), row.get(lookup.column)
                if target_set in self.tables and value:
                    wanted.setdefault(str(target_set), set()).add(str(value))
        names: dict[tuple[str, str], str] = {}
        for target_set, keys in wanted.items():
            target = self.tables[target_set]
            for r in self._rows_by_key(target, sorted(keys)):
                if r.get(target.primary_name) is not None:
                    names[(target_set, str(r[target.key]))] = str(r[target.primary_name])
        return render.View(self.tables, prefer.annotations, names)

    def entity_reply(
        self,
        status: int,
        principal: Principal,
        table: Table,
        row: dict[str, Any],
        options: QueryOptions,
        prefer: Prefer,
    ) -> Reply:
        view = self._view(prefer, table, [row], options.expand)
        expanded = self._expansions(principal, [row], options.expand)[0]
        body = {
            "@odata.context": render.context_url(
                self.api_root, table, options.select, options.expand, entity=True
            ),
            **render.record(view, table, row, options.select, expanded=expanded),
        }
        headers = {"ETag": render.etag(row.get("versionnumber"))}
        return Reply(status, body, {**headers, **preference_applied([], prefer)})


def _where(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""
