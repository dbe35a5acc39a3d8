"""shared.store against a real valkey-server: what each call does when the store is up, that
keys live under the prefix, that without REDIS_URL there is no store, and that redis-py is
imported only when a store is built."""

from __future__ import annotations

import subprocess
import sys

import redis

from devstack.config import ROOT
from devstack.valkey import ValkeyServer
from shared.store import Store, build_store
from tests.store.conftest import settings_for


def test_no_url_no_store() -> None:
    assert build_store(settings_for(None)) is None


def test_get_set_delete(store: Store) -> None:
    key = store.key("a", "b")
    assert key == store.key_prefix + "a:b"
    assert store.get(key) is None
    assert store.set(key, b"\x00value", ttl_ms=60_000)
    assert store.get(key) == b"\x00value"
    store.delete(key)
    assert store.get(key) is None
    assert store.state == "ok"


def test_set_if_absent(store: Store) -> None:
    key = store.key("lock")
    assert store.set_if_absent(key, b"one", ttl_ms=60_000) is True
    assert store.set_if_absent(key, b"two", ttl_ms=60_000) is False
    assert store.get(key) == b"one"


def test_ttl_is_set(store: Store, valkey: ValkeyServer) -> None:
    key = store.key("ttl")
    store.set(key, b"v", ttl_ms=30_000)
    raw = redis.Redis.from_url(valkey.url)
    try:
        assert 0 < raw.pttl(key) <= 30_000
    finally:
        raw.close()


def test_keys_live_under_the_prefix(valkey: ValkeyServer) -> None:
    store = build_store(settings_for(valkey.url, REDIS_KEY_PREFIX="prefix-test"))
    assert store is not None
    try:
        assert store.key_prefix == "prefix-test:"
        store.set(store.key("x"), b"1", ttl_ms=60_000)
        raw = redis.Redis.from_url(valkey.url)
        try:
            assert raw.get("prefix-test:x") == b"1"
        finally:
            raw.close()
    finally:
        store.close()


def test_script_runs_and_survives_a_flushed_script_cache(
    store: Store, valkey: ValkeyServer
) -> None:
    incr = store.script(
        "local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], ARGV[1]) return n"
    )
    key = store.key("counter")
    assert incr([key], [60_000]) == 1
    raw = redis.Redis.from_url(valkey.url)
    try:
        raw.script_flush()  # as after a restart or a failover: EVALSHA answers NOSCRIPT
    finally:
        raw.close()
    assert incr([key], [60_000]) == 2
    assert store.state == "ok"


def test_redis_is_imported_only_when_a_store_is_built() -> None:
    code = (
        "import sys; import shared.store, shared.runtime, shared.settings; "
        "print('redis' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_building_a_store_loads_no_opentelemetry(valkey: ValkeyServer) -> None:
    """redis-py would load the OpenTelemetry SDK it finds installed; without a connection
    string this app loads none of it (tests/security/test_logs.py, end to end)."""
    code = (
        "import sys; from shared.store import build_store; "
        "from tests.store.conftest import settings_for; "
        f"store = build_store(settings_for({valkey.url!r})); "
        "assert store is not None and store.ping(); store.close(); "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
