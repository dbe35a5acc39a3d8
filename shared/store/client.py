"""`Store`: fail-open access to the shared Redis-protocol store, over one pooled client.

One `redis.Redis` per process (built by `build_store` when the runtime is built) holds a pool of
at most `MAX_CONNECTIONS` connections, opened lazily and shared by every thread. Each call is
bounded: the connect and socket timeouts are `REDIS_TIMEOUT_SECONDS` and redis-py's retries are
off, so a dead or stalled server costs a caller one timeout, never a multiple of it.

Every operation goes through `_call`, the one place where redis-py's errors (and OSError, which
sockets and TLS raise) are caught and turned into "unavailable": None for reads and scripts,
False for writes. Callers never see an exception and treat "unavailable" as a miss. `_call` also
consults the circuit breaker (shared/store/breaker.py): while it is open, calls answer
"unavailable" without touching the network.

`get_while` is a GET split in two, for a caller with work that does not need the value (an L2
hit derives its value key there): the command is sent on a pooled connection, the caller's work
runs while the reply travels, and only then is the reply read, under the same socket timeout and
through `_call` like any operation. The connection goes back to the pool on every path; after
an error, or the caller's work raising before the read, it is closed first, so that a reply
still on its way never reaches the next caller.

Every failure counts toward the breaker, including errors the server answered (OOM when full,
READONLY during a failover, a script error): a store that refuses work is as good as absent, and
an error that repeats shows in the logs as a breaker that keeps opening. One does not: the pool
having no free connection (`MaxConnectionsError`) says this instance is busy, not that the store
is down, so it fails only that call.

Authentication (REDIS_CREDENTIAL): the password REDIS_URL carries (an access key), or, with
`managed-identity`, a Microsoft Entra token of the API's managed identity for Azure Managed
Redis (`https://redis.azure.com`), through redis-entraid's credential provider: redis-py sends
`AUTH <object id> <token>` on each new connection, and the provider fetches a new token in the
background before the old one expires (at 70% of its life) and re-authenticates the open
connections with it. The token comes from the same managed-identity endpoint as the API's
client assertion (IDENTITY_ENDPOINT). redis-entraid is imported only in that mode.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from shared.store.breaker import Breaker

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

    def __init__(self, client: Any, *, key_prefix: str, breaker: Breaker) -> None:
        from redis.exceptions import MaxConnectionsError, RedisError

        self._client = client
        self.key_prefix = f"{key_prefix}:"
        self._breaker = breaker
        # OSError: sockets and TLS raise it directly in a few paths redis-py does not wrap.
        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        self._busy: type[Exception] = MaxConnectionsError

    def key(self, *parts: str) -> str:
        """A key under this app's namespace: `capi:part1:part2`."""
        return self.key_prefix + ":".join(parts)

    def get(self, key: str) -> bytes | None:
        """The value, or None when it is absent or the store is unavailable."""
        result = self._call(lambda client: client.get(key))
        return None if result is UNAVAILABLE else result

    def get_while(self, key: str, meanwhile: Callable[[], T]) -> tuple[bytes | None, T]:
        """`get(key)`, running `meanwhile` while the GET's reply is on its way: the caller's work
        that does not need the value overlaps the round trip instead of following it.

        `meanwhile` runs exactly once, whatever becomes of the GET (after it, when the store was
        unavailable before the GET left); what it raises is raised, and its connection, with a
        reply still pending, is dropped rather than handed to the next caller. It should only
        compute: an OSError or redis-py error from it would count as the store's failure."""
        prepared: list[T] = []

        def get(client: Any) -> Any:
            # redis-py's execute_command without its retry loop (retries are off): one pooled
            # connection, the command sent, and only then its reply read.
            pool = client.connection_pool
            connection = pool.get_connection()
            answered = False
            try:
                connection.send_command("GET", key)
                prepared.append(meanwhile())
                reply = connection.read_response()
                answered = True
                return reply
            finally:
                if not answered:
                    connection.disconnect()  # the reply may still come: never reuse it
                pool.release(connection)

        result = self._call(get)
        if not prepared:
            prepared.append(meanwhile())
        return (None if result is UNAVAILABLE else result), prepared[0]

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

    def ping(self) -> bool:
        """True when the store answers (a health check: it feeds the breaker like any call)."""
        return self._call(lambda client: client.ping()) is True

    @property
    def state(self) -> str:
        """Either "ok", or "degraded" while the breaker is open (a call failed)."""
        return self._breaker.state

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._client.close()  # disconnects the pool

    def _call(self, operation: Callable[[Any], T]) -> T | _Unavailable:
        """Run one operation; every failure becomes UNAVAILABLE (never a key or value in logs)."""
        if not self._breaker.allow():
            return UNAVAILABLE
        try:
            result = operation(self._client)
        except self._busy:
            return UNAVAILABLE
        except self._errors as exc:
            self._breaker.failed(type(exc).__name__)
            return UNAVAILABLE
        self._breaker.succeeded()
        return result


def _import_redis() -> ModuleType:
    """redis-py, without the OpenTelemetry SDK it loads at import when it finds it installed.

    redis-py records metrics through OpenTelemetry only when told to (we never do), but imports
    the SDK eagerly if present, and azure-monitor-opentelemetry installs it: a large part of
    redis-py's import time, and telemetry code that this app loads only with a connection
    string (shared/telemetry.py). When OpenTelemetry is not loaded yet, it is hidden while
    redis-py loads, which then behaves as where it is not installed (a case it supports: its
    OpenTelemetry imports are optional). Runs once, from `runtime.build`, under its lock.
    """
    if "opentelemetry" in sys.modules:  # telemetry is on: nothing to save
        import redis

        return redis
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import redis
    finally:
        del sys.modules["opentelemetry"]
    return redis


def build_store(settings: Settings, *, breaker: Breaker | None = None) -> Store | None:
    """The process's store, or None when REDIS_URL is unset. Connects on first use, not here.
    `breaker`: one with a clock of the caller's (tests)."""
    if settings.redis_url is None:
        return None
    redis = _import_redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    more: dict[str, Any] = {}
    if settings.redis_credential == "managed-identity":
        more["credential_provider"] = entra_credential_provider(settings)
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        max_connections=MAX_CONNECTIONS,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        client_name="central-api",  # in CLIENT LIST, for operators
        # No CLIENT SETINFO: two round trips more on every new connection, for nothing we read.
        driver_info=None,
        **more,
    )
    return Store(
        client,
        key_prefix=settings.redis_key_prefix,
        breaker=breaker or Breaker(settings.redis_breaker_seconds),
    )


# The resource Azure Managed Redis (and Azure Cache for Redis) accept Entra tokens for.
REDIS_RESOURCE = "https://redis.azure.com"


def entra_credential_provider(settings: Settings) -> Any:
    """redis-entraid's provider for the API's managed identity (user-assigned when
    API_MANAGED_IDENTITY_CLIENT_ID is set, else system-assigned)."""
    from redis_entraid.cred_provider import (
        ManagedIdentityIdType,
        ManagedIdentityType,
        create_from_managed_identity,
    )

    client_id = settings.api_managed_identity_client_id
    if client_id is None:
        return create_from_managed_identity(
            identity_type=ManagedIdentityType.SYSTEM_ASSIGNED, resource=REDIS_RESOURCE
        )
    return create_from_managed_identity(
        identity_type=ManagedIdentityType.USER_ASSIGNED,
        resource=REDIS_RESOURCE,
        id_type=ManagedIdentityIdType.CLIENT_ID,
        id_value=client_id,
    )
