"""shared.store.breaker: the circuit breaker, with a clock the tests move."""

from __future__ import annotations

import logging
import threading

import pytest

from shared.store import Breaker
from tests.clock import ManualClock


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_ok_lets_every_call_through() -> None:
    breaker = Breaker(5, clock=ManualClock())
    assert breaker.state == "ok"
    assert all(breaker.allow() for _ in range(100))


def test_a_failure_refuses_calls_for_the_cooldown_then_lets_one_probe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    breaker = Breaker(5, clock=clock)
    caplog.set_level(logging.WARNING, logger="shared.store")
    breaker.failed("TimeoutError")
    assert breaker.state == "degraded"
    assert not breaker.allow()
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one
    breaker.succeeded()
    assert breaker.state == "ok"
    assert breaker.allow()
    warnings = _warnings(caplog)
    assert len(warnings) == 2
    assert "unavailable (TimeoutError)" in warnings[0]
    assert "answers again" in warnings[1]


def test_a_failed_probe_starts_another_cooldown(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    breaker = Breaker(5, clock=clock)
    caplog.set_level(logging.WARNING, logger="shared.store")
    breaker.failed("ConnectionError")
    clock.advance(5)
    assert breaker.allow()
    breaker.failed("ConnectionError")
    assert breaker.state == "degraded"
    clock.advance(4)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()
    assert len(_warnings(caplog)) == 1  # one per change of state, not per failure


def test_a_probe_that_never_reports_does_not_wedge_it() -> None:
    clock = ManualClock()
    breaker = Breaker(5, clock=clock)
    breaker.failed("TimeoutError")
    clock.advance(5)
    assert breaker.allow()  # a probe whose caller vanished
    clock.advance(5)
    assert breaker.allow()  # the next one probes instead


def test_successes_while_ok_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    breaker = Breaker(5, clock=ManualClock())
    caplog.set_level(logging.DEBUG, logger="shared.store")
    for _ in range(10):
        breaker.succeeded()
    assert caplog.records == []


def test_zero_cooldown_probes_on_every_call() -> None:
    breaker = Breaker(0, clock=ManualClock())
    breaker.failed("TimeoutError")
    assert breaker.allow()
    assert breaker.allow()


def test_one_probe_among_many_threads() -> None:
    clock = ManualClock()
    breaker = Breaker(5, clock=clock)
    breaker.failed("TimeoutError")
    clock.advance(5)
    allowed: list[bool] = []
    start = threading.Barrier(16)

    def call() -> None:
        start.wait()
        allowed.append(breaker.allow())

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 1
