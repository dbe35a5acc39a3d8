"""`Store.get_while`: a GET whose reply is read only after the caller's own work has run.

Against real valkey-servers: the GET is on the wire (the server has answered it) while
`meanwhile` runs, on a connection still held; a server that stops or freezes between the send
and the read fails open like any call (about the timeout, the breaker opens, one warning); and
on every path the connection goes back to the pool, never with a reply still pending on it.

Tests that stop or freeze a server start their own (`own`); the others use the session's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from devstack.valkey import ValkeyServer
from shared.store import Breaker, Store, build_store
from shared.store.client import MAX_CONNECTIONS
from tests.clock import ManualClock
from tests.store.conftest import settings_for

TIMEOUT = 0.1
SLACK = 1.0  # generous: "about the timeout" on a loaded 2-core machine, not a benchmark


@pytest.fixture
def own(tmp_path: Path) -> Iterator[ValkeyServer]:
    with ValkeyServer(tmp_path / "valkey") as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def own_store(own: ValkeyServer, clock: ManualClock) -> Iterator[Store]:
    settings = settings_for(own.url, REDIS_TIMEOUT_SECONDS=str(TIMEOUT))
    store = build_store(settings, breaker=Breaker(settings.redis_breaker_seconds, clock=clock))
    assert store is not None
    yield store
    store.close()


def in_use(store: Store) -> int:
    """Connections of the store's pool lent out and not given back."""
    counts = store._client.connection_pool.get_connection_count()
    return int(counts[1][0])


def gets_served(server: ValkeyServer) -> int:
    raw = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        stats = raw.info("commandstats")
    finally:
        raw.close()
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def _freeze(server: ValkeyServer) -> None:
    server.pause()  # SIGSTOP: no reply comes


def _kill(server: ValkeyServer) -> None:
    server.stop()  # the connection is reset under the pending read


def hold_commands(server: ValkeyServer) -> None:
    """The server holds every command for a while (CLIENT PAUSE), so that the GET about to be
    sent is still unanswered when `meanwhile` freezes or stops the server."""
    raw = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        raw.execute_command("CLIENT", "PAUSE", 3000, "ALL")
    finally:
        raw.close()


def release_commands(server: ValkeyServer) -> None:
    raw = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        raw.execute_command("CLIENT", "UNPAUSE")
    finally:
        raw.close()


def test_answers_the_value_and_what_ran_meanwhile(store: Store) -> None:
    key = store.key("k")
    assert store.set(key, b"value", ttl_ms=60_000)
    assert store.get_while(key, lambda: "prepared") == (b"value", "prepared")
    assert store.get_while(store.key("absent"), lambda: 7) == (None, 7)
    assert in_use(store) == 0


def test_the_get_is_sent_before_meanwhile_runs_and_its_reply_read_after(
    own: ValkeyServer, own_store: Store
) -> None:
    key = own_store.key("k")
    assert own_store.set(key, b"value", ttl_ms=60_000)
    before = gets_served(own)
    seen: list[tuple[int, int]] = []

    def meanwhile() -> str:
        # Longer than the store's timeout: a reply read before meanwhile would have timed out.
        time.sleep(3 * TIMEOUT)
        release_commands(own)
        deadline = time.monotonic() + 5
        while gets_served(own) == before and time.monotonic() < deadline:
            time.sleep(0.005)
        seen.append((gets_served(own) - before, in_use(own_store)))
        return "prepared"

    hold_commands(own)  # the GET waits in the server until meanwhile lets it through
    assert own_store.get_while(key, meanwhile) == (b"value", "prepared")
    # The GET had reached the server, and its reply was still to be read on a lent connection.
    assert seen == [(1, 1)]
    assert own_store.state == "ok"
    assert in_use(own_store) == 0


@pytest.mark.parametrize("fail", [_freeze, _kill], ids=["frozen", "stopped"])
def test_a_server_that_fails_between_send_and_read_fails_open_and_the_connection_returns(
    own: ValkeyServer,
    own_store: Store,
    clock: ManualClock,
    fail: Callable[[ValkeyServer], None],
) -> None:
    key = own_store.key("k")
    assert own_store.set(key, b"value", ttl_ms=600_000)
    ran: list[int] = []

    def meanwhile() -> str:
        fail(own)
        ran.append(1)
        return "prepared"

    hold_commands(own)
    try:
        start = time.monotonic()
        result = own_store.get_while(key, meanwhile)
        took = time.monotonic() - start
    finally:
        if own.running:
            own.resume()
            release_commands(own)
        else:
            own.start()
    assert result == (None, "prepared")
    assert ran == [1]
    assert took < TIMEOUT + SLACK
    assert own_store.state == "degraded"
    assert in_use(own_store) == 0

    # The breaker keeps the next call off the network; meanwhile still runs, once.
    assert own_store.get_while(key, lambda: "again") == (None, "again")
    clock.advance(5)
    if own_store.get(key) is None:  # a stopped server came back empty
        assert own_store.set(key, b"value", ttl_ms=600_000)
    assert own_store.state == "ok"
    assert own_store.get_while(key, lambda: "back") == (b"value", "back")
    assert in_use(own_store) == 0


def test_a_server_that_never_answers_still_runs_meanwhile_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    server = ValkeyServer(tmp_path)  # a port with nothing listening: no GET is ever sent
    store = build_store(settings_for(server.url, REDIS_TIMEOUT_SECONDS=str(TIMEOUT)))
    assert store is not None
    try:
        calls: list[int] = []
        assert store.get_while(store.key("k"), lambda: calls.append(1) or "x") == (None, "x")
        assert calls == [1]
        assert store.state == "degraded"
        assert store.get_while(store.key("k"), lambda: calls.append(1) or "y") == (None, "y")
        assert calls == [1, 1]
    finally:
        store.close()


class Broken(Exception):
    pass


def test_what_meanwhile_raises_is_raised_and_no_connection_is_lost_or_left_with_a_reply(
    store: Store,
) -> None:
    key, other = store.key("k"), store.key("other")
    assert store.set(key, b"value", ttl_ms=60_000)
    assert store.set(other, b"other value", ttl_ms=60_000)

    def meanwhile() -> str:
        raise Broken

    # More times than the pool has connections: one kept each time would exhaust it.
    for _ in range(MAX_CONNECTIONS + 5):
        with pytest.raises(Broken):
            store.get_while(key, meanwhile)
    assert in_use(store) == 0
    assert store.state == "ok"  # our own error, not the store's
    # The next caller reads its own reply, not the one the failed call left unread.
    assert store.get_while(other, lambda: None) == (b"other value", None)
    assert store.get(other) == b"other value"
