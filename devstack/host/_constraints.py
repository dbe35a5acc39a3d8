"""Inline route constraints, as ASP.NET Core's default constraint map resolves them.

Each constraint is a predicate on the (decoded) route value, built from the constraint's name and
its optional parenthesised argument. The .NET parsers they stand for run with the invariant
culture; these mirror them:

- `int`, `long`, `min(n)`, `max(n)`, `range(a,b)`: optional white space and sign, ASCII digits,
  within the 32-bit (`int`) or 64-bit range (`NumberStyles.Integer`).
- `decimal`: digits with `,` group separators and an optional `.` fraction, no exponent
  (`NumberStyles.Number`); `double`/`float` also take an exponent, `NaN` and `Infinity`.
- `bool`: `true` or `false`, any case.
- `guid`: what `Guid.TryParse` takes: 32 hex digits bare (N), hyphenated (D), in braces (B) or
  parentheses (P), or the `{0x...,{0x..}}` form (X); any case, surrounding white space ignored.
- `datetime`: an approximation of `DateTime.TryParse`: ISO 8601 dates and date-times, `M/d/yyyy`
  and `yyyy/M/d` dates, an optional `h:mm[:ss]` time with `am`/`pm`, and English month names.
- `alpha`: ASCII letters only. `minlength`, `maxlength`, `length`: counted in UTF-16 code units,
  as .NET counts `string.Length`. `required`, `file`, `nonfile` as in ASP.NET Core.
- `regex(...)`: searched, not anchored (write `^...$`), ignoring case. .NET named groups
  `(?<name>...)` and `\\k<name>` are translated to Python's syntax.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation

Check = Callable[[str], bool]

_WS = r"[\t\n\v\f\r ]*"  # what .NET's NumberStyles.Allow*White accepts
_INTEGER = re.compile(rf"{_WS}[+-]?[0-9]+{_WS}")
_NUMBER = re.compile(
    rf"{_WS}(?P<s1>[+-]?)(?P<n>[0-9][0-9,]*(?:\.[0-9]*)?|\.[0-9]+)(?P<s2>[+-]?){_WS}"
)
_FLOAT = re.compile(
    rf"{_WS}[+-]?(?:(?:[0-9][0-9,]*(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    rf"|nan|infinity|∞){_WS}",
    re.IGNORECASE,
)
_HEX_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_GUID = re.compile(
    rf"\s*(?:{_HEX_GUID}|[0-9a-f]{{32}}|\{{{_HEX_GUID}\}}|\({_HEX_GUID}\)"
    r"|\{0x[0-9a-f]{1,8},0x[0-9a-f]{1,4},0x[0-9a-f]{1,4},\{0x[0-9a-f]{1,2}(?:,0x[0-9a-f]{1,2}){7}\}\})\s*",
    re.IGNORECASE,
)
_ALPHA = re.compile(r"[a-z]*", re.IGNORECASE | re.ASCII)
_DATE = re.compile(
    r"\s*(?:(?P<y1>\d{4})[-/.](?P<m1>\d{1,2})[-/.](?P<d1>\d{1,2})"
    r"|(?P<m2>\d{1,2})/(?P<d2>\d{1,2})/(?P<y2>\d{4}))"
    r"(?:[ T]+(?P<time>.+))?\s*",
)
_TIME = re.compile(
    r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.\d+)?)?\s*(?P<ampm>[ap]m?)?",
    re.IGNORECASE,
)
_MONTH_FORMATS = ("%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%b %d %Y", "%B %d %Y")
_DECIMAL_MAX = Decimal(79228162514264337593543950335)
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _integer(value: str, bounds: tuple[int, int] = _INT64) -> int | None:
    if not _INTEGER.fullmatch(value):
        return None
    number = int(value.strip("\t\n\v\f\r "))
    return number if bounds[0] <= number <= bounds[1] else None


def _is_decimal(value: str) -> bool:
    match = _NUMBER.fullmatch(value)
    if not match or (match["s1"] and match["s2"]):
        return False
    try:
        return abs(Decimal(match["n"].replace(",", ""))) <= _DECIMAL_MAX
    except InvalidOperation:
        return False


def _is_time(text: str) -> bool:
    match = _TIME.fullmatch(text.strip())
    if not match:
        return False
    hour, ampm = int(match["h"]), match["ampm"]
    limit = 12 if ampm else 23
    return hour <= limit and int(match["mi"]) < 60 and int(match["s"] or 0) < 60


def _is_datetime(value: str) -> bool:
    text = value.strip()
    if text.isdigit():  # Python reads basic ISO dates (20161231); DateTime.TryParse does not
        return False
    try:
        datetime.fromisoformat(text)
        return True
    except ValueError:
        pass
    for fmt in _MONTH_FORMATS:
        try:
            datetime.strptime(text, fmt)
            return True
        except ValueError:
            continue
    match = _DATE.fullmatch(value)
    if not match:
        return _is_time(text)
    year, month, day = (match[f"{k}1"] or match[f"{k}2"] for k in "ymd")
    try:
        datetime(int(year), int(month), int(day))
    except ValueError:
        return False
    return match["time"] is None or _is_time(match["time"])


def _utf16_length(value: str) -> int:
    return len(value.encode("utf-16-le")) // 2


def _is_file(value: str) -> bool:
    last_dot = value.rfind(".")
    return last_dot > value.rfind("/") and last_dot < len(value) - 1


def _translate_regex(pattern: str) -> str:
    pattern = re.sub(r"\(\?<(?![=!])", "(?P<", pattern)
    return re.sub(r"\\k<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P=\1)", pattern)


def _numbers(argument: str | None, count: tuple[int, ...]) -> list[int]:
    parts = (argument or "").split(",")
    numbers = [_integer(part) for part in parts]
    if len(parts) not in count or any(n is None for n in numbers):
        raise ValueError(f"expects {' or '.join(map(str, count))} integer argument(s)")
    return [n for n in numbers if n is not None]


def _no_argument(check: Check) -> Callable[[str | None], Check]:
    def build(argument: str | None) -> Check:
        if argument is not None:
            raise ValueError("takes no argument")
        return check

    return build


def _length(argument: str | None) -> Check:
    bounds = _numbers(argument, (1, 2))
    low, high = (bounds[0], bounds[0]) if len(bounds) == 1 else (bounds[0], bounds[1])
    return lambda value: low <= _utf16_length(value) <= high


def _minlength(argument: str | None) -> Check:
    (low,) = _numbers(argument, (1,))
    return lambda value: _utf16_length(value) >= low


def _maxlength(argument: str | None) -> Check:
    (high,) = _numbers(argument, (1,))
    return lambda value: _utf16_length(value) <= high


def _between(low: int | None, high: int | None) -> Check:
    def check(value: str) -> bool:
        number = _integer(value)
        return (
            number is not None
            and (low is None or number >= low)
            and (high is None or number <= high)
        )

    return check


def _min(argument: str | None) -> Check:
    return _between(_numbers(argument, (1,))[0], None)


def _max(argument: str | None) -> Check:
    return _between(None, _numbers(argument, (1,))[0])


def _range(argument: str | None) -> Check:
    low, high = _numbers(argument, (2,))
    return _between(low, high)


def _regex(argument: str | None) -> Check:
    if not argument:
        raise ValueError("expects a regular expression")
    try:
        compiled = re.compile(_translate_regex(argument), re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from exc
    return lambda value: compiled.search(value) is not None


CONSTRAINTS: dict[str, Callable[[str | None], Check]] = {
    "int": _no_argument(lambda v: _integer(v, _INT32) is not None),
    "long": _no_argument(lambda v: _integer(v, _INT64) is not None),
    "bool": _no_argument(lambda v: v.strip().rstrip("\0").lower() in ("true", "false")),
    "decimal": _no_argument(_is_decimal),
    "double": _no_argument(lambda v: _FLOAT.fullmatch(v) is not None),
    "float": _no_argument(lambda v: _FLOAT.fullmatch(v) is not None),
    "guid": _no_argument(lambda v: _GUID.fullmatch(v) is not None),
    "datetime": _no_argument(_is_datetime),
    "alpha": _no_argument(lambda v: _ALPHA.fullmatch(v) is not None),
    "required": _no_argument(lambda v: v != ""),
    "file": _no_argument(_is_file),
    "nonfile": _no_argument(lambda v: not _is_file(v)),
    "length": _length,
    "minlength": _minlength,
    "maxlength": _maxlength,
    "min": _min,
    "max": _max,
    "range": _range,
    "regex": _regex,
}


def build_constraint(name: str, argument: str | None) -> Check:
    """The predicate for `name(argument)`; ValueError when ASP.NET Core would not resolve it."""
    factory = CONSTRAINTS.get(name.lower())
    if factory is None:
        raise ValueError(f"unknown constraint {name!r}")
    try:
        return factory(argument)
    except ValueError as exc:
        raise ValueError(f"constraint {name!r} {exc}") from None
