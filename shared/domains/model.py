"""How a domain is declared: its resource's fields and their Dataverse columns, what can be
searched and filtered, and who may call it. `shared.domains.service` serves any declaration and
`shared.openapi` describes it, so adding a domain is one declaration plus its tests.

A field's `kind` turns client JSON into a Dataverse value (`parse`, which raises `BadInput`
naming the field), turns a Dataverse value into client JSON (`render`), and describes itself
as JSON Schema (`schema`).
"""

from __future__ import annotations

import datetime as dt
import re
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.http.errors import BadInput

# Anchored because it is also a JSON Schema pattern (unanchored there); code uses `fullmatch`.
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Control characters (C0, DEL and C1) other than tab, CR and LF (allowed only in multi-line
# text). C1 ones (U+0080-U+009F, e.g. NEL) matter too: Dataverse silently drops them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LINE_BREAK = re.compile(r"[\r\n\t]")
# Format characters that change how text is shown without being seen ("Trojan Source",
# CVE-2021-42574): Unicode line and paragraph separators, and the bidirectional embeddings,
# overrides and isolates that reorder what follows. Refused in all text. Single-line text (names,
# titles, search text, filters) also refuses bidirectional marks and zero-width characters: a
# value there is one short run that people compare by eye, where an invisible character only
# makes two equal-looking values differ. Multi-line text keeps marks and zero-width joiners,
# which Arabic, Hebrew, Persian and Indic prose and emoji sequences need. Written as regular
# expression escapes valid in Python and in ECMA-262, so that the JSON Schema says the same.
_REORDERING = r"\u2028\u2029\u202a-\u202e\u2066-\u2069"
_INVISIBLE = r"\u061c\u200b-\u200f\u2060\ufeff"
_FORMAT = {
    False: re.compile(f"[{_REORDERING}{_INVISIBLE}]"),
    True: re.compile(f"[{_REORDERING}]"),
}
_FORMAT_WHY = {
    False: "must not contain Unicode line separators, bidirectional controls or zero-width "
    "characters",
    True: "must not contain Unicode line separators or bidirectional controls",
}
# JSON can carry a lone surrogate (`"\ud800"`); it is not text and cannot be sent on as UTF-8.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# What `Text` accepts, as JSON Schema patterns (ECMA-262 syntax): none of the characters above,
# and at least one character that is not a space.
_SINGLE_LINE_REFUSED = rf"\x00-\x1f\x7f-\x9f{_REORDERING}{_INVISIBLE}"
_MULTILINE_REFUSED = rf"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_REORDERING}"
_SINGLE_LINE_TEXT = (
    rf"^[^{_SINGLE_LINE_REFUSED}]*[^\s{_SINGLE_LINE_REFUSED}][^{_SINGLE_LINE_REFUSED}]*$"
)
_MULTILINE_TEXT = rf"^[^{_MULTILINE_REFUSED}]*[^\s{_MULTILINE_REFUSED}][^{_MULTILINE_REFUSED}]*$"


_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def ascii_case_insensitive(pattern: str) -> str:
    """`pattern` matching ASCII letters in either case, written without flags (JSON Schema has
    none): `[A-HJ-N]` becomes `[A-HJ-Na-hj-n]`, a letter outside a class `[Xx]`. Escapes
    (`\\S`, `\\D`) are kept as they are."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class and char in string.ascii_uppercase:
            if pattern[i + 1 : i + 2] == "-" and pattern[i + 2 : i + 3] in string.ascii_uppercase:
                span = pattern[i : i + 3]
                out.append(span + span.lower())
                i += 3
                continue
            out.append(char + char.lower())
        elif char in string.ascii_uppercase:
            out.append(f"[{char}{char.lower()}]")
        else:
            out.append(char)
            if char == "[" and not in_class:
                in_class = True
            elif char == "]" and in_class:
                in_class = False
        i += 1
    return "".join(out)


def parse_guid(value: object, name: str) -> str:
    """Only the canonical 36-character form; braces, `urn:uuid:` and bare hex are refused."""
    if not isinstance(value, str) or not GUID.fullmatch(value):
        raise BadInput(name, "must be a GUID like 3fa85f64-5717-4562-b3fc-2c963f66afa6")
    return str(uuid.UUID(value))


def check_text(value: object, name: str, *, max_length: int, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise BadInput(name, "must be a string")
    if len(value) > max_length:
        raise BadInput(name, f"must be at most {max_length} characters")
    if _CONTROL.search(value) or (not multiline and _LINE_BREAK.search(value)):
        raise BadInput(name, "must not contain control characters")
    if _SURROGATE.search(value):
        raise BadInput(name, "must be valid Unicode text (no unpaired surrogates)")
    if _FORMAT[multiline].search(value):
        raise BadInput(name, _FORMAT_WHY[multiline])
    return value


class Kind:
    def parse(self, value: Any, name: str) -> Any:
        raise NotImplementedError

    def render(self, value: Any) -> Any:
        return value

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Kind):
    max_length: int
    multiline: bool = False
    pattern: str | None = None  # a full-match regular expression
    pattern_hint: str = ""
    upper: bool = False  # stored upper case (VINs, registration numbers)

    def parse(self, value: Any, name: str) -> str:
        text = check_text(value, name, max_length=self.max_length, multiline=self.multiline)
        if not text.strip():
            raise BadInput(name, "must not be empty")
        if self.upper:  # ASCII only: "ſ".upper() is "S", and that is not what the client sent
            text = text.translate(_ASCII_UPPER)
        if self.pattern and not re.fullmatch(self.pattern, text):
            raise BadInput(name, self.pattern_hint or "has the wrong format")
        return text

    def schema(self) -> dict[str, Any]:
        result: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": self.max_length}
        # Not blank, no control or format characters (line breaks only in multi-line text)...
        result["pattern"] = _MULTILINE_TEXT if self.multiline else _SINGLE_LINE_TEXT
        if self.pattern:  # ...and the format (for `upper` fields, in either case)
            pattern = ascii_case_insensitive(self.pattern) if self.upper else self.pattern
            result["allOf"] = [{"pattern": f"^(?:{pattern})$"}]
        return result


@dataclass(frozen=True)
class Integer(Kind):
    minimum: int
    maximum: int

    def parse(self, value: Any, name: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON has one number type: 2020.0 is the integer 2020
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInput(name, "must be an integer")
        if not self.minimum <= value <= self.maximum:
            raise BadInput(name, f"must be between {self.minimum} and {self.maximum}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class Choice(Kind):
    """A Dataverse choice column exposed as names: `{"high": 1, "normal": 2}`."""

    options: Mapping[str, int]

    def parse(self, value: Any, name: str) -> int:
        if not isinstance(value, str) or value not in self.options:
            raise BadInput(name, "must be one of " + ", ".join(self.options))
        return self.options[value]

    def render(self, value: Any) -> Any:
        for label, code in self.options.items():
            if code == value:
                return label
        return None

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.options)}


@dataclass(frozen=True)
class Reference(Kind):
    """A lookup: read from `_<column>_value`, written by binding the navigation property."""

    navigation: str  # e.g. "customerid_contact"
    entity_set: str  # e.g. "contacts"

    def parse(self, value: Any, name: str) -> str:
        return parse_guid(value, name)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "uuid", "pattern": GUID.pattern}


@dataclass(frozen=True)
class Timestamp(Kind):
    def render(self, value: Any) -> Any:
        if not isinstance(value, str):
            return None
        try:
            return dt.datetime.fromisoformat(value).astimezone(dt.UTC).isoformat()
        except ValueError:
            return None

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class Field:
    name: str  # the API's name (camelCase)
    column: str  # the Dataverse column it is read from (`_x_value` for lookups)
    kind: Kind
    description: str
    writable: bool = True
    required: bool = False  # on create
    nullable: bool = True  # may be cleared with null on update

    def to_dataverse(self, value: Any) -> tuple[str, Any]:
        """The (property, value) pair a create or update sends for this field."""
        if isinstance(self.kind, Reference):
            bind = None if value is None else f"/{self.kind.entity_set}({value})"
            return f"{self.kind.navigation}@odata.bind", bind
        return self.column, value


@dataclass(frozen=True)
class Filter:
    """A query parameter that narrows a list to records whose `field` equals the value."""

    param: str
    field: str
    description: str


@dataclass(frozen=True)
class Domain:
    name: str  # the scope and role prefix: customer -> customer.read, customer.readwrite
    route: str  # the collection's path under /api
    entity_set: str
    key: str  # the primary key column
    title: str
    description: str
    fields: tuple[Field, ...]
    search: tuple[str, ...] = ()  # field names `q` searches (contains, case-insensitive)
    filters: tuple[Filter, ...] = ()
    order_by: tuple[str, ...] = ()  # Dataverse columns, ascending; the key is appended
    delegated: bool = True  # False: application tokens only
    by_name: Mapping[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})
        unknown = [
            n for n in (*self.search, *(f.field for f in self.filters)) if n not in self.by_name
        ]
        if unknown:
            raise ValueError(f"domain {self.name}: unknown fields {unknown}")

    @property
    def resource(self) -> str:
        """The schema name of one record (`Customer`)."""
        return self.name[:1].upper() + self.name[1:]

    @property
    def select(self) -> str:
        return ",".join([self.key, *(f.column for f in self.fields)])
