"""The shared store fails open, against a real valkey-server that is stopped, frozen, paused or
full: no call raises, none takes much longer than REDIS_TIMEOUT_SECONDS, the breaker keeps
further calls off the network for REDIS_BREAKER_SECONDS (a clock the test moves), and each
change of state logs one warning that names no key, value or password.

Every test starts its own server (`own`), so the session's `valkey` is never disturbed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from devstack.valkey import ValkeyServer
from shared.store import Breaker, Store, build_store
from tests.clock import ManualClock
from tests.store.conftest import settings_for

TIMEOUT = 0.1
# Generous: "about the timeout" on a loaded 2-core machine, not a benchmark.
SLACK = 1.0


@pytest.fixture
def own(tmp_path: Path) -> Iterator[ValkeyServer]:
    with ValkeyServer(tmp_path / "valkey") as server:
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _store(server: ValkeyServer, clock: ManualClock) -> Store:
    settings = settings_for(server.url, REDIS_TIMEOUT_SECONDS=str(TIMEOUT))
    store = build_store(settings, breaker=Breaker(settings.redis_breaker_seconds, clock=clock))
    assert store is not None
    return store


@pytest.fixture
def store(own: ValkeyServer, clock: ManualClock) -> Iterator[Store]:
    built = _store(own, clock)
    yield built
    built.close()


def _raw(server: ValkeyServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


def _connections_received(raw: redis.Redis) -> int:
    return int(raw.info("stats")["total_connections_received"])


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def _every_call(store: Store) -> list[Callable[[], Any]]:
    script = store.script("return redis.call('GET', KEYS[1])")
    key = store.key("k")
    return [
        lambda: store.get(key),
        lambda: store.set(key, b"v", ttl_ms=60_000),
        lambda: store.set_if_absent(key, b"v", ttl_ms=60_000),
        lambda: script([key], []),
        lambda: store.delete(key),
        store.ping,
    ]


UNAVAILABLE_ANSWERS = [None, False, None, None, None, False]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_server_stopped_mid_use(
    own: ValkeyServer,
    store: Store,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = store.key("token")
    assert store.set(key, b"secret-value", ttl_ms=600_000)
    assert store.get(key) == b"secret-value"

    own.stop()
    result, took = _timed(lambda: store.get(key))
    assert result is None
    assert took < TIMEOUT + SLACK
    assert store.state == "degraded"
    assert len(_warnings(caplog)) == 1

    for call, unavailable in zip(_every_call(store), UNAVAILABLE_ANSWERS, strict=True):
        assert call() == unavailable

    # Back, but the breaker is still open: calls answer at once without reaching it.
    # (Every connection the store had died with the server: reaching it takes a new one.)
    own.start()
    raw = _raw(own)
    try:
        before = _connections_received(raw)
        for _ in range(20):
            assert store.get(key) is None
        clock.advance(4.9)
        assert store.get(key) is None
        assert _connections_received(raw) == before
    finally:
        raw.close()

    clock.advance(0.1)
    assert store.set(key, b"value-two", ttl_ms=600_000)  # the probe
    assert store.state == "ok"
    assert store.get(key) == b"value-two"

    warnings = _warnings(caplog)
    assert [w.name for w in warnings] == ["shared.store", "shared.store"]
    assert "answers again" in warnings[1].getMessage()
    for record in caplog.records:
        text = record.getMessage() + str(record.args) + str(record.exc_text)
        for secret in (own.password, "secret-value", key, "value-two"):
            assert secret not in text


def test_server_never_started(tmp_path: Path, clock: ManualClock) -> None:
    server = ValkeyServer(tmp_path)  # a port with nothing listening
    store = _store(server, clock)
    try:
        for call, unavailable in zip(_every_call(store), UNAVAILABLE_ANSWERS, strict=True):
            result, took = _timed(call)
            assert result == unavailable
            assert took < TIMEOUT + SLACK
        assert store.state == "degraded"
    finally:
        store.close()


def _frozen(server: ValkeyServer) -> None:
    server.pause()  # SIGSTOP: the kernel still accepts connections, nothing answers


def _client_pause(server: ValkeyServer) -> None:
    raw = _raw(server)
    try:
        raw.execute_command("CLIENT", "PAUSE", 3000, "ALL")  # the server holds every command
    finally:
        raw.close()


@pytest.mark.parametrize("stall", [_frozen, _client_pause], ids=["sigstop", "client-pause"])
def test_stalled_server_costs_a_call_about_the_timeout(
    own: ValkeyServer,
    store: Store,
    clock: ManualClock,
    stall: Callable[[ValkeyServer], None],
) -> None:
    key = store.key("k")
    assert store.set(key, b"v", ttl_ms=60_000)
    stall(own)
    try:
        result, took = _timed(lambda: store.get(key))
        assert result is None
        assert took < TIMEOUT + SLACK
        assert store.state == "degraded"
        # The breaker is open: the next calls do not wait for the stalled server at all.
        _, took = _timed(lambda: [call() for call in _every_call(store) for _ in range(10)])
        assert took < SLACK
        # A new connection (not the pooled one) is bounded too.
        clock.advance(5)
        fresh = _store(own, clock)
        try:
            result, took = _timed(lambda: fresh.get(key))
            assert result is None
            assert took < 2 * TIMEOUT + SLACK  # connect, then the handshake's reply
        finally:
            fresh.close()
    finally:
        own.resume()


def test_full_server_fails_the_write_open(tmp_path: Path, clock: ManualClock) -> None:
    with ValkeyServer(tmp_path, maxmemory="4mb", policy="noeviction") as server:
        raw = _raw(server)
        try:
            with pytest.raises(redis.exceptions.OutOfMemoryError):  # noqa: PT012
                for i in range(10_000):
                    raw.set(f"filler:{i}", b"x" * 10_000)
            # Stay full whatever a closed connection's buffers give back.
            raw.config_set("maxmemory", "1mb")
            store = _store(server, clock)
            try:
                result, took = _timed(lambda: store.set(store.key("k"), b"v", ttl_ms=60_000))
                assert result is False
                assert took < TIMEOUT + SLACK
                assert store.state == "degraded"
                clock.advance(5)
                assert store.set_if_absent(store.key("k"), b"v", ttl_ms=60_000) is None
                clock.advance(5)
                assert store.get("filler:1") == b"x" * 10_000  # reads still work: the probe
                assert store.state == "ok"
            finally:
                store.close()
        finally:
            raw.close()
