"""L2 of the On-Behalf-Of cache, in process, against a real valkey-server and the Entra emulator.

What is stored (a keyed hash, a value that opens only with the caller's own token and under its
own key), how long, the order of lookups (store calls counted: an L1 hit makes none), the lock
that gives one exchange across instances, and a store that is down. Several `DownstreamTokens`
over one store stand for several instances; tests/scale runs real separate processes.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import redis
import requests

from devstack.pki import Material
from devstack.tenant import Tenant
from devstack.valkey import ValkeyServer, free_port
from shared.downstream import CachedToken, DownstreamTokens, Lookup
from shared.downstream.cache import MARGIN_SECONDS
from shared.downstream.shared_cache import SharedTokenCache
from shared.settings import Settings, SettingsError
from shared.store import Store, StoreScript, build_store
from tests.conftest import Emulator
from tests.shared.test_downstream import OBO, settings, token_requests, user_token
from tests.shared.test_settings import GOOD

SCOPES = ("https://dataverse.example/user_impersonation",)
DATA_KEY = bytes(range(32))
T = TypeVar("T")


class Counted:
    """A real `Store` that notes each call that reaches the network, by command."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.key_prefix = store.key_prefix
        self.calls: list[str] = []

    def key(self, *parts: str) -> str:
        return self.store.key(*parts)

    def get(self, key: str) -> bytes | None:
        self.calls.append("GET")
        return self.store.get(key)

    def get_while(self, key: str, meanwhile: Callable[[], T]) -> tuple[bytes | None, T]:
        self.calls.append("GET")
        return self.store.get_while(key, meanwhile)

    def set(self, key: str, value: bytes, *, ttl_ms: int) -> bool:
        self.calls.append("SET")
        return self.store.set(key, value, ttl_ms=ttl_ms)

    def set_if_absent(self, key: str, value: bytes, *, ttl_ms: int) -> bool | None:
        self.calls.append("SET NX")
        return self.store.set_if_absent(key, value, ttl_ms=ttl_ms)

    def delete(self, key: str) -> None:
        self.calls.append("DEL")
        self.store.delete(key)

    def script(self, source: str) -> Any:
        inner: StoreScript = self.store.script(source)

        def run(keys: list[str], args: list[str | int | bytes]) -> Any:
            self.calls.append("SCRIPT")
            return inner(keys, args)

        return run

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def prefix() -> str:
    """Each test's own namespace in the session's server."""
    return f"test-l2-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def raw(valkey: ValkeyServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(valkey.url)
    yield client
    client.close()


def store_settings(base: Settings, url: str, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(base.__dict__)
    values.update(redis_url=url, redis_key_prefix=prefix, data_key=DATA_KEY)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def store(
    valkey: ValkeyServer, prefix: str, tenant: Tenant, material: Material, entra: Emulator
) -> Iterator[Store]:
    built = build_store(store_settings(settings(tenant, material, entra), valkey.url, prefix))
    assert built is not None
    yield built
    built.close()


def l2(store: Any, *, key: bytes = DATA_KEY, wait: float = 2.0) -> SharedTokenCache:
    return SharedTokenCache(store, key, wait=wait)


def good_for_an_hour(value: str = "dataverse-token") -> CachedToken:
    return CachedToken(value, time.time() + 3600)


# --- what is stored ------------------------------------------------------------------------------


def test_the_key_is_a_keyed_hash_shared_by_every_instance(store: Store) -> None:
    incoming = "eyJ0eXAiOiJKV1QifQ.eyJvaWQiOiJ4In0.c2ln"
    lookup = Lookup.of(incoming, SCOPES)
    key = l2(store).key(lookup)
    assert key == l2(store).key(Lookup.of(incoming, SCOPES))  # another instance, same key
    assert key.startswith(store.key("obo", ""))
    assert incoming not in key
    assert "eyJ" not in key
    assert lookup.digest.hex() not in key  # not the unkeyed hash L1 uses
    assert key != l2(store, key=secrets.token_bytes(32)).key(lookup)  # needs the server's key
    assert key != l2(store).key(Lookup.of(incoming, ("other/scope",)))


def test_a_value_opens_only_with_its_own_token_under_its_own_key(
    store: Store, raw: redis.Redis
) -> None:
    cache = l2(store)
    alice, bob = Lookup.of("token-of-alice", SCOPES), Lookup.of("token-of-bob", SCOPES)
    alice_elsewhere = Lookup.of("token-of-alice", ("other/scope",))
    expiry = time.time() + 3600
    cache.put(alice, CachedToken("alices-dataverse-token", expiry))
    value = raw.get(cache.key(alice))
    assert value is not None
    assert b"alices-dataverse-token" not in value
    assert b"token-of-alice" not in value
    assert cache.get(alice) == CachedToken("alices-dataverse-token", float(int(expiry)))

    raw.set(cache.key(bob), value)  # read with another user's token
    raw.set(cache.key(alice_elsewhere), value)  # same token, another key: bound as associated data
    assert cache.get(bob) is None
    assert cache.get(alice_elsewhere) is None
    tampered = bytearray(value)
    tampered[-1] ^= 1
    raw.set(cache.key(alice), bytes(tampered))
    assert cache.get(alice) is None
    assert cache.stats["undecryptable"] == 3


def test_without_the_servers_key_the_callers_token_does_not_open_the_value(
    store: Store, raw: redis.Redis
) -> None:
    ours, theirs = l2(store), l2(store, key=secrets.token_bytes(32))
    alice = Lookup.of("token-of-alice", SCOPES)
    ours.put(alice, good_for_an_hour())
    raw.set(theirs.key(alice), raw.get(ours.key(alice)) or b"")
    assert theirs.get(alice) is None


def test_entries_live_until_the_token_is_the_margin_from_expiry(
    store: Store, raw: redis.Redis
) -> None:
    cache = l2(store)
    lookup = Lookup.of("token", SCOPES)
    cache.put(lookup, good_for_an_hour())
    ttl = raw.pttl(cache.key(lookup))
    assert (3600 - MARGIN_SECONDS - 5) * 1000 < ttl <= (3600 - MARGIN_SECONDS) * 1000
    soon = Lookup.of("token-nearly-expired", SCOPES)
    cache.put(soon, CachedToken("x", time.time() + MARGIN_SECONDS - 1))
    assert raw.exists(cache.key(soon)) == 0


# --- the order of lookups ------------------------------------------------------------------------


@pytest.fixture
def entra_clean(entra: Emulator) -> Iterator[Emulator]:
    requests.post(f"{entra.url}/_emulator/reset", timeout=5)
    yield entra
    requests.post(f"{entra.url}/_emulator/reset", timeout=5)


@pytest.fixture
def instance_settings(
    tenant: Tenant, material: Material, entra_clean: Emulator, valkey: ValkeyServer, prefix: str
) -> Settings:
    return store_settings(settings(tenant, material, entra_clean), valkey.url, prefix)


def instance(config: Settings) -> tuple[DownstreamTokens, Counted]:
    """One API instance's On-Behalf-Of tokens, over a store of its own (one per process)."""
    built = build_store(config)
    assert built is not None
    counted = Counted(built)
    return DownstreamTokens(config, store=counted), counted  # type: ignore[arg-type]


def test_l1_then_l2_then_one_exchange_written_to_both(
    instance_settings: Settings, entra_clean: Emulator, tenant: Tenant
) -> None:
    incoming = user_token(entra_clean, tenant)
    first, first_store = instance(instance_settings)

    token = first.for_user(incoming)  # both levels miss: lock, look again, exchange, write, unlock
    assert first_store.take() == ["GET", "SET NX", "GET", "SET", "SCRIPT"]
    assert first.for_user(incoming) == token  # L1 hit: no store call
    assert first_store.take() == []

    second, second_store = instance(instance_settings)  # a cold instance
    assert second.for_user(incoming) == token  # L2 hit: one GET, copied into L1
    assert second_store.take() == ["GET"]
    assert second.for_user(incoming) == token
    assert second_store.take() == []

    assert (first.obo_exchanges, second.obo_exchanges) == (1, 0)
    assert len(token_requests(entra_clean, OBO)) == 1
    assert second.shared_stats["hits"] == 1


def test_a_value_that_does_not_open_is_a_miss_and_is_written_over(
    instance_settings: Settings,
    entra_clean: Emulator,
    tenant: Tenant,
    store: Store,
    raw: redis.Redis,
) -> None:
    incoming = user_token(entra_clean, tenant)
    tokens, _ = instance(instance_settings)
    key = l2(store).key(Lookup.of(incoming, tokens.user_scopes))
    raw.set(key, b"\x01" + secrets.token_bytes(200))
    token = tokens.for_user(incoming)
    assert tokens.obo_exchanges == 1
    assert tokens.shared_stats["undecryptable"] >= 1
    cold, _ = instance(instance_settings)
    assert cold.for_user(incoming) == token
    assert cold.obo_exchanges == 0


def test_a_refused_token_leaves_both_levels_and_every_instance_gets_the_new_one(
    instance_settings: Settings, entra_clean: Emulator, tenant: Tenant
) -> None:
    incoming = user_token(entra_clean, tenant)
    one, _ = instance(instance_settings)
    two, _ = instance(instance_settings)
    refused = one.for_user(incoming)
    assert two.for_user(incoming) == refused  # from L2

    renewed = one.for_user(incoming, stale=refused)  # Dataverse answered 401 with `refused`
    assert renewed != refused
    assert two.for_user(incoming, stale=refused) == renewed  # its 401: the new token, from L2
    assert one.obo_exchanges + two.obo_exchanges == 2
    # A 401 for a token already replaced drops nothing.
    assert one.for_user(incoming, stale=refused) == renewed
    assert one.obo_exchanges + two.obo_exchanges == 2


def test_concurrent_first_calls_on_four_instances_make_one_exchange(
    instance_settings: Settings, entra_clean: Emulator, tenant: Tenant
) -> None:
    incoming = user_token(entra_clean, tenant)
    instances = [instance(instance_settings)[0] for _ in range(4)]
    start = threading.Barrier(20)

    def call(n: int) -> str:
        start.wait()
        return instances[n % 4].for_user(incoming)

    with ThreadPoolExecutor(20) as pool:
        assert len(set(pool.map(call, range(20)))) == 1
    assert sum(i.obo_exchanges for i in instances) == 1
    assert len(token_requests(entra_clean, OBO)) == 1


def test_without_a_store_each_instance_exchanges_for_itself(
    tenant: Tenant, material: Material, entra_clean: Emulator
) -> None:
    incoming = user_token(entra_clean, tenant)
    config = settings(tenant, material, entra_clean)
    instances = [DownstreamTokens(config) for _ in range(3)]
    assert len({i.for_user(incoming) for i in instances}) == 3
    assert all(i.shared_stats == {} for i in instances)


def test_a_store_that_is_down_is_as_no_store(
    tenant: Tenant, material: Material, entra_clean: Emulator, prefix: str
) -> None:
    down = store_settings(
        settings(tenant, material, entra_clean), f"redis://127.0.0.1:{free_port()}", prefix
    )
    incoming = user_token(entra_clean, tenant)
    one, _ = instance(down)
    two, _ = instance(down)
    one.for_user(incoming)
    two.for_user(incoming)
    assert one.obo_exchanges == two.obo_exchanges == 1
    assert one.shared_stats["fallbacks"] == 1


# --- the lock: one exchange across instances -----------------------------------------------------


def test_a_waiter_gets_the_token_the_holder_writes(store: Store, raw: redis.Redis) -> None:
    holder, waiter = l2(store), l2(store)
    lookup = Lookup.of("token", SCOPES)
    raw.set(holder.key(lookup) + ":lock", b"holder", px=5000)
    threading.Timer(0.2, holder.put, (lookup, good_for_an_hour("the-holders"))).start()
    with waiter.turn(lookup) as written:
        assert written is not None
        assert written.access_token == "the-holders"
    assert waiter.stats["waits"] == 1
    assert waiter.stats["waited_hits"] == 1
    assert raw.get(holder.key(lookup) + ":lock") == b"holder"  # not ours to release


def test_a_waiter_takes_over_when_the_holder_lets_go_without_a_token(
    store: Store, raw: redis.Redis
) -> None:
    cache = l2(store, wait=30.0)
    lookup = Lookup.of("token", SCOPES)
    lock = cache.key(lookup) + ":lock"
    raw.set(lock, b"holder", px=30_000)
    threading.Timer(0.2, raw.delete, (lock,)).start()  # its exchange failed
    with cache.turn(lookup) as written:
        assert written is None  # ours to exchange, long before the wait runs out
        assert raw.get(lock) not in (None, b"holder")
    assert raw.exists(lock) == 0  # released
    assert cache.stats.get("fallbacks", 0) == 0


def test_after_the_wait_a_waiter_exchanges_on_its_own(store: Store, raw: redis.Redis) -> None:
    cache = l2(store, wait=0.3)
    lookup = Lookup.of("token", SCOPES)
    raw.set(cache.key(lookup) + ":lock", b"stuck", px=60_000)
    with cache.turn(lookup) as written:
        assert written is None
    assert cache.stats["fallbacks"] == 1
    assert raw.get(cache.key(lookup) + ":lock") == b"stuck"


def test_a_lock_that_is_no_longer_ours_is_not_released(store: Store, raw: redis.Redis) -> None:
    cache = l2(store)
    lookup = Lookup.of("token", SCOPES)
    lock = cache.key(lookup) + ":lock"
    with cache.turn(lookup) as written:
        assert written is None
        raw.set(lock, b"next-holder", px=5000)  # ours expired and another instance took it
    assert raw.get(lock) == b"next-holder"


# --- the setting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "10.5", "nan", "inf", "soon"])
def test_the_wait_is_0_to_10_seconds_and_a_bad_one_names_the_setting(value: str) -> None:
    with pytest.raises(SettingsError, match="OBO_SHARED_WAIT_SECONDS"):
        Settings.from_env({**GOOD, "OBO_SHARED_WAIT_SECONDS": value})
    assert Settings.from_env({**GOOD, "OBO_SHARED_WAIT_SECONDS": "0"}).obo_shared_wait_seconds == 0
    assert Settings.from_env(GOOD).obo_shared_wait_seconds == 2.0


@pytest.mark.parametrize("size", [0, 1, 32, 1500])
def test_the_value_key_derivation_is_rfc_5869_hkdf(size: int) -> None:
    """`hkdf_sha256` gives exactly the bytes of cryptography's HKDF (it exists for speed)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from shared.downstream.shared_cache import hkdf_sha256

    salt, ikm, info = os.urandom(32), os.urandom(size), b"central-api obo-cache value v1"
    reference = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)
    assert hkdf_sha256(salt, ikm, info) == reference
