"""What a Web API operation hands back (`Reply`), and the request preferences (`Prefer`) and
preconditions (`Conditions`) it honours; shared by `reads` and `writes`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devstack.dataverse import render


@dataclass(frozen=True)
class Prefer:
    return_representation: bool = False
    maxpagesize: str | None = None
    annotations: render.Annotations = field(default_factory=render.Annotations)
    annotations_header: str | None = None


@dataclass(frozen=True)
class Conditions:
    """If-Match / If-None-Match: `*`, a set of row versions, or absent."""

    if_match: str | frozenset[int] | None = None
    if_none_match: str | frozenset[int] | None = None


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    media_type: str | None = None


def matches(condition: str | frozenset[int], version: int) -> bool:
    return condition == "*" or (isinstance(condition, frozenset) and version in condition)


def preference_applied(applied: list[str], prefer: Prefer) -> dict[str, str]:
    if prefer.annotations_header is not None:
        applied = [*applied, f"odata.include-annotations={prefer.annotations_header}"]
    return {"Preference-Applied": ", ".join(applied)} if applied else {}
