"""shared.domains.paging in process: sealed page tokens, bound to caller and query, expiring on
a clock the test moves. The end-to-end tests are in tests/security/test_review_page_tokens.py."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shared.auth.principal import Mode, Principal
from shared.dataverse.errors import BackendUnavailable
from shared.domains import paging
from shared.domains.paging import PageTokens
from shared.http.errors import BadInput
from tests.clock import ManualClock

KEY, PREVIOUS, OTHER = (bytes([n]) * 32 for n in (1, 2, 3))
SKIPTOKEN = (
    '<cookie pagenumber="2" pagingcookie="%253ccookie%2520page%253d%25221%2522%253e%253cfullname'
    "%2520last%253d%2522Ada%2520Lovelace%2522%2520first%253d%2522Aaron%2520Abbott%2522%2520%252f"
    '%253e%253c%252fcookie%253e" istracking="False" />'
)
QUERY = [("$select", "fullname,contactid"), ("$orderby", "fullname asc,contactid asc")]


def user(oid: str = "11111111-1111-1111-1111-111111111111", app: str = "portal") -> Principal:
    return Principal(Mode.USER, oid, "tenant", app, frozenset({"customer.read"}), 0)


def application(app: str = "dealer-sync", oid: str = "sp") -> Principal:
    return Principal(Mode.APPLICATION, oid, "tenant", app, frozenset({"customer.read"}), 0)


ALICE = paging.binding(user(), "customer", "contacts", QUERY)


@contextmanager
def refused(why: str = "is not a token") -> Iterator[None]:
    with pytest.raises(BadInput) as caught:
        yield
    assert caught.value.field == "pageToken"
    assert caught.value.why.startswith(why)


def tokens(
    key: bytes = KEY,
    previous: bytes | None = None,
    *,
    clock: ManualClock | None = None,
    lifetime: int = 60,
) -> PageTokens:
    return PageTokens(key, previous, lifetime_seconds=lifetime, clock=clock or ManualClock())


def test_round_trip_url_safe_and_opaque() -> None:
    sealer = tokens()
    token = sealer.seal(SKIPTOKEN, ALICE)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert sealer.open(token, ALICE) == SKIPTOKEN
    # Compressed: shorter than the skiptoken itself, let alone its base64.
    assert len(token) < len(SKIPTOKEN)
    # A fresh nonce each time: the same page twice gives two unrelated tokens.
    assert sealer.seal(SKIPTOKEN, ALICE) != token
    raw = base64.urlsafe_b64decode(token + "==")
    for word in (b"Ada", b"Lovelace", b"cookie", b"fullname"):
        assert word not in raw


@pytest.mark.parametrize(
    "other",
    [
        paging.binding(user("22222222-2222-2222-2222-222222222222"), "customer", "contacts", QUERY),
        paging.binding(application(), "customer", "contacts", QUERY),
        paging.binding(user(), "case", "contacts", QUERY),
        paging.binding(user(), "customer", "incidents", QUERY),
        paging.binding(user(), "customer", "contacts", [*QUERY, ("$filter", "x eq 1")]),
        paging.binding(user(), "customer", "contacts", QUERY[:1]),
    ],
)
def test_a_token_opens_only_for_its_own_caller_and_query(other: bytes) -> None:
    sealer = tokens()
    with refused():
        sealer.open(sealer.seal(SKIPTOKEN, ALICE), other)


def test_what_the_binding_holds() -> None:
    # The user whichever client app they use; an application by its client id, not its oid.
    assert paging.binding(user(app="other"), "customer", "contacts", QUERY) == ALICE
    assert paging.binding(application(oid="x"), "c", "e", QUERY) == paging.binding(
        application(oid="y"), "c", "e", QUERY
    )
    assert paging.binding(application("a"), "c", "e", QUERY) != paging.binding(
        application("b"), "c", "e", QUERY
    )
    # The skiptoken itself is not part of the query's identity.
    with_skip = paging.binding(user(), "customer", "contacts", [*QUERY, ("$skiptoken", "x")])
    assert with_skip == ALICE


def test_expiry_on_a_moved_clock() -> None:
    clock = ManualClock(1_700_000_000.0)
    sealer = tokens(clock=clock, lifetime=60)
    token = sealer.seal(SKIPTOKEN, ALICE)
    clock.advance(59.5)
    assert sealer.open(token, ALICE) == SKIPTOKEN
    clock.advance(0.5)
    with refused("has expired"):
        sealer.open(token, ALICE)


def test_previous_key_opens_but_does_not_seal() -> None:
    old = tokens(PREVIOUS).seal(SKIPTOKEN, ALICE)
    rotated = tokens(KEY, PREVIOUS)
    assert rotated.open(old, ALICE) == SKIPTOKEN
    new = rotated.seal(SKIPTOKEN, ALICE)
    assert tokens(KEY).open(new, ALICE) == SKIPTOKEN
    with refused():
        tokens(PREVIOUS).open(new, ALICE)
    for unrelated in (tokens(OTHER), tokens(OTHER, KEY)):
        with refused():
            unrelated.open(old, ALICE)


def test_key_ids_that_collide_still_open() -> None:
    first = os.urandom(32)
    candidates = (os.urandom(32) for _ in range(100_000))
    second = next(k for k in candidates if paging.key_id(k) == paging.key_id(first))
    rotated = tokens(first, second)
    assert rotated.open(tokens(second).seal(SKIPTOKEN, ALICE), ALICE) == SKIPTOKEN
    assert rotated.open(tokens(first).seal(SKIPTOKEN, ALICE), ALICE) == SKIPTOKEN


def test_every_flipped_byte_is_refused() -> None:
    sealer = tokens()
    raw = base64.urlsafe_b64decode(sealer.seal(SKIPTOKEN, ALICE) + "==")
    for i in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            bad = raw[:i] + bytes([raw[i] ^ flip]) + raw[i + 1 :]
            with refused():
                sealer.open(base64.urlsafe_b64encode(bad).decode().rstrip("="), ALICE)


def _spelled(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    ["", "not a token", "abc$", "x" * 5000, "A", "AAAA", "eyJzIjoiMSJ9", _spelled(bytes(40)),
     _spelled(b"\x02" + bytes(60)), _spelled(os.urandom(300))],
)  # fmt: skip
def test_malformed_tokens(token: str) -> None:
    with refused():
        tokens().open(token, ALICE)


def test_only_the_canonical_spelling() -> None:
    sealer = tokens()
    # A token whose last character carries spare bits (its length is not a multiple of 4).
    sealed = (sealer.seal(SKIPTOKEN + "x" * n, ALICE) for n in range(50))
    token = next(t for t in sealed if len(t) % 4)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # The lowest bit of the last character is left over (the same bytes, spelled otherwise).
    spare_bit = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    assert base64.urlsafe_b64decode(spare_bit + "==") == base64.urlsafe_b64decode(token + "==")
    for spelling in (token + "=" * (-len(token) % 4), spare_bit):
        with refused():
            sealer.open(spelling, ALICE)


def test_a_skiptoken_too_long_to_come_back_fails_at_the_source() -> None:
    with pytest.raises(BackendUnavailable):
        tokens().seal(base64.b64encode(os.urandom(4000)).decode(), ALICE)


def test_skiptoken_comes_from_the_next_link() -> None:
    link = (
        "https://org.example/api/data/v9.2/contacts?$select=a"
        "&$skiptoken=%3Ccookie%20p%3D%221%22%20/%3E"
    )
    assert paging.skiptoken(link) == '<cookie p="1" />'
    assert paging.skiptoken(None) is None
    assert paging.skiptoken("https://org.example/api/data/v9.2/contacts?$select=a") is None
