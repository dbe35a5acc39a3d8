"""shared.dataverse.query: values never become OData syntax, and searched text is literal.

The oracle is the Dataverse emulator's own `$filter` parser (odata-query's grammar) and its SQL
Server LIKE semantics, used in process: whatever text a client searches for, the filter parses
to one `contains` whose pattern matches exactly that text, wildcards included.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from odata_query import ast

from devstack.dataverse.filters import parse
from devstack.dataverse.sqlserver import like_pattern
from shared.dataverse import query

# What `check_text` lets through to a search: no control characters.
search_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
).filter(lambda s: s.strip())


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", "'plain'"),
        ("O'Brien", "'O''Brien'"),
        ("''", "''''''"),
        ("", "''"),
        ("æøå ü", "'æøå ü'"),
    ],
)
def test_string_literal_doubles_quotes(value: str, literal: str) -> None:
    assert query.string_literal(value) == literal


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("100%", "'100[%]'"),
        ("a_b", "'a[_]b'"),
        ("[x]", "'[[]x]'"),
        ("O'B%_[", "'O''B[%][_][[]'"),
        ("plain ]", "'plain ]'"),  # a lone `]` is not special
    ],
)
def test_like_literal_brackets_wildcards(value: str, literal: str) -> None:
    assert query.like_literal(value) == literal


def test_guid_literal_is_the_bare_lower_case_guid() -> None:
    value = "3FA85F64-5717-4562-B3FC-2C963F66AFA6"
    assert query.guid_literal(value) == value.lower()
    with pytest.raises(ValueError):
        query.guid_literal("not-a-guid")


def test_clauses_compose() -> None:
    one = query.eq("statecode", "0")
    assert one == "statecode eq 0"
    assert query.any_of([one]) == one
    assert query.any_of([one, "x eq 1"]) == "(statecode eq 0 or x eq 1)"
    assert query.all_of([one, "(a or b)"]) == "statecode eq 0 and (a or b)"
    assert query.contains("fullname", "a'b") == "contains(fullname,'a''b')"


def test_encode_percent_encodes_every_value() -> None:
    text = "a b&c=d#e+f%g/h?i'j"
    encoded = query.encode([("$filter", text), ("$select", "a,b")])
    assert encoded == "$filter=a%20b%26c%3Dd%23e%2Bf%25g%2Fh%3Fi%27j&$select=a%2Cb"
    assert "+" not in encoded
    assert " " not in encoded
    assert parse_qsl(encoded, strict_parsing=True) == [("$filter", text), ("$select", "a,b")]


def _pattern_of(expression: str) -> str:
    node = parse(expression)
    assert isinstance(node, ast.Call), node
    assert node.func.name == "contains"
    column, literal = node.args
    assert isinstance(column, ast.Identifier)
    assert isinstance(literal, ast.String)
    return str(literal.val)


@settings(max_examples=300, deadline=None)
@given(search_text, st.text(min_size=0, max_size=5), st.text(min_size=0, max_size=5))
def test_any_search_text_is_searched_literally(text: str, before: str, after: str) -> None:
    pattern = _pattern_of(query.contains("fullname", text))
    regex = like_pattern(f"%{pattern}%")  # Dataverse: contains(x, 'p') is x LIKE '%p%'
    assert regex is not None
    assert regex.fullmatch(before + text + after)
    # Every wildcard matches only itself: swapping it for another character no longer matches.
    for i, ch in enumerate(text):
        if ch in "%_[":
            changed = text[:i] + ("Z" if ch != "Z" else "Y") + text[i + 1 :]
            assert not regex.fullmatch(changed)


@settings(max_examples=200, deadline=None)
@given(search_text)
def test_any_search_text_survives_url_encoding(text: str) -> None:
    expression = query.any_of(
        [query.contains("fullname", text), query.contains("emailaddress1", text)]
    )
    encoded = query.encode([("$filter", expression)])
    ((name, decoded),) = parse_qsl(encoded, strict_parsing=True, keep_blank_values=True)
    assert (name, decoded) == ("$filter", expression)
    node = parse(decoded)
    assert isinstance(node, ast.BoolOp)  # one `or` of two calls, nothing injected


def test_injection_attempts_stay_inside_the_literal() -> None:
    for attempt in (
        "x') or contains(fullname,'",
        "x' or 1 eq 1 or fullname eq '",
        "') and (statecode eq 1",
        "%' or '%'='",
    ):
        pattern = _pattern_of(query.contains("fullname", attempt))
        regex = like_pattern(f"%{pattern}%")
        assert regex is not None
        assert regex.fullmatch(attempt)


def test_guid_filters_parse_as_guids() -> None:
    value = str(uuid.uuid4())
    node = parse(query.eq("_customerid_value", query.guid_literal(value)))
    assert isinstance(node, ast.Compare)
    assert isinstance(node.right, ast.GUID)
    assert node.right.val == value
