"""shared.datakeys: one API data key, one subkey per purpose; page tokens use theirs, never the
data key itself, and the log scrubber knows the data keys."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from shared import datakeys, telemetry
from shared.auth.principal import Mode, Principal
from shared.domains import paging
from shared.domains.paging import PageTokens
from shared.http.errors import BadInput
from shared.settings import Settings
from tests.clock import ManualClock

KEY, PREVIOUS = bytes(range(32)), bytes(range(100, 132))
ALICE = paging.binding(
    Principal(Mode.USER, "oid", "tenant", "portal", frozenset({"customer.read"}), 0),
    "customer",
    "contacts",
    [("$select", "fullname")],
)


def _hkdf_sha256(key: bytes, info: bytes) -> bytes:
    """RFC 5869 by hand, with no salt (a hash-length string of zeros), for one 32-byte block."""
    prk = hmac.new(bytes(32), key, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_derive_is_hkdf_sha256_with_the_purpose_in_info() -> None:
    subkey = datakeys.derive(KEY, "page-tokens")
    assert subkey == _hkdf_sha256(KEY, b"central-api data key\x00page-tokens")
    assert len(subkey) == 32
    assert datakeys.derive(KEY, "page-tokens") == subkey  # every instance derives the same
    assert subkey != KEY
    assert datakeys.derive(KEY, "store-lookup") != subkey
    assert datakeys.derive(PREVIOUS, "page-tokens") != subkey


@pytest.mark.parametrize("purpose", ["", "Page-Tokens", "page tokens", "page-", "pa\x00ge"])
def test_a_purpose_is_lower_case_words_joined_by_hyphens(purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose"):
        datakeys.derive(KEY, purpose)


def test_page_tokens_are_sealed_under_their_subkey_not_the_data_key() -> None:
    clock = ManualClock()
    sealer = PageTokens.from_data_keys(KEY, lifetime_seconds=60, clock=clock)
    token = sealer.seal("skip", ALICE)
    subkey = datakeys.derive(KEY, paging.KEY_PURPOSE)
    assert base64.urlsafe_b64decode(token + "==")[1] == paging.key_id(subkey)
    assert PageTokens(subkey, lifetime_seconds=60, clock=clock).open(token, ALICE) == "skip"
    with pytest.raises(BadInput):
        PageTokens(KEY, lifetime_seconds=60, clock=clock).open(token, ALICE)


def test_the_previous_data_key_still_opens_page_tokens() -> None:
    clock = ManualClock()
    old = PageTokens.from_data_keys(PREVIOUS, lifetime_seconds=60, clock=clock).seal("s", ALICE)
    rotated = PageTokens.from_data_keys(KEY, PREVIOUS, lifetime_seconds=60, clock=clock)
    assert rotated.open(old, ALICE) == "s"
    with pytest.raises(BadInput):
        PageTokens.from_data_keys(KEY, lifetime_seconds=60, clock=clock).open(old, ALICE)


def test_the_log_scrubber_knows_both_data_keys() -> None:
    settings = Settings(
        tenant_id="tenant",
        authority_host="https://login.example",
        api_client_id="api",
        dataverse_url="https://dataverse.example",
        subscription_keys={},
        data_key=KEY,
        data_key_previous=PREVIOUS,
    )
    telemetry.configure(settings, environ={})
    for key in (KEY, PREVIOUS):
        text = base64.b64encode(key).decode("ascii")
        assert telemetry.redactor.scrub(f"saw {text} in a log") == "saw [secret] in a log"
