"""A cap on each caller's concurrent requests, so that one caller cannot starve every other.

Every request holds one of the instance's places until it answers, including while it waits out
Dataverse's `Retry-After` or a slow backend: a worker thread for a sync function, a place under
the per-instance HTTP concurrency for any function (the domains' are async). Without a cap, one
caller with many requests in flight (a user who tripped her own Dataverse limit, a runaway batch
job) holds every place, and everyone else's requests queue behind hers. With it, a caller holds
at most `limit` places at once; a request over the cap answers 429
`too_many_concurrent_requests` at once, before any token exchange or Dataverse call, and the
others' requests find free places.

The caller is who Dataverse would see, as the `Principal` says: the user's `oid` in delegated
mode (whichever client app she uses), the client application's id in application mode. The key
carries the mode, so that an object id and an application id can never count as one caller.

**Per instance.** The counts live in this process's memory: each instance (each worker process)
applies the cap on its own, so a caller spread over N instances may have N x `limit` requests in
flight in all. That is what the cap is for: it protects this instance's threads. A cap across
instances needs a shared store (issue 11).

One lock guards one dict from caller key to requests in flight: acquire and release are O(1),
and a key leaves the dict when its count drops to zero, so memory is bounded by the requests in
flight, never by the callers ever seen. `limit` 0 turns the cap off (nothing is counted).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from shared.auth.principal import Principal
from shared.http.errors import TooManyConcurrentRequests

CallerKey = tuple[str, str]


def caller_key(principal: Principal) -> CallerKey:
    """Who counts as one caller: the user (`oid`) or the client application (its app id)."""
    if principal.is_application:
        return ("application", principal.client_app_id)
    return ("user", principal.oid)


class CallerLimits:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._in_flight: dict[CallerKey, int] = {}

    def acquire(self, key: CallerKey) -> None:
        """Count one more request of `key` in, or raise `TooManyConcurrentRequests` (and count
        nothing) when it already has `limit` in flight."""
        if self.limit <= 0:
            return
        with self._lock:
            held = self._in_flight.get(key, 0)
            if held >= self.limit:
                raise TooManyConcurrentRequests(self.limit)
            self._in_flight[key] = held + 1

    def release(self, key: CallerKey) -> None:
        """Count one of `key`'s requests out; only after a successful `acquire`."""
        if self.limit <= 0:
            return
        with self._lock:
            held = self._in_flight[key] - 1
            if held:
                self._in_flight[key] = held
            else:
                del self._in_flight[key]

    @contextmanager
    def held(self, key: CallerKey) -> Iterator[None]:
        """One request of `key` in flight for the body of the `with`, released however it
        ends (an answer, an error, an unexpected exception)."""
        self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

    def in_flight(self, key: CallerKey) -> int:
        with self._lock:
            return self._in_flight.get(key, 0)

    def __len__(self) -> int:
        """How many callers have requests in flight (what the memory holds)."""
        with self._lock:
            return len(self._in_flight)
