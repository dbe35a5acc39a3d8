"""R1-R4: the tenant's key endpoint (OIDC discovery and JWKS) failing, slow, lying, or stampeded.

Each test runs on a runtime of its own (`fresh`), so that the cold start is real and the
once-per-5-minutes refresh budget it spends is its own; the key cache's clock is one the test
moves (`Clock`), so waiting out a retry or refresh interval takes no time.
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from tests.api.conftest import Api
from tests.faults.conftest import (
    DISCOVERY_PATH,
    JWKS_PATH,
    Clock,
    KeyRing,
    Restart,
    add_fault,
    all_at_once,
    assert_error,
    key_fetches,
    kid_of,
    mint_user,
    retry_after,
    settle,
    token_posts,
)

LIST = "/api/customers?pageSize=1"


# --- R1 -----------------------------------------------------------------------------------------


def test_r1_key_endpoint_down_at_cold_start_is_503_with_retry_after(
    fresh: Restart, faults: Api
) -> None:
    token = mint_user(faults, "alice")
    add_fault(faults, "entra", path=DISCOVERY_PATH, status=503, body="upstream-canary-r1")
    entra_mark, dv_mark = faults.marks()

    first = faults.call("GET", LIST, token=token)
    body = assert_error(first, 503, "signing_keys_unavailable")
    assert "WWW-Authenticate" not in first.headers  # not an authentication failure
    assert 1 <= retry_after(first) <= 10
    assert "canary" not in first.text
    assert "retry" in body["message"].lower()

    # Within the retry interval nobody asks the key endpoint again: the answer is the same.
    again = faults.call("GET", LIST, token=token)
    assert_error(again, 503, "signing_keys_unavailable")
    assert retry_after(again) <= retry_after(first)

    # A token that is malformed on its face is still a 401, keys or no keys.
    assert_error(faults.call("GET", LIST, token="not.a.jwt"), 401, "invalid_token")

    entra = faults.entra_requests(entra_mark)
    fetches = key_fetches(entra)
    # One attempt: the v2 and v1 discovery documents, asked side by side, both refused.
    assert [(f["status"], bool(f["fault"])) for f in fetches] == [(503, True)] * 2
    assert len({f["path"] for f in fetches}) == 2
    assert token_posts(entra) == []
    assert faults.dataverse_requests(dv_mark) == []


def test_r1_cold_start_recovers_after_the_retry_interval(fresh: Restart, faults: Api) -> None:
    clock = Clock()
    rt = fresh(key_clock=clock)
    token = mint_user(faults, "alice")
    add_fault(faults, "entra", path=DISCOVERY_PATH, status=500)
    entra_mark, _ = faults.marks()
    assert_error(faults.call("GET", LIST, token=token), 503, "signing_keys_unavailable")

    faults.entra_control("DELETE", "faults")  # the key endpoint is back...
    clock.advance(4)
    waiting = faults.call("GET", LIST, token=token)  # ...but the retry interval is not over
    assert_error(waiting, 503, "signing_keys_unavailable")
    assert retry_after(waiting) <= 7
    clock.advance(6)
    assert faults.call("GET", LIST, token=token).status_code == 200
    assert rt.keys.fetches == 2
    assert key_fetches(faults.entra_requests(entra_mark))[0]["status"] == 500


# --- R2 -----------------------------------------------------------------------------------------

REFRESH_INTERVAL = 300  # seconds between refreshes an unknown kid may trigger


@pytest.mark.parametrize(
    "fault",
    [
        {"path": DISCOVERY_PATH, "status": 503},
        {"path": JWKS_PATH, "action": "reset"},
        {"path": DISCOVERY_PATH, "delay_ms": 1500},  # slower than the 0.5 s timeout
    ],
    ids=["down", "reset", "slow"],
)
def test_r2_key_endpoint_failing_with_keys_cached_keeps_validating(
    fresh: Restart, faults: Api, fault: dict[str, Any]
) -> None:
    clock = Clock()
    fresh(DOWNSTREAM_TIMEOUT_SECONDS="0.5", key_clock=clock)
    warm, later, unknown_kid = (mint_user(faults, "alice") for _ in range(3))
    unknown_kid = _resign_withkid_of(faults, unknown_kid, "kid-nobody-published")
    other = mint_user(faults, "bob")
    assert faults.call("GET", LIST, token=warm).status_code == 200  # keys cached now
    clock.advance(REFRESH_INTERVAL + 1)  # an unknown kid may now ask for a refresh
    fault_id = add_fault(faults, "entra", **fault)
    entra_mark, _ = faults.marks()

    # A token never seen before is checked against the cached keys: no fetch at all.
    assert faults.call("GET", LIST, token=later).status_code == 200
    assert key_fetches(faults.entra_requests(entra_mark)) == []

    # An unknown kid makes the API try a refresh, which fails: that token is refused (401,
    # not 503), and the cached keys stay in use.
    refused = faults.call("GET", LIST, token=unknown_kid)
    assert_error(refused, 401, "invalid_token")
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    if "delay_ms" in fault:
        settle(faults, "entra", fault_id)
    assert faults.call("GET", LIST, token=other).status_code == 200
    assert faults.call("GET", LIST, token=unknown_kid).status_code == 401  # no second try
    fetched = key_fetches(faults.entra_requests(entra_mark))
    # One refresh: each document asked at most once, the faulted request among them. (The v1
    # discovery document is asked beside the rest, so it may be logged after the faulted one.)
    assert {f["fault"] for f in fetched} - {None} == {fault_id}
    paths = [f["path"] for f in fetched]
    assert len(paths) == len(set(paths)) <= 3


def _resign_withkid_of(api: Api, token: str, kid: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    signed = api.entra_control("POST", "sign", json={"claims": claims, "headers": {"kid": kid}})
    return str(signed["token"])


# --- R3 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"path": JWKS_PATH, "action": "garbage"},
        {"path": JWKS_PATH, "status": 200, "body": {"keys": []}},
        {"path": JWKS_PATH, "status": 200, "body": {}},
        {
            "path": JWKS_PATH,
            "status": 200,
            "body": {"keys": [{"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"}]},
        },
        {"path": JWKS_PATH, "status": 200, "body": "   "},
        {"path": DISCOVERY_PATH, "status": 200, "body": {"issuer": "https://elsewhere/"}},
    ],
    ids=["garbage", "empty-set", "no-keys-member", "no-rsa-key", "blank", "discovery-no-jwks"],
)
def test_r3_garbage_or_empty_keys_keep_the_old_keys(
    fresh: Restart, faults: Api, key_ring: KeyRing, fault: dict[str, Any]
) -> None:
    clock = Clock()
    fresh(key_clock=clock)
    before = mint_user(faults, "bob")  # signed with the original key
    assert faults.call("GET", LIST, token=before).status_code == 200  # original keys cached
    new_kid = key_ring.rotate()
    rotated = mint_user(faults, "alice")
    assert kid_of(rotated) == new_kid
    key_ring.sign_with_original()
    after = mint_user(faults, "bob")  # a new token, signed with the original key
    clock.advance(REFRESH_INTERVAL + 1)
    fault_id = add_fault(faults, "entra", **fault)
    entra_mark, _ = faults.marks()

    # The new kid asks for a refresh; the answer is unusable, so the new key stays unknown...
    assert_error(faults.call("GET", LIST, token=rotated), 401, "invalid_token")
    assert any(r["fault"] == fault_id for r in faults.entra_requests(entra_mark))
    # ...and the old keys still work, for tokens seen before and new ones alike.
    assert faults.call("GET", LIST, token=before).status_code == 200
    assert faults.call("GET", LIST, token=after).status_code == 200

    # Once the key endpoint behaves and the interval has passed, the new key is picked up.
    faults.entra_control("DELETE", "faults")
    clock.advance(REFRESH_INTERVAL + 1)
    assert faults.call("GET", LIST, token=rotated).status_code == 200


# --- R4 -----------------------------------------------------------------------------------------


def test_r4_a_hundred_concurrent_requests_with_a_new_kid_fetch_keys_once(
    fresh: Restart, faults: Api, key_ring: KeyRing
) -> None:
    clock = Clock()
    rt = fresh(key_clock=clock)
    assert faults.call("GET", LIST, user="bob").status_code == 200  # original keys cached
    new_kid = key_ring.rotate()
    tokens = [mint_user(faults, "alice" if i % 2 else "bob") for i in range(100)]
    assert {kid_of(t) for t in tokens} == {new_kid}
    clock.advance(REFRESH_INTERVAL + 1)
    fetches_before = rt.keys.fetches
    entra_mark, dv_mark = faults.marks()

    # Validation passes, then the unknown parameter is refused: no downstream call.
    answers = all_at_once(faults, "/api/customers?notAParameter=1", tokens)

    for answer in answers:
        body = assert_error(answer, 400, "invalid_input")
        assert "notAParameter" in body["message"]
    assert rt.keys.fetches == fetches_before + 1
    entra = faults.entra_requests(entra_mark)
    # In order of answer: v1, asked beside v2 and the JWKS, may come last.
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in key_fetches(entra)) == [
        "keys",
        "openid-configuration",
        "openid-configuration",
    ]
    assert token_posts(entra) == []
    assert faults.dataverse_requests(dv_mark) == []
    # And the new key really serves: a full call with one of those tokens.
    key_ring.sign_with_original()
    assert faults.call("GET", LIST, token=tokens[0]).status_code == 200
