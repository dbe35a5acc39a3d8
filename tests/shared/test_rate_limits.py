"""shared.http.rate_limits in process: per-subscription rate limits (issue 11, item 5).

The in-memory counter runs on a clock the tests move, so window boundaries are facts of the test.
The shared counter runs against the session's real valkey-server (`tests/conftest.py`, `valkey`)
in tests/shared/test_rate_limits_store.py; across real API instances in
tests/faults/test_rate_limits_e2e.py.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import function_app  # noqa: F401  (registers the domains the document describes)
from shared.http.errors import RateLimited, RequestError
from shared.http.rate_limits import LocalCounter, RateLimits
from shared.http.responses import ErrorContext, render_error
from shared.openapi import document
from shared.settings import RateLimit, Settings, SettingsError
from tests.clock import ManualClock
from tests.shared.test_settings import GOOD

MINUTE_MS = 60_000


def test_a_window_admits_exactly_calls_and_refuses_the_rest_without_counting_them() -> None:
    counter = LocalCounter(ManualClock())
    hits = [counter.hit("dealer", 3, MINUTE_MS) for _ in range(7)]
    assert [h.admitted for h in hits] == [True] * 3 + [False] * 4
    assert [h.count for h in hits] == [1, 2, 3, 3, 3, 3, 3]  # refusals are not counted


def test_the_window_opens_with_the_first_request_and_renews_when_its_period_ends() -> None:
    clock = ManualClock(5000.0)
    counter = LocalCounter(clock)
    assert counter.hit("dealer", 2, MINUTE_MS).left_ms == MINUTE_MS
    clock.advance(20)
    assert counter.hit("dealer", 2, MINUTE_MS).left_ms == 40_000
    clock.advance(39.75)  # 250 ms before the window ends: still full
    last = counter.hit("dealer", 2, MINUTE_MS)
    assert (last.admitted, last.left_ms) == (False, 250)
    clock.advance(0.25)  # the window ends exactly now: this request opens the next one
    renewed = counter.hit("dealer", 2, MINUTE_MS)
    assert (renewed.admitted, renewed.count, renewed.left_ms) == (True, 1, MINUTE_MS)


def test_a_quiet_subscription_starts_a_fresh_window_of_its_own() -> None:
    clock = ManualClock()
    counter = LocalCounter(clock)
    counter.hit("dealer", 1, MINUTE_MS)
    clock.advance(3600)  # long after: not a window aligned to the clock, one from this request
    hit = counter.hit("dealer", 1, MINUTE_MS)
    assert (hit.admitted, hit.left_ms) == (True, MINUTE_MS)


def test_subscriptions_are_counted_apart_and_memory_holds_one_window_each() -> None:
    counter = LocalCounter(ManualClock())
    for _ in range(5):
        counter.hit("dealer", 1, MINUTE_MS)
    assert counter.hit("portal", 1, MINUTE_MS).admitted
    assert len(counter) == 2


def test_concurrent_requests_get_exactly_calls_admissions() -> None:
    counter = LocalCounter(ManualClock())
    gate = threading.Barrier(16)

    def request(_: int) -> bool:
        gate.wait(timeout=10)
        return counter.hit("dealer", 50, MINUTE_MS).admitted

    with ThreadPoolExecutor(16) as pool:
        admitted = list(pool.map(request, range(16 * 10)))
    assert sum(admitted) == 50


def _limits(clock: ManualClock, **limits: RateLimit) -> RateLimits:
    return RateLimits(limits, clock=clock)


def test_over_the_limit_is_rate_limited_with_the_seconds_left_rounded_up() -> None:
    clock = ManualClock()
    limits = _limits(clock, dealer=RateLimit(calls=2, period_seconds=60))
    limits.check("dealer")
    clock.advance(10.5)
    limits.check("dealer")
    with pytest.raises(RateLimited) as refused:
        limits.check("dealer")
    assert refused.value.retry_after == 50  # 49.5 s left: never tell a client to come early
    assert (refused.value.calls, refused.value.period_seconds) == (2, 60)
    clock.advance(49.25)  # 250 ms left
    with pytest.raises(RateLimited) as refused:
        limits.check("dealer")
    assert refused.value.retry_after == 1  # at least 1
    clock.advance(0.25)
    limits.check("dealer")  # a new window


def test_unlimited_subscriptions_are_never_counted() -> None:
    limits = _limits(ManualClock(), dealer=RateLimit(1, 60))
    for _ in range(1000):
        limits.check("portal")
    assert len(limits.local) == 0
    assert limits.shared is None  # no store: per instance


def test_the_refusal_is_a_429_naming_the_limit_and_nothing_of_the_key() -> None:
    exc = RateLimited(300, 60, retry_after=42, shared=True)
    assert isinstance(exc, RequestError)
    rendered, code = render_error(exc, ErrorContext("cid-00000001"))
    assert (rendered.status, code) == (429, "rate_limited")
    assert rendered.headers == {"Retry-After": "42"}
    assert rendered.level == logging.WARNING
    assert rendered.message == (
        "Too many requests. This subscription may make 300 calls every 60 seconds; retry after "
        "the time in Retry-After."
    )
    assert exc.reason == "subscription over 300 calls per 60 s (all instances)"


# --- the setting ---------------------------------------------------------------------------

KEYS = {"demo-portal": ["p" * 32], "demo-dealer": ["d" * 32]}


def _env(rate_limits: Any) -> dict[str, str]:
    raw = rate_limits if isinstance(rate_limits, str) else json.dumps(rate_limits)
    return {**GOOD, "SUBSCRIPTION_KEYS": json.dumps(KEYS), "RATE_LIMITS": raw}


def test_the_setting_reads_calls_and_period_per_subscription() -> None:
    settings = Settings.from_env(_env({"demo-dealer": {"calls": 300, "period": 60}}))
    assert settings.rate_limits == {"demo-dealer": RateLimit(calls=300, period_seconds=60)}
    assert Settings.from_env(GOOD).rate_limits == {}  # unset: no limits
    assert Settings.from_env({**GOOD, "RATE_LIMITS": " "}).rate_limits == {}
    assert Settings.from_env(_env({})).rate_limits == {}
    edges = {
        "demo-dealer": {"calls": 1, "period": 1},
        "demo-portal": {"calls": 10**6, "period": 300},
    }
    assert Settings.from_env(_env(edges)).rate_limits == {
        "demo-dealer": RateLimit(1, 1),
        "demo-portal": RateLimit(1_000_000, 300),
    }


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        [],
        {"demo-dealer": 300},
        {"demo-dealer": {"calls": 300}},
        {"demo-dealer": {"calls": 300, "period": 60, "burst": 5}},
        {"demo-dealer": {"calls": 0, "period": 60}},
        {"demo-dealer": {"calls": -1, "period": 60}},
        {"demo-dealer": {"calls": 1_000_001, "period": 60}},
        {"demo-dealer": {"calls": 300, "period": 0}},
        {"demo-dealer": {"calls": 300, "period": 301}},
        {"demo-dealer": {"calls": 300.0, "period": 60}},
        {"demo-dealer": {"calls": "300", "period": 60}},
        {"demo-dealer": {"calls": True, "period": 60}},
        {"demo-dealer": {"calls": 300, "period": None}},
        {"unknown-subscription": {"calls": 300, "period": 60}},
    ],
)
def test_the_setting_fails_fast_naming_itself(value: Any) -> None:
    with pytest.raises(SettingsError, match="RATE_LIMITS"):
        Settings.from_env(_env(value))


def test_a_key_pasted_where_a_name_belongs_is_refused_and_not_repeated() -> None:
    key = KEYS["demo-dealer"][0]
    with pytest.raises(SettingsError, match="RATE_LIMITS") as caught:
        Settings.from_env(_env({key: {"calls": 300, "period": 60}}))
    assert key not in str(caught.value)
    assert "demo-dealer" not in str(caught.value)


# --- the contract ----------------------------------------------------------------------------


def test_every_protected_operation_documents_the_429_with_both_codes() -> None:
    doc = document()
    too_many = doc["components"]["responses"]["TooManyRequests"]
    assert "`rate_limited`" in too_many["description"]
    assert "`too_many_concurrent_requests`" in too_many["description"]
    assert "Retry-After" in too_many["headers"]
    protected = [
        op
        for path, item in doc["paths"].items()
        if path not in ("/health", "/openapi.json")
        for method, op in item.items()
        if method != "parameters"
    ]
    assert protected
    for op in protected:
        assert op["responses"]["429"] == {"$ref": "#/components/responses/TooManyRequests"}
