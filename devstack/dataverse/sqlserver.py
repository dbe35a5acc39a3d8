"""SQL Server string semantics that SQLite lacks, registered on every connection.

Dataverse runs on SQL Server with a case-insensitive, accent-sensitive collation, and its
`contains`/`startswith`/`endswith` become `LIKE` with SQL Server's wildcards: `%`, `_`, `[abc]`,
`[a-z]`, `[^abc]`; a wildcard is matched literally by bracketing it (`[%]`, `[_]`, `[[]`).
SQLite's LIKE knows neither brackets nor non-ASCII case folding, hence these functions.
"""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache

COLLATION = "dvci"
LIKE_FUNCTION = "dv_like"


def compare_ci(a: str, b: str) -> int:
    """Case-insensitive ordering (`Åse` = `åse`), ties broken so the order stays total."""
    fa, fb = a.casefold(), b.casefold()
    if fa != fb:
        return -1 if fa < fb else 1
    return 0


@lru_cache(maxsize=512)
def like_pattern(pattern: str) -> re.Pattern[str] | None:
    """The regular expression for a SQL Server LIKE pattern; None if it can match nothing
    (an unclosed `[`, which SQL Server treats as never matching)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                return None
            out.append(_char_class(pattern[i + 1 : end]))
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _char_class(body: str) -> str:
    negate = body.startswith("^") and len(body) > 1
    if negate:
        body = body[1:]
    parts: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = body[i], body[i + 2]
            if lo <= hi:
                parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 3
            continue
        parts.append(re.escape(body[i]))
        i += 1
    if not parts:
        return "(?!)" if not negate else "."
    return f"[{'^' if negate else ''}{''.join(parts)}]"


def sql_server_like(value: object, pattern: object) -> int | None:
    if value is None or pattern is None:
        return None
    regex = like_pattern(str(pattern))
    return int(regex is not None and regex.fullmatch(str(value)) is not None)


def register(conn: sqlite3.Connection) -> None:
    conn.create_collation(COLLATION, compare_ci)
    conn.create_function(LIKE_FUNCTION, 2, sql_server_like, deterministic=True)
