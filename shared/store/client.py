"""`Store`: fail-open access to the shared Redis-protocol store, over one pooled client.

One `redis.Redis` per process (built by `build_store` when the runtime is built) holds a pool of
at most `MAX_CONNECTIONS` connections, opened lazily and shared by every thread. Each call is
bounded: the connect and socket timeouts are `REDIS_TIMEOUT_SECONDS` and redis-py's retries are
off, so a dead or stalled server costs a caller one timeout, never a multiple of it.

Every operation goes through `_call`, the one place where redis-py's errors (and OSError, which
sockets and TLS raise) are caught and turned into "unavailable": None for reads and scripts,
False for writes. Callers never see an exception and treat "unavailable" as a miss.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from shared.settings import Settings

logger = logging.getLogger(__name__)

# Above the worker's thread count (32 recommended, 64 in the dev host), so a request thread never
# waits for a connection; bounded, so that many instances cannot use up the server's connection
# limit (each instance holds at most this many, and usually far fewer: a call takes ~1 ms).
MAX_CONNECTIONS = 64

# An idle connection is PINGed before reuse after this many seconds, well inside the idle
# timeout of Azure's Redis services (10 minutes), so one that died while idle is replaced.
HEALTH_CHECK_INTERVAL = 30

T = TypeVar("T")


class _Unavailable(enum.Enum):
    """The call did not reach an answer (distinct from a None the server answered)."""

    UNAVAILABLE = 0


UNAVAILABLE = _Unavailable.UNAVAILABLE


class StoreScript:
    """A Lua script registered once: EVALSHA, loading the script again on NOSCRIPT (redis-py's
    `Script` does that, e.g. after the server restarted empty)."""

    def __init__(self, store: Store, script: Any) -> None:
        self._store = store
        self._script = script

    def __call__(self, keys: Sequence[str], args: Sequence[str | int | bytes]) -> Any | None:
        """The script's answer, or None when the store is unavailable."""
        result = self._store._call(lambda client: self._script(list(keys), list(args), client))
        return None if result is UNAVAILABLE else result


class Store:
    """Fail-open access to the shared Redis-protocol store. No method ever raises: a timeout,
    a refused connection, an OOM/READONLY error answers None (or False for writes)."""

    def __init__(self, client: Any, *, key_prefix: str) -> None:
        from redis.exceptions import RedisError

        self._client = client
        self.key_prefix = f"{key_prefix}:"
        # OSError: sockets and TLS raise it directly in a few paths redis-py does not wrap.
        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        self._failing = False

    def key(self, *parts: str) -> str:
        """A key under this app's namespace: `capi:part1:part2`."""
        return self.key_prefix + ":".join(parts)

    def get(self, key: str) -> bytes | None:
        """The value, or None when it is absent or the store is unavailable."""
        result = self._call(lambda client: client.get(key))
        return None if result is UNAVAILABLE else result

    def set(self, key: str, value: bytes, *, ttl_ms: int) -> bool:
        """Write with a time to live; False when it was not written."""
        result = self._call(lambda client: client.set(key, value, px=max(1, ttl_ms)))
        return result is not UNAVAILABLE and bool(result)

    def set_if_absent(self, key: str, value: bytes, *, ttl_ms: int) -> bool | None:
        """SET NX PX: True when this call took the key, False when someone else holds it, None
        when the store is unavailable."""
        result = self._call(lambda client: client.set(key, value, px=max(1, ttl_ms), nx=True))
        return None if result is UNAVAILABLE else bool(result)

    def delete(self, key: str) -> None:
        self._call(lambda client: client.delete(key))

    def script(self, source: str) -> StoreScript:
        """Register a Lua script (no network call until it first runs)."""
        return StoreScript(self, self._client.register_script(source))

    @property
    def state(self) -> str:
        """Either "ok", or "degraded" when the last call failed."""
        return "degraded" if self._failing else "ok"

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._client.close()  # disconnects the pool

    def _call(self, operation: Callable[[Any], T]) -> T | _Unavailable:
        """Run one operation; every failure becomes UNAVAILABLE (never a key or value in logs)."""
        try:
            result = operation(self._client)
        except self._errors:
            self._failing = True
            return UNAVAILABLE
        self._failing = False
        return result


def build_store(settings: Settings) -> Store | None:
    """The process's store, or None when REDIS_URL is unset. Connects on first use, not here."""
    if settings.redis_url is None:
        return None
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        max_connections=MAX_CONNECTIONS,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        client_name="central-api",
    )
    return Store(client, key_prefix=settings.redis_key_prefix)
