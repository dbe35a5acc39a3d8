"""The instance's per-instance HTTP concurrency: at most `limit` requests inside, the rest
waiting in order of arrival (`_limits` says where the limit comes from).

`asyncio.Semaphore` would do the counting, but it lets a newcomer past waiters whenever a place
frees up between two wake-ups; a front end hands requests on in the order they came, and the
benchmarks read the time each one waited, so this one is first come, first served. Nothing is
ever refused. It lives on the event loop of the server in front (one per `HostApp`).
"""

from __future__ import annotations

import asyncio
from collections import deque


class ConcurrencyGate:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a concurrency limit is at least 1")
        self.limit = limit
        self.inside = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiting if not waiter.done())

    async def enter(self) -> None:
        """Return once this request may go in; `leave()` must follow, whatever happens."""
        if self.inside < self.limit and not self._waiting:
            self.inside += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # the place was handed over just as the wait was cancelled
            elif waiter in self._waiting:  # `leave()` may have passed over it already
                self._waiting.remove(waiter)
            raise

    def leave(self) -> None:
        """Hand the place to the longest waiter, or give it back."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # `inside` is unchanged: the place changes hands
                return
        self.inside -= 1
