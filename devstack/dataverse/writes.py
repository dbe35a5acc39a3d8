"""Writing the organisation's tables: create, upsert (PATCH), delete, and the CloseIncident action.

Each write runs in one store transaction, so check-then-write (upsert, `If-Match`,
`If-None-Match`) is atomic; each is checked against the caller's privilege and depth. The table's
rules apply: state/status pairs, states only an action may set, required lookups, auto-numbers,
computed columns; every write stamps `modifiedon`, `modifiedby` and a new row version.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from devstack.dataverse.errors import (
    BadRequest,
    DuplicateRecord,
    NotFound,
    PreconditionFailed,
    ValidationError,
)
from devstack.dataverse.options import QueryOptions
from devstack.dataverse.payload import Changes, parse_body
from devstack.dataverse.reads import Reads
from devstack.dataverse.replies import Conditions, Prefer, Reply, matches
from devstack.dataverse.schema import Table
from devstack.dataverse.security import Principal, Privilege
from devstack.dataverse.store import Store

INVALID_ARGUMENT = "0x80040203"


class Writes:
    def __init__(
        self,
        *,
        store: Store,
        tables: Mapping[str, Table],
        reads: Reads,
        api_root: str,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.tables = tables
        self.reads = reads
        self.api_root = api_root
        self._clock = clock
        self._random = random.SystemRandom()

    def create(
        self,
        principal: Principal,
        table: Table,
        body: bytes,
        options: QueryOptions,
        prefer: Prefer,
    ) -> Reply:
        principal.require(table, "create")
        changes = parse_body(body, table)
        key = changes.key or str(uuid.uuid4())
        with self.store.transaction():
            if self.store.exists(table, key):
                raise DuplicateRecord()
            row = self._insert(principal, table, key, changes)
        return self._written(201, principal, table, row, options, prefer)

    def upsert(
        self,
        principal: Principal,
        table: Table,
        key: str,
        body: bytes,
        options: QueryOptions,
        prefer: Prefer,
        conditions: Conditions,
    ) -> Reply:
        changes = parse_body(body, table)
        if changes.key is not None and changes.key != key:
            raise BadRequest(
                "The value of the primary key in the payload does not match the key in the URL."
            )
        with self.store.transaction():
            current = self.store.get(table, key)
            if current is None:
                if conditions.if_match is not None:
                    raise NotFound.record(table.logical_name, key)
                principal.require(table, "create")
                row = self._insert(principal, table, key, changes)
                return self._written(204, principal, table, row, options, prefer, created=True)
            if conditions.if_none_match == "*":
                raise DuplicateRecord()
            principal.check_row(table, "write", key, current.get("_ownerid_value"))
            _check_if_match(conditions, current)
            row = self._update(principal, table, current, changes)
        return self._written(204, principal, table, row, options, prefer)

    def delete(self, principal: Principal, table: Table, key: str, conditions: Conditions) -> Reply:
        principal.require(table, "delete")
        with self.store.transaction():
            current = self.store.get(table, key)
            if current is None:
                raise NotFound.record(table.logical_name, key)
            principal.check_row(table, "delete", key, current.get("_ownerid_value"))
            _check_if_match(conditions, current)
            self.store.delete(table, key)
        return Reply(204)

    def close_incident(self, principal: Principal, body: bytes) -> Reply:
        """The CloseIncident action: resolve a case with an IncidentResolution and a Status."""
        incidents = self.tables["incidents"]
        data = _json_object(body)
        resolution = data.get("IncidentResolution")
        status = data.get("Status")
        bind = resolution.get("incidentid@odata.bind") if isinstance(resolution, dict) else None
        key_match = re.fullmatch(r"/?incidents\(([0-9a-fA-F-]{36})\)", bind or "")
        if key_match is None or isinstance(status, bool) or not isinstance(status, int):
            raise BadRequest(
                "CloseIncident needs IncidentResolution with 'incidentid@odata.bind' and a Status.",
                code=INVALID_ARGUMENT,
            )
        assert incidents.state is not None
        if incidents.state.state_of(status) != 1:
            raise BadRequest(
                f"{status} is not a valid status code for state code IncidentState.Resolved.",
                code=INVALID_ARGUMENT,
            )
        key = key_match.group(1).lower()
        principal.require(incidents, "write")
        with self.store.transaction():
            current = self.store.get(incidents, key)
            if current is None:
                raise NotFound.record("incident", key)
            principal.check_row(incidents, "write", key, current.get("_ownerid_value"))
            if current["statecode"] != 0:
                raise BadRequest("The case is already closed or canceled.", code=INVALID_ARGUMENT)
            closed = {"statecode": 1, "statuscode": status, **self._stamp(principal)}
            self.store.update(incidents, key, closed)
        return Reply(204)

    def _written(
        self,
        status: int,
        principal: Principal,
        table: Table,
        row: dict[str, Any],
        options: QueryOptions,
        prefer: Prefer,
        *,
        created: bool = False,
    ) -> Reply:
        entity_id = f"{self.api_root}/{table.entity_set}({row[table.key]})"
        if prefer.return_representation:
            code = 201 if status == 201 or created else 200
            reply = self.reads.entity_reply(code, principal, table, row, options, prefer)
            reply.headers["Preference-Applied"] = ", ".join(
                filter(None, ["return=representation", reply.headers.get("Preference-Applied")])
            )
            reply.headers["OData-EntityId"] = entity_id
            return reply
        return Reply(204, headers={"OData-EntityId": entity_id})

    def _now(self) -> str:
        moment = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _stamp(self, principal: Principal) -> dict[str, Any]:
        """What every write sets: modified on/by and a new row version."""
        return {
            "modifiedon": self._now(),
            "_modifiedby_value": principal.systemuserid,
            "_modifiedby_type": "systemusers",
            "versionnumber": self.store.next_version(),
        }

    def _insert(
        self, principal: Principal, table: Table, key: str, changes: Changes
    ) -> dict[str, Any]:
        values = dict(changes.values)
        self._apply_state(table, key, values, current=None)
        row: dict[str, Any] = {table.key: key, **values}
        if table.ownership == "user":
            row["_ownerid_value"], row["_ownerid_type"] = principal.systemuserid, "systemusers"
        self._apply_binds(principal, table, key, row, changes, creating=True)
        for lookup_name, message in table.required_lookups.items():
            if not row.get(f"_{lookup_name}_value"):
                raise BadRequest(message, code=INVALID_ARGUMENT)
        if table.autonumber and not row.get(table.autonumber.column):
            number = self.store.next_number(
                f"{table.entity_set}.{table.autonumber.column}", table.autonumber.start
            )
            row[table.autonumber.column] = table.autonumber.format(number, self._random)
        for name, compute in table.computed.items():
            row[name] = compute(row)
        row.update(self._stamp(principal))
        row["createdon"] = row["modifiedon"]
        row["_createdby_value"], row["_createdby_type"] = principal.systemuserid, "systemusers"
        self.store.insert(table, row)
        return row

    def _update(
        self, principal: Principal, table: Table, current: dict[str, Any], changes: Changes
    ) -> dict[str, Any]:
        key = str(current[table.key])
        values = {
            k: v
            for k, v in changes.values.items()
            if not (c := table.column(k)) or not c.create_only
        }
        self._apply_state(table, key, values, current=current)
        merged = {**current, **values}
        self._apply_binds(principal, table, key, merged, changes, creating=False)
        for name, compute in table.computed.items():
            merged[name] = compute(merged)
        merged.update(self._stamp(principal))
        self.store.update(table, key, {k: v for k, v in merged.items() if v != current.get(k)})
        return merged

    def _apply_binds(
        self,
        principal: Principal,
        table: Table,
        key: str,
        row: dict[str, Any],
        changes: Changes,
        *,
        creating: bool,
    ) -> None:
        for lookup, reference in changes.binds.values():
            if reference is None:
                row[lookup.column] = row[lookup.type_column] = None
                continue
            target = self.tables[reference.entity_set]
            if not self.store.exists(target, reference.key):
                raise NotFound.record(target.logical_name, reference.key)
            if lookup.name == "ownerid" and reference.key != row.get("_ownerid_value"):
                privilege: Privilege = "create" if creating else "write"
                if principal.depth(table, privilege) != "organization":
                    raise principal.denied(table, privilege, key, reference.key)
            row[lookup.column], row[lookup.type_column] = reference.key, reference.entity_set

    def _apply_state(
        self,
        table: Table,
        key: str,
        values: dict[str, Any],
        *,
        current: Mapping[str, Any] | None,
    ) -> None:
        model = table.state
        if model is None:
            return
        if any(values.get(n, 0) is None for n in ("statecode", "statuscode")):
            raise ValidationError(
                "A validation error occurred. statecode and statuscode cannot be null."
            )
        state, status = values.get("statecode"), values.get("statuscode")
        if state is None and status is not None:
            state = model.state_of(int(status))
        if state is None:
            if current is None:
                values["statecode"], values["statuscode"] = 0, model.default_status(0)
            return
        if current is None or state != current.get("statecode"):
            message = model.not_settable.get(int(state))
            if message is not None:
                raise BadRequest(message, code=INVALID_ARGUMENT)
        if status is None:
            status = model.default_status(int(state))
        if int(status) not in model.states[int(state)][1]:
            label = model.states[int(state)][0]
            raise BadRequest(
                f"{status} is not a valid status code for state code "
                f"{table.schema_name}State.{label} on {table.logical_name} with Id {key}.",
                code=INVALID_ARGUMENT,
            )
        values["statecode"], values["statuscode"] = int(state), int(status)


def _check_if_match(conditions: Conditions, current: Mapping[str, Any]) -> None:
    """412 unless `If-Match`, when sent, matches the row's current version."""
    if conditions.if_match is not None and not matches(
        conditions.if_match, int(current["versionnumber"] or 0)
    ):
        raise PreconditionFailed()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("The request body is not valid JSON.", code="0x80048d19") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.", code="0x80048d19")
    return data
