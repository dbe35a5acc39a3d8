"""shared.http.limits in process: the per-caller cap on concurrent requests (issue 10, item 2).

Threads hold their places on a `threading.Event` the test sets, so "at once" is a fact of the
test, not a matter of timing. The end-to-end attack is tests/faults/test_review_fairness.py.
"""

from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.auth.principal import Mode, Principal
from shared.http.errors import RequestError, TooManyConcurrentRequests
from shared.http.limits import CallerKey, CallerLimits, caller_key
from shared.http.responses import ErrorContext, render_error
from shared.settings import Settings, SettingsError
from tests.shared.test_settings import GOOD

ALICE: CallerKey = ("user", "alice-oid")
BOB: CallerKey = ("user", "bob-oid")


def _principal(mode: Mode, oid: str, client_app_id: str) -> Principal:
    return Principal(mode, oid, "tid", client_app_id, frozenset({"x.read"}), 0)


def test_the_caller_is_the_user_in_delegated_mode_and_the_client_app_in_application_mode() -> None:
    portal = caller_key(_principal(Mode.USER, "alice-oid", "portal-id"))
    reporting = caller_key(_principal(Mode.USER, "alice-oid", "reporting-id"))
    assert portal == reporting == ("user", "alice-oid")  # one user, whichever app she uses
    app = caller_key(_principal(Mode.APPLICATION, "sp-oid", "dealer-sync-id"))
    assert app == ("application", "dealer-sync-id")
    # The same string as an object id and as an application id are two callers.
    assert caller_key(_principal(Mode.USER, "same", "c")) != caller_key(
        _principal(Mode.APPLICATION, "x", "same")
    )


def test_concurrent_callers_get_at_most_the_limit_and_the_rest_are_refused() -> None:
    limits = CallerLimits(4)
    release = threading.Event()
    refused: list[TooManyConcurrentRequests] = []
    answered = threading.Semaphore(0)  # one per refusal
    lock = threading.Lock()

    def request() -> None:
        try:
            with limits.held(ALICE):
                assert release.wait(timeout=10)  # admitted: stay in flight until told
        except TooManyConcurrentRequests as exc:
            with lock:
                refused.append(exc)
            answered.release()

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(request) for _ in range(16)]
        for _ in range(12):  # nobody leaves before `release`, so exactly 12 are refused
            assert answered.acquire(timeout=10)
        assert limits.in_flight(ALICE) == 4
        release.set()
        for future in futures:
            future.result(timeout=10)
    assert len(refused) == 12
    assert {exc.limit for exc in refused} == {4}
    assert limits.in_flight(ALICE) == 0
    assert len(limits) == 0


def test_a_place_is_released_when_the_handler_raises() -> None:
    limits = CallerLimits(1)
    with pytest.raises(ValueError), limits.held(ALICE):
        raise ValueError("the handler failed")
    assert limits.in_flight(ALICE) == 0
    with limits.held(ALICE):  # the place is free again
        assert limits.in_flight(ALICE) == 1
    assert len(limits) == 0


def test_a_refused_request_holds_nothing() -> None:
    limits = CallerLimits(1)
    with limits.held(ALICE):
        for _ in range(3):
            with pytest.raises(TooManyConcurrentRequests), limits.held(ALICE):
                pytest.fail("admitted over the cap")
        assert limits.in_flight(ALICE) == 1
    assert len(limits) == 0


def test_callers_are_counted_apart() -> None:
    limits = CallerLimits(2)
    with limits.held(ALICE), limits.held(ALICE):
        with pytest.raises(TooManyConcurrentRequests):
            limits.acquire(ALICE)
        with limits.held(BOB), limits.held(BOB):  # Alice's full cap costs Bob nothing
            assert (limits.in_flight(ALICE), limits.in_flight(BOB)) == (2, 2)
            assert len(limits) == 2
        assert limits.in_flight(BOB) == 0
    assert len(limits) == 0


def test_memory_returns_to_empty_after_many_callers_at_once() -> None:
    limits = CallerLimits(3)
    keys: list[CallerKey] = [("user", f"oid-{i}") for i in range(200)]
    work = [k for k in keys for _ in range(5)]
    random.Random(10).shuffle(work)
    most = 0
    lock = threading.Lock()

    def request(key: CallerKey) -> bool:
        nonlocal most
        try:
            with limits.held(key):
                with lock:
                    most = max(most, limits.in_flight(key))
                return True
        except TooManyConcurrentRequests:
            return False

    with ThreadPoolExecutor(32) as pool:
        admitted = list(pool.map(request, work))
    assert 1 <= most <= 3
    assert sum(admitted) >= len(keys)  # each caller's first request always has a place
    assert len(limits) == 0


def test_zero_turns_the_cap_off_and_counts_nothing() -> None:
    limits = CallerLimits(0)
    with limits.held(ALICE), limits.held(ALICE), limits.held(ALICE):
        assert len(limits) == 0


def test_the_refusal_is_a_429_with_retry_after_logged_as_throttling() -> None:
    exc = TooManyConcurrentRequests(8)
    assert isinstance(exc, RequestError)
    rendered, code = render_error(exc, ErrorContext("cid-00000001"))
    assert (rendered.status, code) == (429, "too_many_concurrent_requests")
    assert rendered.headers == {"Retry-After": "1"}
    assert rendered.level == logging.WARNING
    assert "8 requests in progress" in rendered.message


def test_the_setting_defaults_to_8_takes_0_and_refuses_the_rest() -> None:
    env = dict(GOOD)  # the settings tests' complete, valid environment
    assert Settings.from_env(env).max_concurrent_requests_per_caller == 8
    off = {**env, "MAX_CONCURRENT_REQUESTS_PER_CALLER": "0"}
    assert Settings.from_env(off).max_concurrent_requests_per_caller == 0
    for bad in ("-1", "eight", "8.5"):
        with pytest.raises(SettingsError, match="MAX_CONCURRENT_REQUESTS_PER_CALLER") as caught:
            Settings.from_env({**env, "MAX_CONCURRENT_REQUESTS_PER_CALLER": bad})
        assert bad not in str(caught.value)
