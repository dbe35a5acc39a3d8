"""Issue 11, item 5: per-subscription rate limits, end to end through the dev stack's API host.

Each test starts the API afresh (`fresh`) with a tiny limit on `demo-portal`, the key
`api.call` sends, and no shared store: the in-memory counter of this one instance. The shared
counter across real separate instances is tests/scale/test_rate_limits_instances.py; the
counters themselves, in process, tests/shared/test_rate_limits.py and
tests/store/test_rate_limits_store.py.

What is checked here: N+k calls in one window give exactly N answers and k 429 `rate_limited`
with `Retry-After`; refused calls reach neither Entra nor Dataverse; the limit is checked right
after the subscription key, so an invalid token over the limit is a 429 and not a 401, and a
request with a bad token under the limit counts; requests without a valid key do not count; a
limit on one subscription leaves the others alone; after `Retry-After` seconds calls go through.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
import requests

from tests.api.conftest import Api
from tests.faults.conftest import Restart, assert_error, retry_after

CUSTOMERS = "/api/customers?pageSize=1"


def own_prefix() -> str:
    """A key prefix of the test's own: the session's shared store keeps counts across tests (and
    restarts of the in-process runtime), as it does across instances; a new prefix is a new
    store as far as the counts go."""
    return f"test-{uuid.uuid4().hex[:12]}"


def limit(calls: int, period: int, subscription: str = "demo-portal") -> str:
    return json.dumps({subscription: {"calls": calls, "period": period}})


def refused_as_rate_limited(response: requests.Response, period: int) -> None:
    body = assert_error(response, 429, "rate_limited")
    assert 1 <= retry_after(response) <= period
    assert body["message"] == (
        f"Too many requests. This subscription may make 3 calls every {period} seconds; retry "
        "after the time in Retry-After."
    )


def test_n_plus_k_calls_in_one_window_give_n_answers_and_k_refusals_that_go_nowhere(
    faults: Api, fresh: Restart, caplog: pytest.LogCaptureFixture
) -> None:
    fresh(REDIS_KEY_PREFIX=own_prefix(), RATE_LIMITS=limit(3, 60))
    admitted = [faults.call("GET", CUSTOMERS, user="alice") for _ in range(3)]
    assert [r.status_code for r in admitted] == [200, 200, 200]
    entra_mark, dataverse_mark = faults.marks()
    caplog.set_level(logging.INFO, logger="central_api")

    refused = [faults.call("GET", CUSTOMERS, user="alice") for _ in range(4)]
    for response in refused:
        refused_as_rate_limited(response, 60)
        assert faults.subscription_key not in response.text
    # Nothing downstream: no signing keys, no token exchange, no Dataverse call.
    assert faults.entra_requests(entra_mark) == []
    assert faults.dataverse_requests(dataverse_mark) == []
    # Each refusal is logged with the normal request record, naming the subscription only.
    records = {getattr(r, "correlation_id", None): r for r in caplog.records}
    for response in refused:
        record = records[response.headers["x-correlation-id"]]
        assert (record.status, record.code) == (429, "rate_limited")
        assert record.levelno == logging.WARNING
        assert record.subscription == "demo-portal"
        # The stack runs with the shared store, so the count is every instance's together.
        assert record.reason == "subscription over 3 calls per 60 s (all instances)"
        assert not hasattr(record, "oid")  # the token was never looked at
        assert faults.subscription_key not in repr(vars(record))


def test_the_limit_comes_before_the_token_and_a_bad_token_counts(
    faults: Api, fresh: Restart
) -> None:
    fresh(REDIS_KEY_PREFIX=own_prefix(), RATE_LIMITS=limit(3, 60))
    bad = "not-a-token"
    assert_error(faults.call("GET", CUSTOMERS, token=bad), 401, "invalid_token")  # counts: 1
    assert_error(faults.call("GET", CUSTOMERS), 401, "invalid_token")  # no token, counts: 2
    assert faults.call("GET", CUSTOMERS, user="bob").status_code == 200  # 3
    # Over the limit, an invalid token is not even looked at: 429, not 401.
    refused_as_rate_limited(faults.call("GET", CUSTOMERS, token=bad), 60)
    refused_as_rate_limited(faults.call("GET", CUSTOMERS, user="bob"), 60)


def test_requests_without_a_valid_key_do_not_count(faults: Api, fresh: Restart) -> None:
    fresh(REDIS_KEY_PREFIX=own_prefix(), RATE_LIMITS=limit(3, 60))
    for _ in range(5):
        assert_error(faults.call("GET", CUSTOMERS, key=None), 401, "subscription_key_missing")
        assert_error(faults.call("GET", CUSTOMERS, key="x" * 32), 401, "subscription_key_invalid")
    answers = [faults.call("GET", CUSTOMERS, user="alice").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]


def test_each_subscription_has_its_own_limit(faults: Api, fresh: Restart) -> None:
    fresh(REDIS_KEY_PREFIX=own_prefix(), RATE_LIMITS=limit(3, 60))
    dealer = faults.stack.material.subscription_keys["demo-dealer"][0]
    for _ in range(3):
        assert faults.call("GET", CUSTOMERS, user="alice").status_code == 200
    assert faults.call("GET", CUSTOMERS, user="alice").status_code == 429
    # demo-dealer is not limited here, and the portal's full window costs it nothing.
    for _ in range(5):
        assert faults.call("GET", CUSTOMERS, user="alice", key=dealer).status_code == 200
    # Both keys of a subscription share its one limit.
    secondary = faults.stack.material.subscription_keys["demo-portal"][1]
    assert faults.call("GET", CUSTOMERS, user="alice", key=secondary).status_code == 429


def test_after_retry_after_seconds_the_next_window_admits_again(
    faults: Api, fresh: Restart
) -> None:
    fresh(REDIS_KEY_PREFIX=own_prefix(), RATE_LIMITS=limit(3, 2))
    for _ in range(3):
        assert faults.call("GET", CUSTOMERS, user="alice").status_code == 200
    response = faults.call("GET", CUSTOMERS, user="alice")
    refused_as_rate_limited(response, 2)
    time.sleep(retry_after(response))  # what a well-behaved client does
    assert faults.call("GET", CUSTOMERS, user="alice").status_code == 200


def test_the_dev_stack_limits_demo_dealer_and_not_the_key_everyone_uses(faults: Api) -> None:
    settings = faults.stack.settings
    assert json.loads(settings["RATE_LIMITS"]) == {"demo-dealer": {"calls": 300, "period": 60}}
    keys = faults.stack.material.subscription_keys
    assert settings["DEVSTACK_SUBSCRIPTION_KEY"] in keys["demo-portal"]
