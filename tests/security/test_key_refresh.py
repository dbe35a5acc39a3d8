"""J6 in-process: an unknown `kid` refreshes the keys at most once per 5 minutes, and concurrent
arrivals share that one fetch; and token forms no HTTP request can carry.

The running stack's API may have spent its refresh allowance earlier in the session, so the
rate limit is driven here with our own `SigningKeys` (on a clock we move) and `TokenValidator`
against the standalone Entra emulator (fixtures in conftest.py), counting fetches both on the
client and in the emulator's request log.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from shared.auth import InvalidToken, SigningKeys, TokenValidator
from tests.clock import ManualClock as Clock
from tests.conftest import Emulator
from tests.security.tokens import TokenBuilder

WINDOW = 300.0  # the contract's "at most once per 5 minutes"


@pytest.fixture
def validator(keys: SigningKeys, builder: TokenBuilder) -> TokenValidator:
    return TokenValidator(
        keys, tenant_id=builder.entra.tenant.id, client_id=builder.api_client_id, cache_size=0
    )


@pytest.fixture
def warm(validator: TokenValidator, builder: TokenBuilder) -> TokenValidator:
    """The validator after its cold start: one good token, so the keys are fetched once."""
    validator.validate(builder.token())
    return validator


def jwks_requests(emulator: Emulator) -> int:
    """JWKS requests in the emulator's log. It is written just after the answer goes out, so
    it may lag the client by one: `keys.fetches`, the client's count, is the exact one."""
    log = emulator.app.state.entra.control.requests()
    return sum(1 for r in log if r["path"].endswith("/discovery/v2.0/keys"))


def unknown(builder: TokenBuilder) -> str:
    return builder.with_kid(uuid.uuid4().hex)


def test_unknown_kids_refresh_at_most_once_per_window(
    emulator: Emulator,
    keys: SigningKeys,
    validator: TokenValidator,
    builder: TokenBuilder,
    clock: Clock,
) -> None:
    validator.validate(builder.token())  # cold start: the first fetch
    start = clock.now
    assert keys.fetches == 1
    for step in range(30):  # a stream of unknown kids inside the window: no fetch
        clock.now = start + step * 10
        with pytest.raises(InvalidToken):
            validator.validate(unknown(builder))
    assert keys.fetches == 1
    clock.now = start + WINDOW
    for _ in range(30):  # the window has passed: one refresh, then none again
        with pytest.raises(InvalidToken):
            validator.validate(unknown(builder))
    assert keys.fetches == 2
    clock.now = start + 2 * WINDOW
    with pytest.raises(InvalidToken):
        validator.validate(unknown(builder))
    assert keys.fetches == 3
    validator.validate(builder.token())  # the real key never stopped working
    assert keys.fetches == 3
    assert jwks_requests(emulator) <= 3  # the emulator saw no fetch the client did not count


def test_concurrent_unknown_kids_share_one_fetch(
    emulator: Emulator, keys: SigningKeys, warm: TokenValidator, builder: TokenBuilder, clock: Clock
) -> None:
    clock.now += WINDOW
    tokens = [unknown(builder) for _ in range(50)]
    start = threading.Barrier(len(tokens))
    outcomes: list[Any] = []
    lock = threading.Lock()

    def arrive(token: str) -> None:
        start.wait()
        try:
            warm.validate(token)
            outcome: Any = "accepted"
        except Exception as exc:
            outcome = type(exc)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=arrive, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == [InvalidToken] * len(tokens)
    assert keys.fetches == 2
    assert jwks_requests(emulator) <= 2


def test_a_rotated_key_is_found_by_the_one_refresh(
    emulator: Emulator, keys: SigningKeys, warm: TokenValidator, builder: TokenBuilder, clock: Clock
) -> None:
    """What the refresh is for: Entra signs with a newly published key."""
    ring = emulator.app.state.entra.keys
    ring.promote(ring.add().kid)
    rotated = builder.token()
    with pytest.raises(InvalidToken):  # inside the window the new kid is still unknown
        warm.validate(rotated)
    clock.now += WINDOW
    assert warm.validate(rotated).oid == builder.entra.tenant.user("alice").oid
    assert keys.fetches == 2


@pytest.mark.parametrize(
    "kid", [None, "", 0, 7.5, True, {}, [], {"k": 1}, "a" * 129, "a b", "abc\n", "a\x00"]
)
def test_malformed_kids_never_fetch(
    keys: SigningKeys, warm: TokenValidator, builder: TokenBuilder, clock: Clock, kid: Any
) -> None:
    clock.now += WINDOW  # a refresh would be allowed: it must still not happen
    with pytest.raises(InvalidToken):
        warm.validate(builder.with_kid(kid))
    assert keys.fetches == 1


@pytest.mark.parametrize("where", [0, 1, 2])
def test_a_segment_with_a_trailing_newline_is_refused(
    validator: TokenValidator, builder: TokenBuilder, where: int
) -> None:
    parts = builder.token().split(".")
    parts[where] += "\n"
    with pytest.raises(InvalidToken):
        validator.validate(".".join(parts))
