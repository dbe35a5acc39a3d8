"""What the Functions host makes of a raw request before the worker sees it.

The host (ASP.NET Core on Kestrel) hands the Python worker a request whose parts have been
through these steps; both the HTTP server and in-process dispatch use them so they agree:

- path: percent-decoded as UTF-8 except `%2F`, which stays as written so a value cannot gain a
  `/`; a segment that is not valid UTF-8 once decoded is kept as sent; `.` and `..` segments
  are resolved; a trailing `/` is ignored.
- query: `+` is a space; keys are grouped ignoring case (the first spelling wins) and repeated
  values are joined with `,` (`?a=1&a=2` gives `"1,2"`); a key whose value is empty is dropped,
  as the Python worker receives it (it does not take the host's nullable query values).
- headers: names lower-cased, repeated headers joined with `,`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote_to_bytes

_ENCODED_SLASH = re.compile(rb"(%2[fF])")


def path_segments(raw_path: bytes) -> list[str]:
    """The decoded segments of a percent-encoded path, as routing sees them."""
    raw = raw_path[1:] if raw_path.startswith(b"/") else raw_path
    segments: list[str] = []
    for piece in raw.split(b"/"):
        segment = _decode_segment(piece)
        if segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    if segments and segments[-1] == "":
        segments.pop()
    return segments


def _decode_segment(raw: bytes) -> str:
    pieces = _ENCODED_SLASH.split(raw)
    decoded = [piece if i % 2 else unquote_to_bytes(piece) for i, piece in enumerate(pieces)]
    joined = b"".join(decoded)
    try:
        return joined.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


def query_params(query: str) -> dict[str, str]:
    groups: dict[str, tuple[str, list[str]]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        groups.setdefault(key.lower(), (key, []))[1].append(value)
    joined = {key: ",".join(values) for key, values in groups.values()}
    return {key: value for key, value in joined.items() if value}


def join_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, list[str]] = {}
    for name, value in pairs:
        headers.setdefault(name.lower(), []).append(value)
    return {name: ",".join(values) for name, values in headers.items()}
