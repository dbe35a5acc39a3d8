"""The memory of validated tokens: hits skip the signature check, entries end at `exp`, the
memory is bounded, and a change of the signing-key set drops it. Against the Entra emulator;
no test depends on timing (both clocks are injected)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.auth import InvalidToken, Mode, Principal, SigningKeys, SigningKeysUnavailable
from shared.auth import TokenValidator as Validator
from shared.auth.validated import ValidatedTokens, token_digest
from tests.conftest import Emulator
from tests.shared.test_auth import API, TID, Clock, b64, claims, fail_key_fetch_once, sign

SKEW = 120


@pytest.fixture
def control(entra: Emulator, ca_bundle: Path) -> Iterator[requests.Session]:
    """A session for the emulator's control plane; the emulator is reset before and after."""
    with requests.Session() as session:
        session.verify = str(ca_bundle)
        session.post(f"{entra.url}/_emulator/reset", timeout=5).raise_for_status()
        yield session
        session.post(f"{entra.url}/_emulator/reset", timeout=5).raise_for_status()


@pytest.fixture
def key_clock() -> Clock:
    return Clock()  # monotonic-like: drives the key refresh interval


@pytest.fixture
def wall() -> Clock:
    clock = Clock()
    clock.now = float(int(time.time()))  # drives exp/nbf/iat; moved by hand only
    return clock


@pytest.fixture
def keys(entra: Emulator, control: requests.Session, key_clock: Clock) -> SigningKeys:
    return SigningKeys(f"{entra.url}/{TID}", session=control, clock=key_clock)


def validator(keys: SigningKeys, wall: Clock, cache_size: int = 100) -> Validator:
    return Validator(
        keys, tenant_id=TID, client_id=API, clock=wall, clock_skew=SKEW, cache_size=cache_size
    )


def token(entra: Emulator, wall: Clock, *, lifetime: int = 3600, **overrides: Any) -> str:
    now = int(wall.now)
    body = claims(entra, iat=now - 10, nbf=now - 10, exp=now + lifetime, **overrides)
    return sign(entra, body)


def rotate(entra: Emulator, control: requests.Session, *, retire_old: bool) -> None:
    """A new key signs from now on; the old one stays published unless `retire_old`."""
    url = f"{entra.url}/_emulator/keys"
    old = next(k["kid"] for k in control.get(url, timeout=5).json()["keys"] if k["active"])
    new = control.post(url, json={"action": "add"}, timeout=5).json()["kid"]
    control.post(url, json={"action": "promote", "kid": new}, timeout=5).raise_for_status()
    if retire_old:
        control.post(url, json={"action": "retire", "kid": old}, timeout=5).raise_for_status()


def test_a_token_seen_before_is_not_verified_again(
    entra: Emulator, keys: SigningKeys, wall: Clock
) -> None:
    v = validator(keys, wall)
    t = token(entra, wall)
    first = v.validate(t)
    assert v.validate(t) is first
    assert v.validate(str(t.encode().decode())) is first  # equal content, another object
    assert v.verifications == 1
    assert v.cached_tokens == 1


def test_different_tokens_never_share_a_principal(
    entra: Emulator, keys: SigningKeys, wall: Clock
) -> None:
    v = validator(keys, wall)
    same_user = claims(entra)["oid"]
    tokens = [token(entra, wall, oid=same_user) for _ in range(3)]  # same user, three tokens
    tokens += [token(entra, wall, scp=s) for s in ("customer.read", "case.read", "case.readwrite")]
    tokens += [token(entra, wall, scp=None, roles=["vehicle.read"], idtyp="app")]
    first = [v.validate(t) for t in tokens]
    for _ in range(3):
        principals = [v.validate(t) for t in tokens]
        assert all(p is q for p, q in zip(principals, first, strict=True))  # each its own
        assert len({id(p) for p in principals}) == len(tokens)
    assert [p.permissions for p in principals[3:]] == [
        {"customer.read"},
        {"case.read"},
        {"case.readwrite"},
        {"vehicle.read"},
    ]
    assert principals[-1].mode is Mode.APPLICATION
    assert v.verifications == len(tokens)


def test_a_forgery_of_a_cached_token_is_not_served(
    entra: Emulator, keys: SigningKeys, wall: Clock
) -> None:
    v = validator(keys, wall)
    good = token(entra, wall, scp="customer.read")
    v.validate(good)
    header, _, signature = good.split(".")
    _, payload, _ = token(entra, wall, scp="customer.readwrite").split(".")
    with pytest.raises(InvalidToken, match="signature"):
        v.validate(f"{header}.{payload}.{signature}")


def test_entries_end_at_exp_and_expired_tokens_are_rejected(
    entra: Emulator, keys: SigningKeys, wall: Clock
) -> None:
    v = validator(keys, wall)
    start = wall.now
    t = token(entra, wall, lifetime=600)
    v.validate(t)
    wall.now = start + 599
    v.validate(t)
    assert v.verifications == 1
    # At exp the entry is gone; full validation still accepts it within the clock skew...
    wall.now = start + 600
    assert v.validate(t).mode is Mode.USER
    assert v.verifications == 2
    # ...but nothing already past exp is remembered.
    v.validate(t)
    assert v.verifications == 3
    assert v.cached_tokens == 0
    wall.now = start + 600 + SKEW
    with pytest.raises(InvalidToken, match="expired"):
        v.validate(t)


def test_a_cached_token_is_rejected_once_expired(
    entra: Emulator, keys: SigningKeys, wall: Clock
) -> None:
    v = Validator(keys, tenant_id=TID, client_id=API, clock=wall, clock_skew=0)
    start = wall.now
    t = token(entra, wall, lifetime=60)
    v.validate(t)
    wall.now = start + 60
    with pytest.raises(InvalidToken, match="expired"):
        v.validate(t)


def test_the_cache_is_bounded_and_drops_the_oldest(
    entra: Emulator, keys: SigningKeys, wall: Clock
) -> None:
    v = validator(keys, wall, cache_size=3)
    a, b, c, d = (token(entra, wall) for _ in range(4))
    for t in (a, b, c):
        v.validate(t)
    v.validate(a)  # a hit: a stays the oldest entry
    v.validate(d)  # the cache is full: a leaves
    assert v.cached_tokens == 3
    assert v.verifications == 4
    for t in (b, c, d):
        v.validate(t)
    assert v.verifications == 4
    v.validate(a)
    assert v.verifications == 5
    assert v.cached_tokens == 3


def test_size_zero_disables_the_cache(entra: Emulator, keys: SigningKeys, wall: Clock) -> None:
    v = validator(keys, wall, cache_size=0)
    t = token(entra, wall)
    for _ in range(3):
        v.validate(t)
    assert v.verifications == 3
    assert v.cached_tokens == 0


Rotation = Callable[..., tuple[Validator, str]]


@pytest.fixture
def across_a_rotation(
    entra: Emulator,
    control: requests.Session,
    keys: SigningKeys,
    key_clock: Clock,
    wall: Clock,
) -> Rotation:
    """`across_a_rotation(retire_old=...)`: a validator validates (and caches) a token; then,
    after `rotate` and past the refresh interval, a token by the new key, whose unknown kid makes
    it fetch the changed key set. Returns the validator and the first token."""

    def run(*, retire_old: bool) -> tuple[Validator, str]:
        v = validator(keys, wall)
        old = token(entra, wall)
        v.validate(old)
        rotate(entra, control, retire_old=retire_old)
        key_clock.now += 301
        v.validate(token(entra, wall))
        return v, old

    return run


def test_a_new_key_set_drops_the_cache(keys: SigningKeys, across_a_rotation: Rotation) -> None:
    v, old = across_a_rotation(retire_old=False)
    assert keys.fetches == 2
    assert v.cached_tokens == 1
    v.validate(old)  # still valid (its key is still published), but checked again
    assert v.verifications == 3


def test_a_retired_key_stops_validating_cached_tokens(across_a_rotation: Rotation) -> None:
    v, old = across_a_rotation(retire_old=True)
    with pytest.raises(InvalidToken, match="key set"):
        v.validate(old)


def test_an_unchanged_key_set_keeps_the_cache(
    entra: Emulator, keys: SigningKeys, key_clock: Clock, wall: Clock
) -> None:
    v = validator(keys, wall)
    t = token(entra, wall)
    v.validate(t)
    key_clock.now += 301
    with pytest.raises(InvalidToken):  # an unknown kid: a refresh that finds the same keys
        v.validate(sign(entra, claims(entra), {"kid": "unknown"}))
    assert keys.fetches == 2
    v.validate(t)
    assert v.verifications == 1


def test_malformed_tokens_are_invalid_even_while_keys_are_unavailable(
    entra: Emulator, control: requests.Session, keys: SigningKeys, wall: Clock
) -> None:
    fail_key_fetch_once(entra, control)
    v = validator(keys, wall)
    with pytest.raises(SigningKeysUnavailable):
        v.validate(token(entra, wall))
    for garbage in ("", "a.b", "x" * 100, "\udcff.\udcff.\udcff"):
        with pytest.raises(InvalidToken):
            v.validate(garbage)


def test_concurrent_callers_each_get_their_own_principal(
    entra: Emulator, keys: SigningKeys, wall: Clock
) -> None:
    v = validator(keys, wall, cache_size=8)
    tokens = [token(entra, wall) for _ in range(16)]  # twice the cache: entries come and go
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: (i, v.validate(tokens[i % 16])), range(800)))
    owners = {t: v.validate(t).oid for t in tokens}
    assert all(p.oid == owners[tokens[i % 16]] for i, p in results)
    assert len({p.oid for _, p in results}) == 16
    assert v.cached_tokens == 8


# --- the memory on its own ------------------------------------------------------------------------


def principal(expires_at: int, oid: str = "o") -> Principal:
    return Principal(Mode.USER, oid, TID, "c", frozenset({"s"}), expires_at)


def test_keys_are_sha256_digests_of_the_token() -> None:
    assert token_digest("abc") == hashlib.sha256(b"abc").digest()
    assert token_digest("\udcff") != token_digest("?")  # no error, no lossy replacement


def test_a_validation_under_an_older_key_set_is_not_stored() -> None:
    memory = ValidatedTokens(10)
    memory.put(b"a", principal(2000), now=1000, version=2)
    memory.put(b"b", principal(2000), now=1000, version=1)  # finished after the set changed
    assert memory.get(b"b", now=1000, version=2) is None
    assert memory.get(b"a", now=1000, version=1) is None  # a reader holding the older set
    assert memory.get(b"a", now=1000, version=2) is not None
    assert memory.get(b"a", now=1000, version=3) is None  # a newer set drops everything
    assert len(memory) == 0


def test_already_expired_principals_are_not_stored() -> None:
    memory = ValidatedTokens(10)
    memory.put(b"a", principal(1000), now=1000, version=1)
    assert len(memory) == 0


def test_a_cache_of_no_entries_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ValidatedTokens(0)


# --- numbers and encodings a cached entry could not hold -----------------------------------------


def sign_payload(entra: Emulator, payload: bytes) -> str:
    """A token whose payload segment is exactly `payload`, signed with the active key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = sign(entra, claims(entra)).split(".")[0]
    body = b64(payload)
    key = entra.app.state.entra.keys.active.key
    signature = key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{b64(signature)}"


@pytest.mark.parametrize(
    "exp",
    [float("nan"), float("inf"), float("-inf"), 10**400, "1e400"],
    ids=["NaN", "Infinity", "-Infinity", "huge-int", "huge-float"],
)
def test_non_finite_or_huge_numbers_are_invalid(
    entra: Emulator, keys: SigningKeys, wall: Clock, exp: object
) -> None:
    literal = exp if isinstance(exp, str) else json.dumps(exp)  # NaN, Infinity, digits
    text = json.dumps({**claims(entra), "exp": 0}).replace('"exp": 0', f'"exp": {literal}')
    with pytest.raises(InvalidToken):
        validator(keys, wall).validate(sign_payload(entra, text.encode()))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_payload_must_be_plain_utf8(
    entra: Emulator, keys: SigningKeys, wall: Clock, encoding: str
) -> None:
    v = validator(keys, wall)
    body = json.dumps(claims(entra))
    assert v.validate(sign_payload(entra, body.encode("utf-8"))).mode is Mode.USER
    with pytest.raises(InvalidToken, match="not JSON"):
        v.validate(sign_payload(entra, body.encode(encoding)))
