"""How a table is declared: columns with types, lookups with their navigation properties, computed
columns, state/status pairs, auto-numbers. `devstack.dataverse.tables` holds the declarations; every
other module (SQL schema, `$select`/`$filter` checks, payload parsing, rendering, `$metadata`)
reads them from here, so adding a table is one declaration.

`table(...)` adds what every Dataverse table has: the primary key, `createdon`, `modifiedon`,
`versionnumber`, `createdby`/`modifiedby` and, for user-owned tables, `ownerid`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

ColumnType = Literal[
    "guid", "string", "memo", "int", "bigint", "decimal", "money", "bool", "datetime", "choice"
]
Ownership = Literal["user", "organization"]

EDM_TYPES: dict[ColumnType, str] = {
    "guid": "Edm.Guid",
    "string": "Edm.String",
    "memo": "Edm.String",
    "int": "Edm.Int32",
    "bigint": "Edm.Int64",
    "decimal": "Edm.Decimal",
    "money": "Edm.Decimal",
    "bool": "Edm.Boolean",
    "datetime": "Edm.DateTimeOffset",
    "choice": "Edm.Int32",
}
SQL_TYPES: dict[ColumnType, str] = {
    "guid": "TEXT",
    "string": "TEXT",
    "memo": "TEXT",
    "int": "INTEGER",
    "bigint": "INTEGER",
    "decimal": "REAL",
    "money": "REAL",
    "bool": "INTEGER",
    "datetime": "TEXT",
    "choice": "INTEGER",
}
TEXT_TYPES = frozenset({"string", "memo"})
NUMERIC_TYPES = frozenset({"int", "bigint", "decimal", "money", "choice"})


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    max_length: int | None = None
    # choice columns: value -> label (the formatted value)
    options: Mapping[int, str] = field(default_factory=dict)
    # not valid for create or update: the server sets it (silently ignored when sent)
    read_only: bool = False
    # valid for create, ignored on update (ticketnumber)
    create_only: bool = False

    @property
    def edm_type(self) -> str:
        return EDM_TYPES[self.type]

    @property
    def is_text(self) -> bool:
        return self.type in TEXT_TYPES


@dataclass(frozen=True)
class Lookup:
    """A lookup column `_<name>_value` and its single-valued navigation properties.

    `targets` maps navigation property -> target entity set; a customer lookup has two
    (`parentcustomerid_account`, `parentcustomerid_contact`), a plain lookup one.
    """

    name: str
    targets: Mapping[str, str]
    read_only: bool = False

    @property
    def column(self) -> str:
        return f"_{self.name}_value"

    @property
    def type_column(self) -> str:
        """Internal column naming the target table of the current value."""
        return f"_{self.name}_type"


@dataclass(frozen=True)
class AutoNumber:
    """Dataverse auto-numbering such as `CAS-01001-X1Y2Z3`: prefix, sequence, random suffix."""

    column: str
    prefix: str
    start: int = 1000

    def format(self, number: int, rng: random.Random) -> str:
        suffix = "".join(
            rng.choice(string.ascii_uppercase if i % 2 == 0 else string.digits) for i in range(6)
        )
        return f"{self.prefix}-{number:05d}-{suffix}"


@dataclass(frozen=True)
class StateModel:
    """statecode -> (label, allowed statuscodes, the first being the default)."""

    states: Mapping[int, tuple[str, Mapping[int, str]]]
    # states that Update/Create may not set, with the message Dataverse answers
    not_settable: Mapping[int, str] = field(default_factory=dict)

    def default_status(self, state: int) -> int:
        return next(iter(self.states[state][1]))

    def state_of(self, status: int) -> int | None:
        return next((s for s, (_, st) in self.states.items() if status in st), None)


@dataclass(frozen=True)
class Table:
    entity_set: str
    logical_name: str
    schema_name: str  # privilege names use it: prvReadContact
    object_type_code: int
    key: str
    primary_name: str
    columns: tuple[Column, ...]
    lookups: tuple[Lookup, ...]
    ownership: Ownership
    state: StateModel | None
    computed: Mapping[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)
    autonumber: AutoNumber | None = None
    # privileges every system user holds on this table whatever their roles (systemusers: read)
    baseline_privileges: Mapping[str, str] = field(default_factory=dict)
    # lookups that must have a value on create, with Dataverse's message
    required_lookups: Mapping[str, str] = field(default_factory=dict)
    # EntityDefinitions: the table's labels and its columns' schema names (logical name ->
    # SchemaName; a logical name is always its schema name in lower case)
    display_name: str = ""
    display_collection_name: str = ""
    schema_names: Mapping[str, str] = field(default_factory=dict)

    def attribute_schema_name(self, logical_name: str) -> str:
        return self.schema_names.get(logical_name, logical_name)

    @property
    def is_custom(self) -> bool:
        """Custom tables carry a publisher prefix (`bos_`); system tables do not."""
        return "_" in self.logical_name

    def column(self, name: str) -> Column | None:
        return self._columns.get(name)

    def lookup_by_column(self, name: str) -> Lookup | None:
        return self._lookups_by_column.get(name)

    def navigation(self, nav: str) -> tuple[Lookup, str] | None:
        """(lookup, target entity set) for a single-valued navigation property."""
        return self._navigations.get(nav)

    def property_type(self, name: str) -> ColumnType | None:
        """The type of a structural property: a column, or a lookup's `_x_value` (a GUID)."""
        column = self.column(name)
        if column is not None:
            return column.type
        return "guid" if self.lookup_by_column(name) else None

    def property_names(self) -> list[str]:
        return [c.name for c in self.columns] + [lk.column for lk in self.lookups]

    @cached_property
    def _columns(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    @cached_property
    def _lookups_by_column(self) -> dict[str, Lookup]:
        return {lk.column: lk for lk in self.lookups}

    @cached_property
    def _navigations(self) -> dict[str, tuple[Lookup, str]]:
        return {nav: (lk, target) for lk in self.lookups for nav, target in lk.targets.items()}


def schema_names(text: str) -> dict[str, str]:
    """`"FirstName LastName"` -> `{"firstname": "FirstName", "lastname": "LastName"}`."""
    return {name.lower(): name for name in text.split()}


SYSTEM_SCHEMA_NAMES = schema_names(
    "StateCode StatusCode CreatedOn ModifiedOn VersionNumber CreatedBy ModifiedBy OwnerId"
)

ACTIVE_INACTIVE = StateModel(
    states={0: ("Active", {1: "Active"}), 1: ("Inactive", {2: "Inactive"})}
)


def table(
    *,
    entity_set: str,
    logical_name: str,
    schema_name: str,
    object_type_code: int,
    primary_name: str,
    columns: tuple[Column, ...],
    lookups: tuple[Lookup, ...] = (),
    ownership: Ownership = "user",
    state: StateModel | None = ACTIVE_INACTIVE,
    computed: Mapping[str, Callable[[Mapping[str, Any]], Any]] | None = None,
    autonumber: AutoNumber | None = None,
    baseline_privileges: Mapping[str, str] | None = None,
    required_lookups: Mapping[str, str] | None = None,
    display_name: str = "",
    display_collection_name: str = "",
    column_schema_names: Mapping[str, str] | None = None,
) -> Table:
    """A table with Dataverse's system columns added."""
    key = f"{logical_name}id"
    state_columns: tuple[Column, ...] = ()
    if state is not None:
        state_labels = {code: label for code, (label, _) in state.states.items()}
        status_labels = {
            code: label for _, statuses in state.states.values() for code, label in statuses.items()
        }
        state_columns = (
            Column("statecode", "choice", options=state_labels),
            Column("statuscode", "choice", options=status_labels),
        )
    system_columns = (
        *state_columns,
        Column("createdon", "datetime", read_only=True),
        Column("modifiedon", "datetime", read_only=True),
        Column("versionnumber", "bigint", read_only=True),
    )
    system_lookups = [
        Lookup("createdby", {"createdby": "systemusers"}, read_only=True),
        Lookup("modifiedby", {"modifiedby": "systemusers"}, read_only=True),
    ]
    if ownership == "user":
        system_lookups.insert(0, Lookup("ownerid", {"ownerid": "systemusers"}))
    return Table(
        entity_set=entity_set,
        logical_name=logical_name,
        schema_name=schema_name,
        object_type_code=object_type_code,
        key=key,
        primary_name=primary_name,
        columns=(Column(key, "guid", read_only=True), *columns, *system_columns),
        lookups=(*lookups, *system_lookups),
        ownership=ownership,
        state=state,
        computed=computed or {},
        autonumber=autonumber,
        baseline_privileges=baseline_privileges or {},
        required_lookups=required_lookups or {},
        display_name=display_name or schema_name,
        display_collection_name=display_collection_name or f"{display_name or schema_name}s",
        schema_names={
            **SYSTEM_SCHEMA_NAMES,
            **(column_schema_names or {}),
            key: f"{schema_name}Id",
        },
    )
