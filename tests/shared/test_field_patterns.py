"""A text field's JSON Schema accepts exactly what the API accepts (issue 16).

`upper` fields (VIN, registration number) take lower case and store upper case, so their
schema pattern must take lower case too. Every patterned field of every declared domain is
checked, so a new one is covered without a line here.
"""

from __future__ import annotations

import re

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import function_app  # noqa: F401  (builds every domain's blueprint)
from shared.domains.model import Domain, Field, Text, ascii_case_insensitive
from shared.domains.routes import registered
from shared.http.errors import BadInput

# ASCII letters in both cases, digits, the separators the patterns allow, and characters that
# upper-case to ASCII letters in Python ("ſ" -> "S", "ı" -> "I", the Kelvin sign -> "K") or
# to two of them ("ß" -> "SS").
ALPHABET = "ABCHIJOQSZabchijoqsz0189 -_ſıßKé"


def _patterned() -> list[tuple[Domain, Field]]:
    return [
        (d, f)
        for d in registered()
        for f in d.fields
        if isinstance(f.kind, Text) and f.kind.pattern
    ]


def _api_accepts(kind: Text, value: str) -> bool:
    try:
        kind.parse(value, "field")
    except BadInput:
        return False
    return True


def _schema_accepts(kind: Text, value: str) -> bool:
    return jsonschema.Draft202012Validator(kind.schema()).is_valid(value)


def test_the_vehicle_fields_are_among_them() -> None:
    names = {(d.name, f.name) for d, f in _patterned()}
    assert {("vehicle", "vin"), ("vehicle", "registrationNumber")} <= names


def _upper() -> list[tuple[Domain, Field]]:
    return [(d, f) for d, f in _patterned() if isinstance(f.kind, Text) and f.kind.upper]


@pytest.mark.parametrize(("domain", "field"), _upper(), ids=lambda x: getattr(x, "name", ""))
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_lower_case_is_accepted_where_the_api_upper_cases(
    domain: Domain, field: Field, data: st.DataObject
) -> None:
    kind = field.kind
    assert isinstance(kind, Text)
    assert kind.pattern
    valid = data.draw(st.from_regex(kind.pattern, fullmatch=True))
    lower = valid.lower()
    if not _api_accepts(kind, valid):
        return  # too long, or blank: the generic text rules, not this one
    assert kind.parse(lower, field.name) == valid
    assert _schema_accepts(kind, lower), repr(lower)


@pytest.mark.parametrize(("domain", "field"), _patterned(), ids=lambda x: getattr(x, "name", ""))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_schema_and_api_agree(domain: Domain, field: Field, data: st.DataObject) -> None:
    kind = field.kind
    assert isinstance(kind, Text)
    value = data.draw(st.text(alphabet=ALPHABET, min_size=0, max_size=kind.max_length + 2))
    assert _schema_accepts(kind, value) == _api_accepts(kind, value), repr(value)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("[A-HJ-NPR-Z0-9]{17}", "[A-Ha-hJ-Nj-nPpR-Zr-z0-9]{17}"),
        ("[A-Z0-9 -]{2,20}", "[A-Za-z0-9 -]{2,20}"),
        (r"AB\S[^A-C]", r"[Aa][Bb]\S[^A-Ca-c]"),
    ],
)
def test_ascii_case_insensitive(pattern: str, expected: str) -> None:
    assert ascii_case_insensitive(pattern) == expected
    assert re.compile(expected)
