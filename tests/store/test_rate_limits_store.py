"""shared.http.rate_limits against the real valkey-server: the shared counter's Lua script
(issue 11, item 5). Each test has a key prefix of its own (tests/store/conftest.py).

Several `Store`s on one server stand for several instances: each has its own client and
connection pool, as each API process does. The end-to-end tests across real API processes are in
tests/scale/test_rate_limits_instances.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from devstack.valkey import ValkeyServer, free_port
from shared.http.errors import RateLimited
from shared.http.rate_limits import RateLimits, SharedCounter
from shared.settings import RateLimit
from shared.store import Store
from tests.clock import ManualClock
from tests.store.conftest import store_for

MINUTE_MS = 60_000


@pytest.fixture
def raw(valkey: ValkeyServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(valkey.url)
    yield client
    client.close()


def test_a_window_admits_exactly_calls_and_the_store_holds_one_integer_with_a_ttl(
    store: Store, raw: redis.Redis
) -> None:
    counter = SharedCounter(store)
    hits = [counter.hit("demo-dealer", 3, MINUTE_MS) for _ in range(7)]
    assert all(h is not None for h in hits)
    assert [h.admitted for h in hits if h] == [True] * 3 + [False] * 4
    assert [h.count for h in hits if h] == [1, 2, 3, 3, 3, 3, 3]  # refusals are not counted
    assert all(0 < h.left_ms <= MINUTE_MS for h in hits if h)
    # All the store holds: the subscription's name (never a key) and a count, expiring.
    assert raw.keys(store.key_prefix + "*") == [counter.key("demo-dealer").encode()]
    assert raw.get(counter.key("demo-dealer")) == b"3"
    assert 0 < raw.pttl(counter.key("demo-dealer")) <= MINUTE_MS


def test_instances_counting_at_once_admit_exactly_calls_in_all(valkey: ValkeyServer) -> None:
    prefix = store_for(valkey.url).key_prefix.rstrip(":")
    stores = [store_for(valkey.url, REDIS_KEY_PREFIX=prefix) for _ in range(3)]
    counters = [SharedCounter(s) for s in stores]
    gate = threading.Barrier(24)

    def request(n: int) -> bool:
        if n < 24:
            gate.wait(timeout=10)
        hit = counters[n % 3].hit("demo-dealer", 50, MINUTE_MS)
        assert hit is not None
        return hit.admitted

    try:
        with ThreadPoolExecutor(24) as pool:
            admitted = list(pool.map(request, range(240)))
    finally:
        for store in stores:
            store.close()
    assert sum(admitted) == 50


def test_the_window_renews_on_the_stores_clock(store: Store) -> None:
    counter = SharedCounter(store)
    period_ms = 300
    first = counter.hit("demo-dealer", 1, period_ms)
    refused = counter.hit("demo-dealer", 1, period_ms)
    assert first is not None
    assert first.admitted
    assert refused is not None
    assert not refused.admitted
    time.sleep((refused.left_ms + 50) / 1000)  # past the window's end, as Retry-After says
    renewed = counter.hit("demo-dealer", 1, period_ms)
    assert renewed is not None
    assert (renewed.admitted, renewed.count) == (True, 1)
    assert period_ms - 100 < renewed.left_ms <= period_ms


def test_a_counter_without_an_expiry_is_given_one(store: Store, raw: redis.Redis) -> None:
    counter = SharedCounter(store)
    raw.set(counter.key("demo-dealer"), b"9")  # not written by the script: no time to live
    hit = counter.hit("demo-dealer", 5, MINUTE_MS)
    assert hit is not None
    assert (hit.admitted, hit.left_ms) == (False, MINUTE_MS)
    assert 0 < raw.pttl(counter.key("demo-dealer")) <= MINUTE_MS


def test_the_limits_count_in_the_store_across_instances(valkey: ValkeyServer) -> None:
    prefix = store_for(valkey.url).key_prefix.rstrip(":")
    stores = [store_for(valkey.url, REDIS_KEY_PREFIX=prefix) for _ in range(3)]
    limited = {"demo-dealer": RateLimit(4, 60)}
    instances = [RateLimits(limited, store=s, clock=ManualClock()) for s in stores]
    try:
        for n in range(4):
            instances[n % 3].check("demo-dealer")
        for instance in instances:
            with pytest.raises(RateLimited) as refused:
                instance.check("demo-dealer")
            assert "all instances" in refused.value.reason
            assert 1 <= refused.value.retry_after <= 60
            assert len(instance.local) == 0  # nothing was counted in memory
    finally:
        for store in stores:
            store.close()


def test_a_store_that_cannot_count_falls_back_to_this_instance_at_once() -> None:
    closed = store_for(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    limits = RateLimits({"demo-dealer": RateLimit(2, 60)}, store=closed, clock=ManualClock())
    started = time.monotonic()
    limits.check("demo-dealer")
    limits.check("demo-dealer")
    with pytest.raises(RateLimited) as refused:
        limits.check("demo-dealer")
    assert time.monotonic() - started < 5  # refused connections: no waits (generous bound)
    assert "this instance" in refused.value.reason
    assert len(limits.local) == 1
    assert closed.state == "degraded"
    closed.close()
