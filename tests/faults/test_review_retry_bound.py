"""Outside review, item 2 (part): the bound on waiting for Retry-After (docs/security.md, "2. One
caller starving every other").

A throttled Dataverse call used to sleep for Dataverse's `Retry-After` inside a worker thread,
for up to the request's 25 s budget: one caller over their own Dataverse limit could hold every
worker. Now a request waits for Retry-After at most DATAVERSE_MAX_RETRY_WAIT_SECONDS (default 2,
0: never) in all; a longer wait is answered at once with 503 `backend_throttled` and Dataverse's
Retry-After, without sleeping first, and nothing is sent again.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests

from shared.settings import Settings, SettingsError
from tests.api.conftest import Api
from tests.faults.conftest import Restart, add_fault, assert_error, retry_after
from tests.shared.test_settings import GOOD

CONTACTS = "/api/data/v9.2/contacts"
LIST = "/api/customers?pageSize=3"


def call(api: Api) -> requests.Response:
    """Alice's list, with a correlation id of its own to find it in the Dataverse log."""
    headers = {"x-correlation-id": f"bound-{uuid.uuid4()}"}
    return api.call("GET", LIST, user="alice", headers=headers)


def sent(api: Api, response: requests.Response, since: int) -> list[dict[str, Any]]:
    cid = response.headers["x-correlation-id"]
    return [r for r in api.dataverse_requests(since) if r["correlation_id"] == cid]


def throttle(api: Api, retry_after: str, count: int | None = None) -> int:
    body = {"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit"}}
    return add_fault(api, "dataverse", path=CONTACTS, method="GET", status=429, count=count,
                     headers={"Retry-After": retry_after}, body=body)  # fmt: skip


def timed(api: Api) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call(api)
    return response, time.monotonic() - started


def test_a_429_asking_for_10_s_is_503_at_once_without_a_retry(fresh: Restart, faults: Api) -> None:
    fresh()
    assert call(faults).status_code == 200  # the OBO exchange is done: only the 429 is timed
    fault = throttle(faults, "10")
    mark = faults.marks()[1]

    answer, took = timed(faults)
    assert_error(answer, 503, "backend_throttled")
    assert retry_after(answer) == 10  # Dataverse's own wait, passed on to the client
    assert took < 5, f"{took:.1f} s: the API slept for Retry-After"  # 10 s or more before
    assert [(a["status"], a["fault"]) for a in sent(faults, answer, mark)] == [(429, fault)]


def test_the_bound_holds_for_the_whole_request_not_each_wait(fresh: Restart, faults: Api) -> None:
    """1.5 s fits the 2 s bound once; a second 1.5 s would make 3 s, so it is not waited."""
    fresh()
    assert call(faults).status_code == 200
    fault = throttle(faults, "1.5", count=2)
    mark = faults.marks()[1]

    answer, took = timed(faults)
    assert_error(answer, 503, "backend_throttled")
    assert retry_after(answer) == 2  # 1.5 s, rounded to the whole seconds HTTP allows
    assert 1.5 <= took < 5
    attempts = sent(faults, answer, mark)
    assert [(a["status"], a["fault"]) for a in attempts] == [(429, fault), (429, fault)]
    assert attempts[1]["time"] - attempts[0]["time"] >= 1.5


def test_a_larger_bound_is_honoured(fresh: Restart, faults: Api) -> None:
    fresh(DATAVERSE_MAX_RETRY_WAIT_SECONDS="3")
    assert call(faults).status_code == 200
    fault = throttle(faults, "1.5", count=2)
    mark = faults.marks()[1]

    answer = call(faults)
    assert answer.status_code == 200, answer.text
    statuses = [(a["status"], a["fault"]) for a in sent(faults, answer, mark)]
    assert statuses == [(429, fault), (429, fault), (200, None)]


@pytest.mark.parametrize("value", ["-1", "two", ""])
def test_the_setting_is_checked_and_defaults_to_2(value: str) -> None:
    env = {**GOOD, "DATAVERSE_MAX_RETRY_WAIT_SECONDS": value}
    if not value:
        assert Settings.from_env(env).dataverse_max_retry_wait_seconds == 2.0
        return
    with pytest.raises(SettingsError, match="DATAVERSE_MAX_RETRY_WAIT_SECONDS") as caught:
        Settings.from_env(env)
    assert value not in str(caught.value)
