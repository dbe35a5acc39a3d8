"""Per-subscription rate limits, like API Management's `rate-limit-by-key` keyed by subscription.

`RATE_LIMITS` gives a subscription at most `calls` requests per `period` seconds
(`shared.settings.RateLimit`); subscriptions it does not name are not limited. The pipeline
checks the limit right after the subscription key and before the bearer token
(`shared.http.pipeline`), so a refused request has cost no signature check, no token exchange and
no Dataverse call. Over the limit a request answers 429 `rate_limited` with `Retry-After`: the
seconds left in the subscription's window, at least 1.

**What counts.** Each request that presents a valid key of a limited subscription counts once,
whatever it answers afterwards (a 401 for a bad token, a 400, a 503 from Dataverse): the check
runs once per request, and retries the API makes on its own (after Dataverse's `Retry-After`)
are not requests. A request the limit refuses is not counted. API Management defines `calls` as
the calls *allowed* per period, and so do we: a client that keeps knocking while refused does
not push the end of its own window further out, and it gets in again as soon as the window
renews.

**A fixed window that the first request opens.** A subscription's window starts with its first
request and lasts `period`; the next request after it opens a new one, counting from zero. One
counter per subscription: O(1) time and memory per request, an exact count within a window,
and a `Retry-After` that is exactly the time left. The price: a client that spends its calls at
the end of one window and again at the start of the next gets up to 2 x `calls` within one
`period` (API Management's sliding window smooths that). A sliding window in the store needs
either a log of every admitted call (O(`calls`) memory per subscription, 6,000 entries for a
limit sized to Dataverse's budget) or an estimate from two windows, which is not exact; neither
is worth it for a limit that guards a 5-minute budget. Choose `calls` so that twice it still
leaves room (docs/operations.md, "Rate limits").

**One interface, two counters** (`Counter.hit(name, calls, period_ms) -> Hit | None`):

- `SharedCounter`: one counter per subscription in the shared store (`shared.store`), for all
  instances together. One Lua script reads the count, adds this request when there is room, and
  starts the window's expiry (`PEXPIRE`) on its first request, atomically, in one round trip; it
  answers whether the request is admitted, the count and the milliseconds left. The window runs
  on the store's clock (the key's time to live), so the instances' clocks need not agree. The
  script touches only the one key it is given, so it runs on a clustered store too.
- `LocalCounter`: in this process's memory, under one lock. **Per instance**: without a store,
  each instance counts on its own, so N instances admit up to N x `calls` per window in all.

**When the store is unavailable** (down, slow, full, or its circuit breaker open) the shared
counter answers None at once or within `REDIS_TIMEOUT_SECONDS` (`shared.store` never raises),
and that request is counted in this instance's memory instead: the limit fails open to
per-instance limits, never to an error and never to a longer wait. Counters the store evicts
under memory pressure start again from zero: that too fails open.

Memory: one counter per limited subscription that has called (the names come from `RATE_LIMITS`,
never from a request), in the store and in each instance.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from shared.http.errors import RateLimited
from shared.settings import RateLimit

if TYPE_CHECKING:
    from shared.store import Store

# KEYS[1]: the subscription's counter. ARGV[1]: calls per window, ARGV[2]: the window in ms.
# Answers {admitted (1 or 0), requests admitted in this window, ms until it ends}. A counter
# without an expiry (never written by this script) is given one, so that no counter is forever.
SCRIPT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local admitted = 0
if count < tonumber(ARGV[1]) then
  count = redis.call('INCR', KEYS[1])
  admitted = 1
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  left = tonumber(ARGV[2])
end
return {admitted, count, left}
"""


@dataclass(frozen=True, slots=True)
class Hit:
    admitted: bool
    count: int  # requests admitted in this window, this one included when it was
    left_ms: int  # until the window ends


class Counter(Protocol):
    def hit(self, name: str, calls: int, period_ms: int) -> Hit | None:
        """Count one request of `name` when its window has room; None: could not count."""


class LocalCounter:
    """Fixed windows in this process's memory; `clock` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # name -> (window ends, admitted)

    def hit(self, name: str, calls: int, period_ms: int) -> Hit:
        now = self._clock()
        with self._lock:
            ends, count = self._windows.get(name, (now, 0))
            if ends <= now:  # no window yet, or it has ended: this request opens a new one
                ends, count = now + period_ms / 1000, 0
            admitted = count < calls
            if admitted:
                count += 1
            self._windows[name] = (ends, count)
        return Hit(admitted, count, math.ceil((ends - now) * 1000))

    def __len__(self) -> int:
        with self._lock:
            return len(self._windows)


class SharedCounter:
    """Fixed windows in the shared store, one atomic script call per request."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._script = store.script(SCRIPT)

    def key(self, name: str) -> str:
        return self._store.key("ratelimit", name)

    def hit(self, name: str, calls: int, period_ms: int) -> Hit | None:
        answer = self._script([self.key(name)], [calls, period_ms])
        if not isinstance(answer, Sequence) or len(answer) != 3:
            return None  # unavailable (or, never expected, not this script's answer)
        try:
            admitted, count, left = (int(value) for value in answer)
        except (TypeError, ValueError):
            return None
        return Hit(admitted == 1, count, max(0, left))


class RateLimits:
    """The limits of `RATE_LIMITS`, counted in `store` when there is one (falling back to this
    instance's memory for any request the store cannot count), else in memory only."""

    def __init__(
        self,
        limits: Mapping[str, RateLimit],
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = dict(limits)
        self.shared: SharedCounter | None = (
            SharedCounter(store) if store is not None and self._limits else None
        )
        self.local = LocalCounter(clock)

    def counts_in_store(self, subscription: str) -> bool:
        """Whether `check(subscription)` makes a round trip to the shared store."""
        return self.shared is not None and subscription in self._limits

    def check(self, subscription: str) -> None:
        """Count one request of `subscription`, or raise `RateLimited` (counting nothing)."""
        limit = self._limits.get(subscription)
        if limit is None:
            return
        period_ms = limit.period_seconds * 1000
        hit = None if self.shared is None else self.shared.hit(subscription, limit.calls, period_ms)
        shared = hit is not None
        if hit is None:
            hit = self.local.hit(subscription, limit.calls, period_ms)
        if not hit.admitted:
            raise RateLimited(
                limit.calls,
                limit.period_seconds,
                retry_after=max(1, math.ceil(hit.left_ms / 1000)),
                shared=shared,
            )
