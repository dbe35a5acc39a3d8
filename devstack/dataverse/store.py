"""The organisation's data in SQLite: one SQL table per declared table, plus counters.

One connection, guarded by one re-entrant lock: every public method takes it, and
`transaction()` holds it across several calls so that a check-then-write (upsert, optimistic
concurrency) is atomic. Rows are plain dicts keyed by column name; a lookup is stored as its
`_x_value` plus an internal `_x_type` naming the target table (for customer lookups).

SQL text is built only from declared names (quoted) and `?` placeholders: values are always
bound, which is why the S608 warnings are waived line by line.

The database keeps data across restarts (`make run`); when the declared schema changes, the old
tables are dropped and rebuilt empty (the caller then seeds them again).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devstack.dataverse import sqlserver
from devstack.dataverse.errors import QueryTooComplex
from devstack.dataverse.schema import SQL_TYPES, Table

log = logging.getLogger(__name__)

_META = "dv_meta"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_columns(t: Table) -> list[str]:
    names = [c.name for c in t.columns]
    for lk in t.lookups:
        names += [lk.column, lk.type_column]
    return names


def _ddl(t: Table) -> str:
    parts = [f"{quote(t.key)} TEXT PRIMARY KEY"]
    parts += [f"{quote(c.name)} {SQL_TYPES[c.type]}" for c in t.columns if c.name != t.key]
    for lk in t.lookups:
        parts += [f"{quote(lk.column)} TEXT", f"{quote(lk.type_column)} TEXT"]
    return f"CREATE TABLE {quote(t.entity_set)} ({', '.join(parts)})"


def _indexes(t: Table) -> list[str]:
    return [
        f"CREATE INDEX {quote(f'ix_{t.entity_set}_{lk.name}')} "
        f"ON {quote(t.entity_set)} ({quote(lk.column)})"
        for lk in t.lookups
    ]


class Store:
    def __init__(self, path: Path, tables: Mapping[str, Table]) -> None:
        self.tables = dict(tables)
        self._lock = threading.RLock()
        self._depth = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        sqlserver.register(self._conn)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self.rebuilt = self._ensure_schema()

    # --- schema -------------------------------------------------------------------------------

    def _ensure_schema(self) -> bool:
        statements = [s for t in self.tables.values() for s in (_ddl(t), *_indexes(t))]
        fingerprint = hashlib.sha256("\n".join(statements).encode()).hexdigest()
        with self.transaction():
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_META} (name TEXT PRIMARY KEY, value TEXT)"
            )
            if self._meta("schema") == fingerprint:
                return False
            existing = {
                r[0]
                for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            stale = existing & set(self.tables)
            if stale:
                log.warning("Dataverse emulator schema changed: rebuilding %s", sorted(stale))
            for name in stale:
                self._conn.execute(f"DROP TABLE {quote(name)}")
            self._conn.execute(f"DELETE FROM {_META}")  # noqa: S608
            for statement in statements:
                self._conn.execute(statement)
            self._set_meta("schema", fingerprint)
            return bool(stale)

    def _meta(self, name: str) -> str | None:
        row = self._conn.execute(f"SELECT value FROM {_META} WHERE name = ?", (name,)).fetchone()  # noqa: S608
        return None if row is None else str(row[0])

    def _set_meta(self, name: str, value: str) -> None:
        self._conn.execute(
            f"INSERT INTO {_META} (name, value) VALUES (?, ?) "  # noqa: S608
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # --- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the lock and one SQLite transaction; nested calls join the outer one."""
        with self._lock:
            self._depth += 1
            outer = self._depth == 1
            try:
                if outer:
                    self._conn.execute("BEGIN IMMEDIATE")
                yield
                if outer:
                    self._conn.execute("COMMIT")
            except BaseException:
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth -= 1

    # --- counters -----------------------------------------------------------------------------

    def next_version(self) -> int:
        """The organisation-wide row version: every write gets a higher one."""
        return self.next_number("versionnumber", 0)

    def next_number(self, name: str, start: int) -> int:
        with self.transaction():
            current = self._meta(f"seq:{name}")
            value = (int(current) if current is not None else start) + 1
            self._set_meta(f"seq:{name}", str(value))
            return value

    def set_number(self, name: str, value: int) -> None:
        with self.transaction():
            self._set_meta(f"seq:{name}", str(value))

    # --- rows ---------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                cursor = self._conn.execute(sql, tuple(params))
            except sqlite3.OperationalError as exc:
                # SQLite's own limits (parser stack, expression depth, variables): the query
                # is too big for the emulator, which is the client's problem, not a crash.
                if any(s in str(exc) for s in ("overflow", "too large", "too many", "too deep")):
                    raise QueryTooComplex() from exc
                raise
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def get(self, t: Table, key: str) -> dict[str, Any] | None:
        rows = self.query(
            f"SELECT * FROM {quote(t.entity_set)} WHERE {quote(t.key)} = ?",  # noqa: S608
            (key.lower(),),
        )
        return rows[0] if rows else None

    def exists(self, t: Table, key: str) -> bool:
        return self.get(t, key) is not None

    def insert(self, t: Table, row: Mapping[str, Any]) -> None:
        names = [n for n in sql_columns(t) if n in row]
        placeholders = ", ".join("?" for _ in names)
        with self._lock:
            self._conn.execute(
                f"INSERT INTO {quote(t.entity_set)} ({', '.join(map(quote, names))}) "  # noqa: S608
                f"VALUES ({placeholders})",
                [row[n] for n in names],
            )

    def update(self, t: Table, key: str, changes: Mapping[str, Any]) -> None:
        names = [n for n in sql_columns(t) if n in changes and n != t.key]
        if not names:
            return
        assignments = ", ".join(f"{quote(n)} = ?" for n in names)
        with self._lock:
            self._conn.execute(
                f"UPDATE {quote(t.entity_set)} SET {assignments} WHERE {quote(t.key)} = ?",  # noqa: S608
                [*(changes[n] for n in names), key.lower()],
            )

    def delete(self, t: Table, key: str) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                f"DELETE FROM {quote(t.entity_set)} WHERE {quote(t.key)} = ?",  # noqa: S608
                (key.lower(),),
            )
            return cursor.rowcount > 0

    def count(self, t: Table) -> int:
        with self._lock:
            row = self._conn.execute(f"SELECT COUNT(*) FROM {quote(t.entity_set)}").fetchone()  # noqa: S608
            return int(row[0])

    def is_empty(self, *, ignore: Sequence[str] = ()) -> bool:
        return all(self.count(t) == 0 for name, t in self.tables.items() if name not in ignore)

    def clear(self) -> None:
        """Every row and counter gone; the schema stays."""
        with self.transaction():
            for t in self.tables.values():
                self._conn.execute(f"DELETE FROM {quote(t.entity_set)}")  # noqa: S608
            self._conn.execute(f"DELETE FROM {_META} WHERE name LIKE 'seq:%'")  # noqa: S608

    def close(self) -> None:
        with self._lock:
            self._conn.close()
