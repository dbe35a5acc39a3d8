"""The Dataverse emulator's service-protection counting costs the same whatever the window holds.

With the limits raised (the benchmarks raise them out of the way), a 5-minute window holds a
hundred thousand executions; summing them on every request made the emulator's CPU per request
grow through a benchmark run (P10: from 2.8 to 9 ms in two minutes). The cost is compared with
itself at two window sizes in one run, as a ratio, never against a clock.
"""

from __future__ import annotations

import time

from devstack.dataverse.limits import ServiceProtection
from tests.clock import ManualClock

LARGE = {"requests": 10_000_000, "concurrent": 10_000, "execution_ms": 10**12}


def _filled(executions: int) -> ServiceProtection:
    clock = ManualClock()
    limits = ServiceProtection(clock)
    limits.configure(LARGE)
    for _ in range(executions):
        limits.enter("u")
        limits.leave("u", 1.5)
        clock.now += 0.001  # all within the window
    return limits


def _per_request(limits: ServiceProtection, rounds: int = 300) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        limits.enter("u")
        limits.headers("u")
        limits.leave("u", 1.5)
    return (time.perf_counter() - started) / rounds


def test_a_full_window_costs_a_request_no_more_than_an_empty_one() -> None:
    small, large = _filled(10), _filled(100_000)
    best_small = min(_per_request(small) for _ in range(3))
    best_large = min(_per_request(large) for _ in range(3))
    assert best_large < 5 * best_small  # summing the window: hundreds of times


def test_the_running_total_follows_the_window() -> None:
    clock = ManualClock()
    limits = ServiceProtection(clock)
    limits.configure({"execution_ms": 100, "window_seconds": 10})
    for ms in (30.0, 40.0):
        limits.enter("u")
        limits.leave("u", ms)
        clock.now += 6
    assert limits.snapshot()["callers"]["u"]["execution_ms"] == 40.0  # the first left at 10 s
    clock.now += 6
    assert limits.snapshot()["callers"]["u"]["execution_ms"] == 0.0
    limits.enter("u")  # room again
