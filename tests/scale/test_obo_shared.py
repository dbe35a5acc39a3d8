"""One On-Behalf-Of exchange per user token across instances (issue 11, items 2, 3 and 7).

Real API instances, each its own OS process (`instances`), against the session's emulators and
a real valkey-server: the stack's (`valkey`), or one of a test's own where the test stops it.
Exchanges are counted where they happen, in the Entra emulator's request log.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from devstack.instances import Instance
from devstack.valkey import ValkeyServer
from tests.api.conftest import Api
from tests.faults.conftest import mint_user
from tests.faults.test_review_stale_tokens import Rollover
from tests.scale.conftest import StartInstances

OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CUSTOMERS = "/api/customers"

# A JWT begins with its base64url-encoded header, `{"` ...: "eyJ" and then at least a dozen
# more base64url characters. (Bare "eyJ" occurs by chance in random bytes: 1 in ~16 million.)
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{16}")


def exchanges(api: Api, since: int, user: str | None = None) -> int:
    """On-Behalf-Of exchanges Entra saw since `since` (for `user` only, if given)."""
    oid = None if user is None else api.stack.tenant.user(user).oid
    return sum(
        1
        for e in api.entra_requests(since)
        if e["method"] == "POST"
        and str(e["path"]).endswith("/token")
        and e["grant_type"] == OBO_GRANT
        and (oid is None or (e.get("caller") or {}).get("oid") == oid)
    )


def get(http: requests.Session, api: Api, instance: Instance, token: str) -> requests.Response:
    return http.get(
        f"{instance.url}{CUSTOMERS}",
        params={"pageSize": 1},
        headers={
            "Ocp-Apim-Subscription-Key": api.subscription_key,
            "Authorization": f"Bearer {token}",
        },
        timeout=60,
    )


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture
def rollover(api: Api) -> Iterator[Rollover]:
    keys = Rollover(api)
    yield keys
    keys.restore()


def test_one_token_round_robin_over_four_instances_is_one_exchange(
    api: Api, instances: StartInstances, valkey: ValkeyServer, http: requests.Session
) -> None:
    started = instances(4, REDIS_URL=valkey.url)
    token = mint_user(api, "alice")
    mark, _ = api.marks()
    for n in range(40):
        answer = get(http, api, started[n % 4], token)
        assert answer.status_code == 200, answer.text
    assert exchanges(api, mark) == 1


def test_twenty_concurrent_first_requests_on_four_cold_instances_are_one_exchange(
    api: Api, instances: StartInstances, valkey: ValkeyServer
) -> None:
    # Four cold processes on a small, busy test machine: a generous wait, so that the test is
    # about the lock and not about how long the holder's exchange takes here.
    started = instances(4, REDIS_URL=valkey.url, OBO_SHARED_WAIT_SECONDS="10")
    token = mint_user(api, "bob")
    mark, _ = api.marks()
    together = threading.Barrier(20)

    def first(n: int) -> int:
        with requests.Session() as session:
            session.trust_env = False
            together.wait()
            return get(session, api, started[n % 4], token).status_code

    with ThreadPoolExecutor(20) as pool:
        assert list(pool.map(first, range(20))) == [200] * 20
    assert exchanges(api, mark) == 1


def test_the_store_holds_no_token_oid_subscription_key_or_name(
    api: Api, instances: StartInstances, valkey: ValkeyServer, http: requests.Session
) -> None:
    url = valkey.url
    started = instances(2, REDIS_URL=url)
    for user in ("alice", "bob"):
        for instance in started:
            assert get(http, api, instance, mint_user(api, user)).status_code == 200

    secrets = [api.subscription_key.encode()]
    for user in api.stack.tenant.users.values():
        secrets += [s.encode() for s in (user.oid, user.oid.replace("-", ""), user.display_name)]
        secrets += [user.upn.encode(), bytes.fromhex(user.oid.replace("-", ""))]
    client = redis.Redis.from_url(url)
    try:
        entries = dict(everything(client))
    finally:
        client.close()
    assert any(b":obo:" in key for key in entries)  # the test saw the cache, not an empty store
    for key, values in entries.items():
        for blob in [key, *values]:
            assert not JWT.search(blob), key
            assert not [s for s in secrets if s in blob], key


def everything(client: redis.Redis) -> Iterator[tuple[bytes, list[bytes]]]:
    """Every key in the store and what it holds, whatever its type."""
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"hash":
            values = [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == b"list":
            values = list(client.lrange(key, 0, -1))
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            values = [client.dump(key) or b""]
        yield key, values


def test_a_value_copied_to_another_users_key_is_a_miss(
    api: Api, instances: StartInstances, valkey: ValkeyServer, http: requests.Session
) -> None:
    url = valkey.url
    one, two = instances(2, REDIS_URL=url)
    alice, bob = mint_user(api, "alice"), mint_user(api, "bob")
    client = redis.Redis.from_url(url)
    try:
        before = set(client.scan_iter(match="*:obo:*"))
        assert get(http, api, one, alice).status_code == 200
        (alices,) = set(client.scan_iter(match="*:obo:*")) - before - locks(client)
        assert get(http, api, one, bob).status_code == 200
        (bobs,) = set(client.scan_iter(match="*:obo:*")) - before - locks(client) - {alices}
        client.set(bobs, client.get(alices) or b"", keepttl=True)  # Alice's entry, on Bob's key

        mark, dataverse = api.marks()
        answer = get(http, api, two, bob)  # a cold instance: L1 empty, L2 does not open
        assert answer.status_code == 200, answer.text
        assert exchanges(api, mark) == 1  # Bob's own new token, not Alice's
        seen = {(r.get("caller") or {}).get("oid") for r in api.dataverse_requests(dataverse)}
        assert seen == {api.stack.tenant.user("bob").oid}
    finally:
        client.close()


def locks(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(match="*:obo:*:lock"))


def test_a_store_killed_under_load_costs_no_request_and_comes_back(
    api: Api, instances: StartInstances, tmp_path: Path
) -> None:
    with ValkeyServer(tmp_path / "valkey") as server:
        started = instances(4, REDIS_URL=server.url, REDIS_BREAKER_SECONDS="1")
        failures: list[Any] = []
        stop = threading.Event()

        def load(n: int) -> None:
            with requests.Session() as session:
                session.trust_env = False
                while not stop.is_set():
                    token = mint_user(api, "bob")  # a new token each time: L1 misses
                    for instance in started:
                        answer = get(session, api, instance, token)
                        if answer.status_code != 200:
                            failures.append((answer.status_code, answer.text[:200]))

        pool = ThreadPoolExecutor(4)
        running = [pool.submit(load, n) for n in range(4)]
        try:
            stop.wait(2)
            server.stop()
            mark, _ = api.marks()
            with requests.Session() as http:
                http.trust_env = False
                token = mint_user(api, "alice")
                answers = [get(http, api, instance, token).status_code for instance in started]
            stop.wait(2)
            server.start()
            stop.wait(2)
        finally:
            stop.set()
            pool.shutdown()
        for future in running:
            future.result()
        assert answers == [200] * 4
        assert failures == []
        # Each instance exchanged on its own: nobody waited for a store that is gone.
        assert exchanges(api, mark, "alice") == 4

        with requests.Session() as http:  # back: one exchange per token again
            http.trust_env = False
            for _ in range(20):
                token = mint_user(api, "bob")
                mark, _ = api.marks()
                for instance in started:
                    assert get(http, api, instance, token).status_code == 200
                if exchanges(api, mark, "bob") == 1:
                    break
            else:
                pytest.fail("the shared cache never came back")


def test_a_token_dataverse_refuses_leaves_the_shared_cache_too(
    api: Api,
    instances: StartInstances,
    valkey: ValkeyServer,
    rollover: Rollover,
    http: requests.Session,
) -> None:
    """Issue 10 item 7 across instances: Dataverse's 401 drops the token from L2 as well, or
    every cold instance would fetch the refused token from the store and fail with it."""
    one, two, three = instances(3, REDIS_URL=valkey.url)
    token = mint_user(api, "alice")  # signed with the tenant's own key, which stays trusted
    signed_by = rollover.rotate()  # the Dataverse token exchanged next is signed by it
    assert get(http, api, one, token).status_code == 200
    rollover.rotate()
    rollover.retire(signed_by)  # Dataverse no longer trusts the cached token
    mark, _ = api.marks()

    answer = get(http, api, two, token)  # cold: L2 hit, 401, dropped from both levels, renewed
    assert answer.status_code == 200, answer.text
    assert exchanges(api, mark) == 1
    answer = get(http, api, three, token)  # cold: the renewed token, from L2
    assert answer.status_code == 200, answer.text
    assert exchanges(api, mark) == 1
