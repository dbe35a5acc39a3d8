"""An L2 hit derives the value key while its GET is in flight (`Store.get_while`); what it reads
and how it fails are unchanged. Against real valkey-servers.

- The key is still HMAC-SHA256 of the scopes and the incoming token under the "store-lookup"
  subkey (computed from a keyed start state copied per key).
- The value key is still HKDF-SHA256 of the caller's incoming token (salt: the "store-value"
  subkey of API_DATA_KEY), checked with cryptography's own HKDF and AES-GCM both ways: a value
  the cache wrote opens with them, and a value sealed with them is a hit.
- A store that fails between the GET's send and its reply is a miss (the caller exchanges),
  within about the timeout, with the breaker open and the connection back in the pool; when the
  store is back, the entry is a hit again.
"""

from __future__ import annotations

import hmac
import os
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from devstack.valkey import ValkeyServer
from shared.datakeys import derive
from shared.downstream import CachedToken, Lookup
from shared.downstream.shared_cache import SharedTokenCache
from shared.store import Breaker, Store, build_store
from tests.clock import ManualClock
from tests.store.conftest import settings_for, store_for
from tests.store.test_get_while import hold_commands, in_use, release_commands

T = TypeVar("T")
DATA_KEY = os.urandom(32)
SCOPES = ("https://dataverse.example/user_impersonation",)
INFO = b"central-api obo-cache value v1"
TIMEOUT = 0.1
SLACK = 1.0  # generous: "about the timeout" on a loaded 2-core machine, not a benchmark


def value_key(incoming_token: str) -> bytes:
    """The value key as the format defines it, with cryptography's HKDF."""
    hkdf = HKDF(hashes.SHA256(), length=32, salt=derive(DATA_KEY, "store-value"), info=INFO)
    return hkdf.derive(incoming_token.encode("utf-8"))


@pytest.fixture
def store(valkey: ValkeyServer) -> Iterator[Store]:
    built = store_for(valkey.url)
    yield built
    built.close()


def test_a_value_the_cache_writes_opens_with_hkdf_of_the_incoming_token(
    store: Store, valkey: ValkeyServer
) -> None:
    cache = SharedTokenCache(store, DATA_KEY, wait=1.0)
    lookup = Lookup.of("incoming-token-of-alice", SCOPES)
    expiry = int(time.time()) + 3600
    cache.put(lookup, CachedToken("alices-dataverse-token", expiry))
    key = cache.key(lookup)
    raw = redis.Redis.from_url(valkey.url)
    try:
        value = raw.get(key)
    finally:
        raw.close()
    assert value is not None
    assert value[0] == 1
    plaintext = AESGCM(value_key("incoming-token-of-alice")).decrypt(
        value[1:13], value[13:], b"\x01" + key.encode()
    )
    assert plaintext == struct.pack(">Q", expiry) + b"alices-dataverse-token"


def test_a_value_sealed_with_hkdf_of_the_incoming_token_is_a_hit(store: Store) -> None:
    cache = SharedTokenCache(store, DATA_KEY, wait=1.0)
    lookup = Lookup.of("incoming-token-of-bob", SCOPES)
    key = cache.key(lookup)
    expiry = int(time.time()) + 3600
    nonce = os.urandom(12)
    sealed = AESGCM(value_key("incoming-token-of-bob")).encrypt(
        nonce, struct.pack(">Q", expiry) + b"bobs-dataverse-token", b"\x01" + key.encode()
    )
    assert store.set(key, b"\x01" + nonce + sealed, ttl_ms=60_000)
    assert cache.get(lookup) == CachedToken("bobs-dataverse-token", float(expiry))
    assert cache.get(Lookup.of("incoming-token-of-eve", SCOPES)) is None
    assert cache.stats == {"hits": 1, "misses": 1}


def test_the_key_is_still_hmac_sha256_of_the_scopes_and_the_incoming_token(store: Store) -> None:
    """Instances of two versions (a rolling deployment) must file and find entries alike."""
    lookup = Lookup.of("incoming-token-of-dan", SCOPES)
    message = " ".join(SCOPES).encode() + b"\x00" + b"incoming-token-of-dan"
    mac = hmac.new(derive(DATA_KEY, "store-lookup"), message, "sha256").hexdigest()
    cache = SharedTokenCache(store, DATA_KEY, wait=1.0)
    assert cache.key(lookup) == store.key("obo", mac)
    assert cache.key(lookup) == cache.key(lookup)  # the keyed start state is copied, not used up


class FailsMidGet:
    """A `Store` whose server fails once, between a GET's send and its reply."""

    def __init__(self, store: Store, fail: Callable[[], None]) -> None:
        self.store = store
        self.fail: Callable[[], None] | None = fail

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def get_while(self, key: str, meanwhile: Callable[[], T]) -> tuple[bytes | None, T]:
        fail, self.fail = self.fail, None

        def failing_first() -> T:
            if fail is not None:
                fail()
            return meanwhile()

        return self.store.get_while(key, failing_first)


@pytest.fixture
def own(tmp_path: Path) -> Iterator[ValkeyServer]:
    with ValkeyServer(tmp_path / "valkey") as server:
        yield server


@pytest.mark.parametrize("how", ["frozen", "stopped"])
def test_an_l2_hit_whose_store_fails_between_send_and_read_is_a_miss_that_fails_open(
    own: ValkeyServer, how: str
) -> None:
    clock = ManualClock()
    settings = settings_for(own.url, REDIS_TIMEOUT_SECONDS=str(TIMEOUT))
    built = build_store(settings, breaker=Breaker(settings.redis_breaker_seconds, clock=clock))
    assert built is not None
    lookup = Lookup.of("incoming-token-of-carol", SCOPES)
    good = CachedToken("carols-dataverse-token", float(int(time.time()) + 3600))
    try:
        SharedTokenCache(built, DATA_KEY, wait=1.0).put(lookup, good)
        failing = FailsMidGet(built, own.pause if how == "frozen" else own.stop)
        cache = SharedTokenCache(failing, DATA_KEY, wait=1.0)  # type: ignore[arg-type]
        hold_commands(own)  # the GET is still unanswered when the server fails
        try:
            start = time.monotonic()
            found = cache.get(lookup)
            took = time.monotonic() - start
        finally:
            if own.running:
                own.resume()
                release_commands(own)
            else:
                own.start()
        assert found is None
        assert took < TIMEOUT + SLACK
        assert cache.stats == {"misses": 1}
        assert built.state == "degraded"
        assert in_use(built) == 0

        clock.advance(settings.redis_breaker_seconds)
        if how == "stopped":  # it came back empty: the exchange that follows a miss writes
            cache.put(lookup, good)
        assert cache.get(lookup) == good
        assert built.state == "ok"
        assert in_use(built) == 0
    finally:
        built.close()
