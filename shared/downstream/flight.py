"""Single flight: concurrent callers of the same work share one run of it.

The first caller runs the function; callers arriving while it runs wait for that run's outcome
(its value, or the exception it raised) instead of starting their own. Nothing is kept after a
run ends: the next caller starts a new one. Used where a cold or expired cache would otherwise
send every concurrent request to the identity platform at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class _Flight(Generic[T]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: _Flight[T] | None = None

    def run(self, work: Callable[[], T]) -> T:
        with self._lock:
            flight = self._current
            leader = flight is None
            if flight is None:
                flight = self._current = _Flight()
        if leader:
            try:
                flight.value = work()
            except BaseException as exc:
                flight.error = exc
            finally:
                with self._lock:
                    self._current = None
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return cast(T, flight.value)  # set whenever no error was
