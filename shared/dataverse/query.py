"""OData query text, built only from allowlisted names and escaped values.

Values never become syntax: a string literal has its quotes doubled; text searched with
`contains` also has SQL Server's LIKE wildcards (`%`, `_`, `[`) bracketed, because Dataverse
turns `contains` into LIKE. The finished query is percent-encoded by `encode`, so `&`, `#`,
`+` and `%` in a value stay inside that value.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from urllib.parse import quote

_LIKE_SPECIAL = str.maketrans({"%": "[%]", "_": "[_]", "[": "[[]"})


def string_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def like_literal(value: str) -> str:
    """A literal for contains/startswith/endswith that matches `value` exactly as typed."""
    return string_literal(value.translate(_LIKE_SPECIAL))


def guid_literal(value: str) -> str:
    return str(uuid.UUID(value))  # Dataverse takes bare GUIDs for lookups and keys


def eq(column: str, literal: str) -> str:
    return f"{column} eq {literal}"


def contains(column: str, text: str) -> str:
    return f"contains({column},{like_literal(text)})"


def any_of(clauses: Sequence[str]) -> str:
    return clauses[0] if len(clauses) == 1 else "(" + " or ".join(clauses) + ")"


def all_of(clauses: Sequence[str]) -> str:
    return " and ".join(clauses)


def encode(params: Iterable[tuple[str, str]]) -> str:
    """`$name=value&...`, every value percent-encoded (spaces as %20, never `+`)."""
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in params)
