"""A circuit breaker: after a failure, stop trying for a while, then let one call probe.

States, as `/api/health` shows them:
- "ok": every call goes through.
- "degraded": a call failed. For `cooldown` seconds every call is refused at once (the caller
  treats the store as unavailable, costing it nothing); then one call is let through as a probe
  (the rest are still refused). Its success brings the breaker back to "ok"; its failure starts
  another cooldown. A probe that never reports (its thread died) does not wedge the breaker: the
  next caller after another cooldown probes instead.

So a dead store costs one timeout per instance per cooldown, not one per request. Each change of
state is logged once, at WARNING, with the failure's class name only: never a key, a value or
the store's URL. Thread-safe (one lock, O(1) per call); the clock is injectable for tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("shared.store")

OK = "ok"
DEGRADED = "degraded"


class Breaker:
    def __init__(
        self,
        cooldown: float,
        *,
        name: str = "shared store",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cooldown = cooldown
        self._name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._state = OK
        self._retry_at = 0.0  # while degraded: when the next probe may go

    @property
    def state(self) -> str:
        return self._state

    def allow(self) -> bool:
        """May a call go to the store now? While degraded, True for one caller per cooldown."""
        if self._state == OK:  # the common path takes no lock: a stale read costs one call
            return True
        with self._lock:
            if self._state == OK:
                return True
            now = self._clock()
            if now < self._retry_at:
                return False
            self._retry_at = now + self._cooldown  # this caller probes; others wait again
            return True

    def succeeded(self) -> None:
        if self._state == OK:
            return
        with self._lock:
            if self._state == OK:
                return
            self._state = OK
        logger.warning("%s answers again; using it", self._name)

    def failed(self, reason: str) -> None:
        """Record a failed call; `reason` is an exception's class name, nothing it carried."""
        with self._lock:
            self._retry_at = self._clock() + self._cooldown
            if self._state == DEGRADED:
                return
            self._state = DEGRADED
        logger.warning(
            "%s unavailable (%s); working without it, trying again every %g s",
            self._name,
            reason,
            self._cooldown,
        )
