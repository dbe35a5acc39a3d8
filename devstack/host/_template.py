"""Route templates: parsed and matched as ASP.NET Core's template parser and matcher do.

Syntax: segments separated by `/`; a segment is literals and parameters. `{name}`,
`{name?}` (optional), `{name=default}`, `{*rest}` / `{**rest}` (catch-all, last segment only),
`{name:int:min(1)}` (constraints, see `_constraints`), `{{` and `}}` for literal braces (also
inside a parameter, so a regex quantifier is written `{{3}}`). A segment may mix literals and
parameters (`{name}.{ext?}`); only a `.` may precede an optional parameter there.

Matching: literals ignore case; values are the decoded path segments; a trailing `/` is ignored
and an empty segment never matches; parameters missing at the end of the path must be optional,
have a default, or be the catch-all; constraints apply to the values present.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from devstack.host._constraints import Check, build_constraint
from devstack.host._errors import RouteTemplateError

_INVALID_NAME = re.compile(r"[/{}?*]|^$")


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Constraint:
    text: str
    check: Check = field(compare=False)


@dataclass(frozen=True)
class Parameter:
    name: str
    constraints: tuple[Constraint, ...] = ()
    optional: bool = False
    catch_all: bool = False
    default: str | None = None

    def accepts(self, value: str) -> bool:
        return all(c.check(value) for c in self.constraints)


Part = Literal | Parameter


@dataclass(frozen=True)
class Segment:
    parts: tuple[Part, ...]
    # Complex segments (several parts) match by regular expression; the second one drops a
    # trailing `.{optional?}`.
    patterns: tuple[re.Pattern[str], ...] = ()

    @property
    def first(self) -> Part:
        return self.parts[0]

    @property
    def may_be_missing(self) -> bool:
        part = self.parts[0]
        return (
            len(self.parts) == 1
            and isinstance(part, Parameter)
            and (part.optional or part.catch_all or part.default is not None)
        )

    def match(self, text: str, values: dict[str, str]) -> bool:
        part = self.parts[0]
        if not self.patterns:
            if isinstance(part, Literal):
                return part.text.lower() == text.lower()
            values[part.name] = text
            return True
        params = [p for p in self.parts if isinstance(p, Parameter)]
        for pattern in self.patterns:
            found = pattern.fullmatch(text)
            if found:
                values.update(zip((p.name for p in params), found.groups(), strict=False))
                return True
        return False


@dataclass(frozen=True)
class RouteTemplate:
    text: str
    segments: tuple[Segment, ...]

    @property
    def parameters(self) -> list[Parameter]:
        return [p for s in self.segments for p in s.parts if isinstance(p, Parameter)]

    @property
    def has_catch_all(self) -> bool:
        return bool(self.segments) and any(
            isinstance(p, Parameter) and p.catch_all for p in self.segments[-1].parts
        )

    def match(self, path: list[str]) -> dict[str, str] | None:
        """Route values for a path given as decoded segments, or None when it does not match."""
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            first = segment.first
            if isinstance(first, Parameter) and first.catch_all:
                rest = "/".join(path[index:])
                if rest:
                    values[first.name] = rest
                break
            if index >= len(path):
                if not segment.may_be_missing:
                    return None
                continue
            if not path[index] or not segment.match(path[index], values):
                return None
        else:
            if len(path) > len(self.segments):
                return None
        for param in self.parameters:
            if param.name not in values and param.default is not None:
                values[param.name] = param.default
            if param.name in values and not param.accepts(values[param.name]):
                return None
        return values


def parse_template(text: str) -> RouteTemplate:
    """Parse `text` (no leading or trailing `/`); RouteTemplateError says what is wrong."""
    try:
        segments = tuple(_segment(parts) for parts in _split(text))
    except ValueError as exc:
        raise RouteTemplateError(text, str(exc)) from None
    template = RouteTemplate(text, segments)
    names = [p.name.lower() for p in template.parameters]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RouteTemplateError(text, f"parameter {duplicates[0]!r} appears more than once")
    for segment in segments[:-1]:
        if any(isinstance(p, Parameter) and p.catch_all for p in segment.parts):
            raise RouteTemplateError(text, "a catch-all parameter must be the last segment")
    return template


def _split(text: str) -> list[list[Part]]:
    """Segments as lists of parts, unescaping `{{`/`}}`."""
    segments: list[list[Part]] = []
    parts: list[Part] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            value = "".join(literal)
            if "?" in value:
                raise ValueError(f"the literal {value!r} cannot contain '?'")
            parts.append(Literal(value))
            literal.clear()

    i = 0
    while i < len(text):
        char = text[i]
        if char in "{}" and text.startswith(char * 2, i):
            literal.append(char)
            i += 2
        elif char == "}":
            raise ValueError("unmatched '}'")
        elif char == "{":
            flush()
            raw, i = _read_parameter(text, i + 1)
            parts.append(_parameter(raw))
        elif char == "/":
            flush()
            if not parts:
                raise ValueError("empty segment")
            segments.append(parts)
            parts = []
            i += 1
        else:
            literal.append(char)
            i += 1
    flush()
    if parts:
        segments.append(parts)
    elif text:
        raise ValueError("empty segment")
    return segments


def _read_parameter(text: str, start: int) -> tuple[str, int]:
    """The unescaped text of the parameter opened just before `start`, and where it ends."""
    chars: list[str] = []
    i = start
    while i < len(text):
        char = text[i]
        if char in "{}" and text.startswith(char * 2, i):
            chars.append(char)
            i += 2
        elif char == "}":
            return "".join(chars), i + 1
        elif char == "{":
            raise ValueError("unescaped '{' inside a parameter")
        else:
            chars.append(char)
            i += 1
    raise ValueError("unterminated parameter")


def _parameter(raw: str) -> Parameter:
    catch_all = raw.startswith("*")
    body = raw.lstrip("*") if catch_all else raw
    if catch_all and raw.startswith("***"):
        raise ValueError(f"invalid catch-all parameter {raw!r}")
    name_end = next((i for i, c in enumerate(body) if c in ":=?"), len(body))
    name, rest = body[:name_end], body[name_end:]
    if _INVALID_NAME.search(name):
        raise ValueError(f"invalid parameter name {name!r}")
    constraints: list[Constraint] = []
    while rest.startswith(":"):
        text, rest = _read_constraint(rest[1:])
        cname, _, argument = text.partition("(")
        check = build_constraint(cname, argument[:-1] if argument else None)
        constraints.append(Constraint(text, check))
    optional, default = False, None
    if rest.startswith("="):
        default = rest[1:]
        if default.endswith("?"):
            raise ValueError(f"optional parameter {name!r} cannot have a default value")
    elif rest == "?":
        optional = True
    elif rest:
        raise ValueError(f"cannot parse parameter {raw!r}")
    if catch_all and optional:
        raise ValueError(f"catch-all parameter {name!r} cannot be optional")
    return Parameter(name, tuple(constraints), optional, catch_all, default)


def _read_constraint(text: str) -> tuple[str, str]:
    """One constraint `name` or `name(argument)`; an argument ends at the first `)` followed by
    `:`, `=`, `?` or the end, so regular expressions may hold parentheses."""
    i = next((i for i, c in enumerate(text) if c in ":=?("), len(text))
    if i < len(text) and text[i] == "(":
        j = i + 1
        while True:
            close = text.find(")", j)
            if close < 0:
                raise ValueError(f"unterminated constraint argument in {text!r}")
            if close + 1 == len(text) or text[close + 1] in ":=?":
                i = close + 1
                break
            j = close + 1
    if i == 0:
        raise ValueError("empty constraint")
    return text[:i], text[i:]


def _segment(parts: list[Part]) -> Segment:
    if len(parts) == 1:
        return Segment(tuple(parts))
    for before, after in itertools.pairwise(parts):
        if isinstance(before, Parameter) and isinstance(after, Parameter):
            raise ValueError("a segment cannot hold two consecutive parameters")
    for index, part in enumerate(parts):
        if not isinstance(part, Parameter):
            continue
        if part.catch_all:
            raise ValueError("a catch-all parameter must be alone in its segment")
        if part.optional and (index != len(parts) - 1 or parts[index - 1] != Literal(".")):
            raise ValueError(f"only a '.' can precede the optional parameter {part.name!r}")
    patterns = [_pattern(parts)]
    last = parts[-1]
    if isinstance(last, Parameter) and last.optional:
        patterns.append(_pattern(parts[:-2]))
    return Segment(tuple(parts), tuple(patterns))


def _pattern(parts: list[Part]) -> re.Pattern[str]:
    # Greedy groups from the left give the same split as ASP.NET's right-to-left literal search.
    body = "".join(re.escape(p.text) if isinstance(p, Literal) else "(.+)" for p in parts)
    return re.compile(body, re.IGNORECASE | re.DOTALL)
