"""Service protection limits, per caller, over a sliding window (Dataverse: 300 s).

Three measures, as `api-limits.md` describes them: number of requests (6000, `0x80072322`),
combined execution time (1,200,000 ms, `0x80072321`) and concurrent requests (52,
`0x80072326`). A request over a limit gets 429 with `Retry-After` (whole seconds until the window
has room again) and is not counted. Thresholds can be lowered at run time (control plane) so tests
reach them quickly; `reset()` restores the defaults and forgets every counter.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from devstack.dataverse.errors import Throttled

Clock = Callable[[], float]


@dataclass(frozen=True)
class Thresholds:
    requests: int = 6000
    execution_ms: int = 1_200_000
    concurrent: int = 52
    window_seconds: float = 300.0

    def updated(self, changes: Mapping[str, Any]) -> Thresholds:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown limit settings: {sorted(unknown)}")
        for name, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number")
        current = asdict(self)
        current.update(changes)
        return Thresholds(
            requests=int(current["requests"]),
            execution_ms=int(current["execution_ms"]),
            concurrent=int(current["concurrent"]),
            window_seconds=float(current["window_seconds"]),
        )


@dataclass
class _Usage:
    requests: deque[float] = field(default_factory=deque)
    executions: deque[tuple[float, float]] = field(default_factory=deque)
    active: int = 0
    # The sum of `executions`' ms, kept as they come and go: every request reads it twice, and
    # with the limits raised (the benchmarks) a window holds a hundred thousand executions.
    execution_ms: float = 0.0

    def prune(self, horizon: float) -> None:
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.executions and self.executions[0][0] <= horizon:
            self.execution_ms -= self.executions.popleft()[1]
        if not self.executions:
            self.execution_ms = 0.0  # no float drift left behind by the subtractions

    def executed(self, at: float, ms: float) -> None:
        self.executions.append((at, ms))
        self.execution_ms += ms


class ServiceProtection:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.thresholds = Thresholds()
        self._usage: dict[str, _Usage] = {}

    def configure(self, changes: Mapping[str, Any]) -> Thresholds:
        with self._lock:
            self.thresholds = self.thresholds.updated(changes)
            return self.thresholds

    def reset(self) -> None:
        with self._lock:
            self.thresholds = Thresholds()
            self._usage.clear()

    def enter(self, caller: str) -> None:
        """Count a request in, or raise `Throttled` (the request is then not counted)."""
        with self._lock:
            limits, now = self.thresholds, self._clock()
            usage = self._usage.setdefault(caller, _Usage())
            usage.prune(now - limits.window_seconds)
            if usage.active >= limits.concurrent:
                raise Throttled(
                    "0x80072326",
                    f"Number of concurrent requests exceeded the limit of {limits.concurrent}.",
                    retry_after=1,
                )
            if len(usage.requests) >= limits.requests:
                oldest = usage.requests[len(usage.requests) - limits.requests]
                raise Throttled(
                    "0x80072322",
                    f"Number of requests exceeded the limit of {limits.requests} over time "
                    f"window of {_seconds(limits.window_seconds)} seconds.",
                    retry_after=_retry_after(oldest + limits.window_seconds - now),
                )
            if usage.execution_ms >= limits.execution_ms:
                raise Throttled(
                    "0x80072321",
                    "Combined execution time of incoming requests exceeded limit of "
                    f"{limits.execution_ms:,} milliseconds over time window of "
                    f"{_seconds(limits.window_seconds)} seconds. Decrease number of concurrent "
                    "requests or reduce the duration of requests and try again later.",
                    retry_after=_retry_after(self._time_until_room(usage, limits) - now),
                )
            usage.requests.append(now)
            usage.active += 1

    def leave(self, caller: str, elapsed_ms: float) -> None:
        with self._lock:
            usage = self._usage.setdefault(caller, _Usage())
            usage.active = max(0, usage.active - 1)
            usage.executed(self._clock(), elapsed_ms)

    def headers(self, caller: str) -> dict[str, str]:
        with self._lock:
            limits = self.thresholds
            usage = self._usage.get(caller, _Usage())
            usage.prune(self._clock() - limits.window_seconds)
            return {
                "x-ms-ratelimit-burst-remaining-xrm-requests": str(
                    max(0, limits.requests - len(usage.requests))
                ),
                # seconds, with a grouping separator, as Dataverse writes it: "1,199.46"
                "x-ms-ratelimit-time-remaining-xrm-requests": (
                    f"{max(0.0, limits.execution_ms - usage.execution_ms) / 1000:,.2f}"
                ),
                "x-ms-dop-hint": "4",
            }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            limits, now = self.thresholds, self._clock()
            callers = {}
            for caller, usage in self._usage.items():
                usage.prune(now - limits.window_seconds)
                callers[caller] = {
                    "requests": len(usage.requests),
                    "execution_ms": round(usage.execution_ms, 3),
                    "concurrent": usage.active,
                }
            return {
                "thresholds": asdict(limits),
                "defaults": asdict(Thresholds()),
                "callers": callers,
            }

    @staticmethod
    def _time_until_room(usage: _Usage, limits: Thresholds) -> float:
        total = usage.execution_ms
        for at, ms in usage.executions:
            total -= ms
            if total < limits.execution_ms:
                return at + limits.window_seconds
        return usage.executions[-1][0] + limits.window_seconds


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def _seconds(window: float) -> str:
    return str(int(window)) if float(window).is_integer() else str(window)
