"""What a Web API operation hands back (`Reply`), and the request preferences (`Prefer`) and
preconditions (`Conditions`) it honours; shared by `reads` and `writes`. `encode` and
`error_reply` turn replies and errors into bytes for a response or a `$batch` part."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from devstack.dataverse import render
from devstack.dataverse.errors import DataverseError, Throttled


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


ODATA_JSON = "application/json; odata.metadata=minimal"


def encode(reply: Reply) -> tuple[dict[str, str], bytes]:
    """The headers (with `OData-Version` and `Content-Type`) and body bytes of a reply."""
    headers = {"OData-Version": "4.0", **reply.headers}
    if reply.text is not None:
        if reply.media_type:
            headers["Content-Type"] = reply.media_type
        return headers, reply.text.encode("utf-8")
    if reply.body is None:
        return headers, b""
    headers["Content-Type"] = ODATA_JSON
    return headers, to_json(reply.body)


def error_reply(exc: DataverseError) -> Reply:
    """Dataverse's error body, `{"error": {"code", "message"}}`, with `Retry-After` on a 429."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else {}
    return Reply(exc.status, {"error": {"code": exc.code, "message": exc.message}}, headers)


def to_json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
