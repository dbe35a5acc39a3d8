"""Issue 11, items 5 and 7: per-subscription rate limits across real, separate API instances.

Three API host processes (`instances`) with a tiny limit on `demo-portal`, the key every call
here sends:

- with the shared store, N+k calls in one window, all at once and spread over the instances,
  give exactly N answers and k 429 `rate_limited` with `Retry-After`, and only the N reach
  Dataverse (no tolerance: one atomic script counts every call);
- without a store each instance counts alone: N per instance, 3 x N in all (the documented
  per-instance behaviour);
- when the store dies the instances fall back to counting alone, with no error, and count in
  the store again once it is back.

Each test has a key prefix of its own in the session's `valkey`, or a server of its own when it
stops one; the fixture stops every process it started however the test ends.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from devstack.instances import Instance
from devstack.valkey import ValkeyServer
from tests.api.conftest import Api
from tests.scale.conftest import StartInstances

PATH = "/api/customers"
CALLS = 9
PERIOD = 60  # long enough that every call of a test falls in one window


def limits(calls: int = CALLS, period: int = PERIOD) -> str:
    return json.dumps({"demo-portal": {"calls": calls, "period": period}})


def call(api: Api, instance: Instance, token: str, cid: str) -> requests.Response:
    with requests.Session() as http:
        http.trust_env = False
        return http.get(
            f"{instance.url}{PATH}",
            params={"pageSize": 1},
            headers={
                "Ocp-Apim-Subscription-Key": api.subscription_key,
                "Authorization": f"Bearer {token}",
                "x-correlation-id": cid,
            },
            timeout=60,
        )


def round_robin(
    api: Api, started: list[Instance], count: int
) -> list[tuple[str, requests.Response]]:
    """`count` calls, one after another, instance 1, 2, 3, 1, ..."""
    token = api.user_token("alice")
    answers = []
    for n in range(count):
        cid = f"rate-{uuid.uuid4()}"
        answers.append((cid, call(api, started[n % len(started)], token, cid)))
    return answers


def all_at_once(
    api: Api, started: list[Instance], count: int
) -> list[tuple[str, requests.Response]]:
    """`count` calls released together, spread evenly over the instances."""
    token = api.user_token("alice")
    gate = threading.Barrier(count)

    def send(n: int) -> tuple[str, requests.Response]:
        cid = f"rate-{uuid.uuid4()}"
        gate.wait(timeout=30)
        return cid, call(api, started[n % len(started)], token, cid)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def split(
    answers: list[tuple[str, requests.Response]],
) -> tuple[set[str], list[requests.Response]]:
    """The admitted calls' correlation ids, and the refused answers (checked as the contract
    says). Anything else fails the test: no call may error."""
    admitted, refused = set(), []
    for cid, response in answers:
        if response.status_code == 429:
            body = response.json()
            assert body["code"] == "rate_limited", body
            assert 1 <= int(response.headers["Retry-After"]) <= PERIOD
            assert api_key_absent(response)
            refused.append(response)
        else:
            assert response.status_code == 200, response.text
            admitted.add(cid)
    return admitted, refused


def api_key_absent(response: requests.Response) -> bool:
    sent = response.request.headers["Ocp-Apim-Subscription-Key"]
    return sent not in response.text and all(sent not in v for v in response.headers.values())


def reached_dataverse(api: Api, since: int) -> set[str]:
    return {e["correlation_id"] for e in api.dataverse_requests(since) if e["correlation_id"]}


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A server of this test's own, which it may stop and start."""
    with ValkeyServer(tmp_path / "valkey") as server:
        yield server


def test_n_plus_k_calls_across_three_instances_give_exactly_n_answers(
    api: Api, instances: StartInstances, valkey: ValkeyServer
) -> None:
    prefix = f"rate-{uuid.uuid4().hex[:12]}"
    started = instances(3, REDIS_URL=valkey.url, REDIS_KEY_PREFIX=prefix, RATE_LIMITS=limits())
    api.user_token("alice")  # acquired before the mark
    _, mark = api.marks()

    answers = all_at_once(api, started, CALLS + 6)
    admitted, refused = split(answers)
    assert len(admitted) == CALLS
    assert len(refused) == 6
    # Only the admitted calls reached Dataverse; a refused one cost nothing downstream.
    assert reached_dataverse(api, mark) == admitted
    with redis.Redis.from_url(valkey.url) as raw:
        assert raw.get(f"{prefix}:ratelimit:demo-portal") == str(CALLS).encode()

    # Later calls in the same window are refused by every instance.
    _, more = split(round_robin(api, started, 3))
    assert len(more) == 3


def test_without_a_store_each_instance_counts_alone(api: Api, instances: StartInstances) -> None:
    started = instances(3, REDIS_URL=None, RATE_LIMITS=limits(calls=3))
    admitted, refused = split(round_robin(api, started, 3 * 4))
    assert len(admitted) == 3 * 3  # N per instance: N x 3 in all
    assert len(refused) == 3


def test_the_store_dying_falls_back_to_per_instance_limits_without_errors(
    api: Api, instances: StartInstances, own_valkey: ValkeyServer
) -> None:
    started = instances(
        3,
        REDIS_URL=own_valkey.url,
        REDIS_BREAKER_SECONDS="1",
        RATE_LIMITS=limits(calls=3),
    )
    # Shared: two calls, counted in the store.
    admitted, refused = split(round_robin(api, started, 2))
    assert (len(admitted), refused) == (2, [])

    own_valkey.stop()
    # Per instance: each instance admits 3 of its own, then refuses; nothing fails.
    admitted, refused = split(round_robin(api, started, 3 * 4))
    assert len(admitted) == 3 * 3
    assert len(refused) == 3

    own_valkey.start()  # empty: a new window in the store
    time.sleep(1.5)  # past the store's breaker: the next call probes it again
    admitted, refused = split(round_robin(api, started, 3 + 3))
    assert len(admitted) == 3  # shared again: 3 in all, not 3 per instance
    assert len(refused) == 3
    with redis.Redis.from_url(own_valkey.url) as raw:
        assert raw.get("capi:ratelimit:demo-portal") == b"3"
