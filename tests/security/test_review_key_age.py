"""Issue 10, item 3, in process: the signing-key set has a maximum age and a grace period.

Entra retires a key by dropping it from its JWKS. Before the fix the API fetched the keys again
only when a token named an unknown `kid`, so a warm instance kept trusting a retired key (and
the tokens it had already validated with it) for as long as it ran. Now a set older than the
maximum age is refreshed on its next use, within the fetch budget the unknown-`kid` refresh
already had (one fetch per 5 minutes, concurrent arrivals sharing it); a set that cannot be
refreshed serves for a grace period more, then is refused (503 `signing_keys_unavailable`).

Our own `SigningKeys` on a clock the test moves (thirty days take no time), against the
standalone Entra emulator: its key ring rotates for real and its fault rules break the key
endpoint. End-to-end counterparts through the API host: tests/faults/test_review_key_age.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from devstack.control import Fault
from shared.auth import InvalidToken, SigningKeys, SigningKeysUnavailable, TokenValidator
from tests.clock import ManualClock as Clock
from tests.conftest import Emulator
from tests.security.tokens import TokenBuilder

MAX_AGE = 86_400.0  # the defaults, as Settings gives them (and `keys` in conftest.py has)
GRACE = 3_600.0
WINDOW = 300.0  # one fetch per 5 minutes, whoever asks
COLD_RETRY = 10.0  # with no usable keys, one attempt per 10 seconds
THIRTY_DAYS = 30 * 86_400.0
DISCOVERY = "*/.well-known/openid-configuration"


class Instance(NamedTuple):
    """One instance's key handling, as every test here drives it: our own signing keys on a
    clock the test moves (conftest.py), and a validator over them with its memory of validated
    tokens on, as the API runs."""

    keys: SigningKeys
    validator: TokenValidator
    builder: TokenBuilder
    clock: Clock


@pytest.fixture
def instance(keys: SigningKeys, builder: TokenBuilder, clock: Clock) -> Instance:
    validator = TokenValidator(
        keys, tenant_id=builder.entra.tenant.id, client_id=builder.api_client_id, cache_size=100
    )
    return Instance(keys, validator, builder, clock)


@pytest.fixture
def break_keys(emulator: Emulator) -> Callable[..., Fault]:
    """Make the key endpoint fail (503 on discovery unless told otherwise) until reset."""

    def add(**rule: Any) -> Fault:
        rule.setdefault("path", DISCOVERY)
        if "delay_ms" not in rule:
            rule.setdefault("status", 503)
        control = emulator.app.state.entra.control
        return control.add_fault(Fault.from_json(rule))  # type: ignore[no-any-return]

    return add


def heal_keys(emulator: Emulator) -> None:
    emulator.app.state.entra.control.clear_faults()


def accepted(validator: TokenValidator, token: str) -> bool:
    try:
        validator.validate(token)
    except InvalidToken:
        return False
    return True


def concurrently(count: int, work: Callable[[int], Any]) -> list[Any]:
    """`work(i)` on `count` threads released together; each outcome, or the exception's type."""
    gate = threading.Barrier(count)
    outcomes: list[Any] = [None] * count

    def run(i: int) -> None:
        gate.wait(30)
        try:
            outcomes[i] = work(i)
        except Exception as exc:
            outcomes[i] = type(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


# --- (a) a retired key stops validating ----------------------------------------------------------


def test_a_key_retired_at_entra_stops_validating_once_the_set_is_older_than_the_max_age(
    emulator: Emulator, instance: Instance
) -> None:
    keys, validator, builder, clock = instance
    ring = emulator.app.state.entra.keys
    original = ring.active.kid
    extra = ring.add().kid  # Entra publishes a second key and signs with it for a while
    ring.promote(extra)
    seen = builder.token()  # validated (and remembered) before the key is retired
    unseen = builder.token("bob")  # first presented after it is retired
    ring.promote(original)
    validator.validate(seen)  # cold start: both keys fetched
    assert validator.cached_tokens == 1

    ring.retire(extra)  # e.g. an emergency rollover after a leak
    clock.advance(MAX_AGE - 1)  # still within the maximum age: nothing fetched yet
    assert accepted(validator, seen)
    assert keys.fetches == 1

    clock.advance(THIRTY_DAYS)  # the instance stayed warm for a month
    assert not accepted(validator, seen)  # remembered tokens go with the key...
    assert not accepted(validator, unseen)  # ...and so does the key itself
    assert accepted(validator, builder.token())  # the original key still serves
    assert keys.fetches == 2
    assert keys.state == "fresh"


def test_a_refresh_that_finds_the_same_keys_keeps_remembered_tokens(instance: Instance) -> None:
    keys, validator, builder, clock = instance
    token = builder.token()
    validator.validate(token)
    clock.advance(MAX_AGE)
    validator.validate(builder.token("bob"))  # refreshes: the same keys, the same version
    assert keys.fetches == 2
    verified = validator.verifications
    validator.validate(token)
    assert validator.verifications == verified  # still remembered: no signature check


def test_the_max_age_runs_from_the_last_successful_fetch(instance: Instance) -> None:
    """An unknown-`kid` refresh also confirms the set, so the clock starts again from it."""
    keys, validator, builder, clock = instance
    validator.validate(builder.token())
    clock.advance(MAX_AGE / 2)
    assert not accepted(validator, builder.with_kid("kid-nobody-published"))
    assert keys.fetches == 2
    clock.advance(MAX_AGE / 2 + 1)  # older than the max age since the cold start, not since then
    validator.validate(builder.token())
    assert keys.fetches == 2


# --- (b) the key endpoint failing: grace period, then fail closed --------------------------------


def test_key_endpoint_down_keeps_old_keys_for_the_grace_period_then_refuses(
    emulator: Emulator,
    instance: Instance,
    break_keys: Callable[..., Fault],
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys, validator, builder, clock = instance
    caplog.set_level(logging.DEBUG, logger="central_api.keys")
    remembered = builder.token()
    validator.validate(remembered)
    start = clock.now
    break_keys()

    # Older than the max age: the refresh fails, the old keys keep working (seen and unseen).
    clock.now = start + MAX_AGE
    assert accepted(validator, remembered)
    assert accepted(validator, builder.token("bob"))
    assert keys.fetches == 2
    assert keys.state == "stale"
    for step in range(1, int(GRACE // WINDOW)):  # a new attempt per window, each failing
        clock.now = start + MAX_AGE + step * WINDOW
        assert accepted(validator, builder.token())
    clock.now = start + MAX_AGE + GRACE - 1
    assert accepted(validator, builder.token())
    assert accepted(validator, remembered)
    attempts = keys.fetches

    # Past the grace period: refused with 503's error, the remembered token too.
    clock.now = start + MAX_AGE + GRACE
    for token in (builder.token(), remembered):
        with pytest.raises(SigningKeysUnavailable) as refused:
            validator.validate(token)
        assert 1 <= refused.value.retry_after <= COLD_RETRY
    assert keys.state == "expired"
    with pytest.raises(InvalidToken):  # a malformed token is still a 401, keys or no keys
        validator.validate("not.a.jwt")
    assert keys.fetches == attempts + 1

    # The key endpoint is back: the next attempt (one cold-retry interval later) recovers.
    heal_keys(emulator)
    clock.advance(COLD_RETRY)
    assert accepted(validator, builder.token())
    assert keys.state == "fresh"
    assert keys.fetches == attempts + 2

    # One record per change of state (stale, expired, refreshed), however many attempts failed;
    # never key material.
    changes = [
        (r.levelno, r.getMessage().split(":")[0])
        for r in caplog.records
        if r.name == "central_api.keys" and r.levelno >= logging.WARNING
    ]
    assert [level for level, _ in changes] == [logging.WARNING, logging.ERROR, logging.WARNING]
    public = builder.key.jwk()
    for record in caplog.records:
        assert public["n"][:16] not in record.getMessage()


def test_grace_counts_from_the_max_age_not_from_the_last_attempt(
    instance: Instance, break_keys: Callable[..., Fault]
) -> None:
    """An idle instance woken after a month with the key endpoint down does not serve on."""
    keys, validator, builder, clock = instance
    validator.validate(builder.token())
    break_keys()
    clock.advance(THIRTY_DAYS)
    with pytest.raises(SigningKeysUnavailable):
        validator.validate(builder.token())
    assert keys.fetches == 2


# --- (c) the rate limit holds --------------------------------------------------------------------


def test_an_expiring_set_is_refreshed_once_however_many_requests_arrive(
    emulator: Emulator, instance: Instance
) -> None:
    keys, validator, builder, clock = instance
    validator.validate(builder.token())
    clock.advance(MAX_AGE)
    tokens = [builder.token("alice" if i % 2 else "bob") for i in range(50)]
    outcomes = concurrently(len(tokens), lambda i: accepted(validator, tokens[i]))
    assert outcomes == [True] * len(tokens)
    for _ in range(20):  # and later arrivals, still within the window, fetch nothing
        assert accepted(validator, builder.token())
    assert keys.fetches == 2
    log = emulator.app.state.entra.control.requests()
    assert sum(1 for r in log if r["path"].endswith("/discovery/v2.0/keys")) <= 2


def test_an_idle_month_then_a_burst_shares_one_fetch(instance: Instance) -> None:
    """Past max age and grace at once: nobody may use the old set, so the burst waits for one
    fetch, as a cold start's would."""
    keys, validator, builder, clock = instance
    validator.validate(builder.token())
    clock.advance(THIRTY_DAYS)
    tokens = [builder.token() for _ in range(50)]
    assert concurrently(len(tokens), lambda i: accepted(validator, tokens[i])) == [True] * 50
    assert keys.fetches == 2


def test_the_max_age_refresh_shares_the_budget_with_unknown_kids(
    emulator: Emulator, instance: Instance, break_keys: Callable[..., Fault]
) -> None:
    keys, validator, builder, clock = instance
    validator.validate(builder.token())
    start = clock.now
    break_keys()
    clock.now = start + MAX_AGE - 60
    assert not accepted(validator, builder.with_kid("kid-nobody-published"))  # fails: fetch 2
    assert keys.fetches == 2
    clock.now = start + MAX_AGE + 1  # older than the max age, but a fetch was just tried
    assert accepted(validator, builder.token())
    assert keys.fetches == 2
    clock.now = start + MAX_AGE - 60 + WINDOW  # the window has passed: one more attempt
    assert accepted(validator, builder.token())
    assert accepted(validator, builder.token())
    assert keys.fetches == 3
    heal_keys(emulator)
    clock.advance(WINDOW)
    assert accepted(validator, builder.token())
    assert keys.fetches == 4
    assert keys.state == "fresh"


def test_failing_closed_tries_at_most_once_per_cold_retry_interval(
    instance: Instance, break_keys: Callable[..., Fault]
) -> None:
    keys, validator, builder, clock = instance
    validator.validate(builder.token())
    break_keys()
    clock.advance(MAX_AGE + GRACE)
    tokens = [builder.token() for _ in range(30)]
    outcomes = concurrently(len(tokens), lambda i: validator.validate(tokens[i]))
    assert outcomes == [SigningKeysUnavailable] * len(tokens)
    assert keys.fetches == 2
    clock.advance(COLD_RETRY / 2)
    for token in tokens:
        with pytest.raises(SigningKeysUnavailable):
            validator.validate(token)
    assert keys.fetches == 2
    clock.advance(COLD_RETRY / 2)
    for token in tokens:
        with pytest.raises(SigningKeysUnavailable):
            validator.validate(token)
    assert keys.fetches == 3


def test_a_slow_refresh_holds_up_only_the_request_that_makes_it(
    instance: Instance, break_keys: Callable[..., Fault]
) -> None:
    keys, validator, builder, clock = instance
    validator.validate(builder.token())
    clock.advance(MAX_AGE)
    slow = break_keys(delay_ms=3000, count=1)  # the refresh's first request answers late
    refreshed = threading.Event()

    def refresh() -> None:
        validator.validate(builder.token())
        refreshed.set()

    fetcher = threading.Thread(target=refresh)
    fetcher.start()
    while keys.fetches < 2 and fetcher.is_alive():  # the refresh has started...
        threading.Event().wait(0.01)
    others = [builder.token("bob") for _ in range(20)]
    assert all(accepted(validator, t) for t in others)  # ...and the others did not wait for it
    assert not refreshed.is_set()
    fetcher.join(30)
    assert refreshed.is_set()
    assert slow.hits == 1
    assert keys.fetches == 2
