"""R8-R9: Dataverse throttling, failing, lying and hanging, through the API host.

Faults go on the Dataverse Web API paths; the emulator's request log (by correlation id) shows
exactly what the API sent: the retry after a 429 whose Retry-After fits both the bound on
waiting (DATAVERSE_MAX_RETRY_WAIT_SECONDS) and the request's budget, and no retry otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.api.conftest import Api
from tests.faults.conftest import (
    Restart,
    add_fault,
    assert_error,
    retry_after,
    settle,
)

CONTACTS = "/api/data/v9.2/contacts"
LIST = "/api/customers?pageSize=3"
CANARY = "upstream-canary-9b7e"


def call(api: Api, method: str = "GET", path: str = LIST, **kwargs: Any) -> requests.Response:
    """Alice's call with a correlation id of its own, to find it in the Dataverse log."""
    headers = {"x-correlation-id": f"faults-{uuid.uuid4()}"}
    return api.call(method, path, user="alice", headers=headers, **kwargs)


def sent(api: Api, response: requests.Response, since: int) -> list[dict[str, Any]]:
    """What Dataverse received for this response's request."""
    cid = response.headers["x-correlation-id"]
    return [r for r in api.dataverse_requests(since) if r["correlation_id"] == cid]


def throttle_body(code: str = "0x80072322") -> dict[str, Any]:
    return {"error": {"code": code, "message": f"Number of requests exceeded the limit {CANARY}"}}


def assert_nothing_leaked(response: requests.Response) -> None:
    assert CANARY not in response.text
    assert all(CANARY not in f"{k}: {v}" for k, v in response.headers.items())
    assert "0x8007" not in response.text


# --- R8: 429 ------------------------------------------------------------------------------------


def test_r8_a_429_that_fits_the_bound_and_the_budget_is_waited_out_and_retried(
    faults: Api,
) -> None:
    call(faults)  # OBO cached: the log below holds only the two Dataverse attempts
    fault_id = add_fault(
        faults, "dataverse", path=CONTACTS, method="GET", status=429, count=1,
        headers={"Retry-After": "0.3"}, body=throttle_body(),
    )  # fmt: skip
    mark = faults.marks()[1]

    answer = call(faults)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["items"]) == 3
    attempts = sent(faults, answer, mark)
    assert [(a["status"], a["fault"]) for a in attempts] == [(429, fault_id), (200, None)]
    assert attempts[1]["time"] - attempts[0]["time"] >= 0.3  # Retry-After honoured
    assert attempts[1]["caller"]["oid"] == faults.stack.tenant.user("alice").oid


@pytest.mark.parametrize(
    ("settings", "wait"),
    [
        ({}, 3),
        ({"DATAVERSE_MAX_RETRY_WAIT_SECONDS": "0"}, 1),
        ({"DATAVERSE_MAX_RETRY_WAIT_SECONDS": "60"}, 60),
        ({"REQUEST_BUDGET_SECONDS": "1"}, 2),
    ],
    ids=[
        "longer-than-the-default-bound",
        "bound-zero-never-waits",
        "longer-than-the-default-budget",
        "longer-than-a-small-budget",
    ],
)
def test_r8_a_429_beyond_the_wait_bound_or_the_budget_is_503_with_retry_after(
    fresh: Restart, faults: Api, settings: dict[str, str], wait: int
) -> None:
    """DATAVERSE_MAX_RETRY_WAIT_SECONDS (default 2) bounds the waits, the request's budget
    too; a wait beyond either is answered at once, with Dataverse's Retry-After."""
    fresh(**settings)
    call(faults)
    add_fault(
        faults, "dataverse", path=CONTACTS, method="GET", status=429, retry_after=wait,
        body=throttle_body(),
    )  # fmt: skip
    mark = faults.marks()[1]

    answer = call(faults)
    assert_error(answer, 503, "backend_throttled")
    assert retry_after(answer) == wait
    assert_nothing_leaked(answer)
    assert [a["status"] for a in sent(faults, answer, mark)] == [429]  # not retried


def test_r8_429s_that_keep_coming_end_after_three_attempts(faults: Api) -> None:
    call(faults)
    add_fault(
        faults, "dataverse", path=CONTACTS, method="GET", status=429,
        headers={"Retry-After": "0.1"}, body=throttle_body(),
    )  # fmt: skip
    mark = faults.marks()[1]
    answer = call(faults)
    assert_error(answer, 503, "backend_throttled")
    assert retry_after(answer) == 1
    assert [a["status"] for a in sent(faults, answer, mark)] == [429, 429, 429]


@pytest.fixture
def limits(faults: Api) -> Iterator[Api]:
    yield faults
    faults.dataverse_control("DELETE", "limits")


def test_r8_the_emulators_own_service_protection_limit(limits: Api) -> None:
    call(limits)  # at least one request of Alice's in the window
    limits.dataverse_control("PUT", "limits", json={"requests": 1})
    mark = limits.marks()[1]

    answer = call(limits)
    assert_error(answer, 503, "backend_throttled")
    # The window is 300 s and Alice's latest request was just now.
    assert 290 <= retry_after(answer) <= 300
    assert [(a["status"], a["fault"]) for a in sent(limits, answer, mark)] == [(429, None)]


# --- R9: 5xx, reset, bad JSON, timeout -----------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "body": {"error": {"code": "0x80040216", "message": CANARY}}},
        {"status": 503, "body": CANARY, "headers": {"x-upstream": CANARY}, "retry_after": 5},
        {"status": 502, "body": f"<html>{CANARY}</html>"},
        {"action": "reset"},
        {"action": "garbage"},
        {"status": 200, "body": [CANARY]},
        {"status": 200, "body": ""},
        {"status": 200, "body": {}},
        {"status": 200, "body": {"value": "x"}},
        {"status": 200, "body": {"value": [1, 2]}},
        {"status": 200, "body": {"value": [{"fullname": CANARY}]}},
    ],
    ids=[
        "500",
        "503",
        "502-html",
        "reset",
        "garbage",
        "json-array",
        "empty-200",
        "no-value",
        "value-not-a-list",
        "rows-not-objects",
        "rows-without-key",
    ],
)
def test_r9_dataverse_failures_are_502(faults: Api, fault: dict[str, Any]) -> None:
    call(faults)
    fault_id = add_fault(faults, "dataverse", path=CONTACTS, method="GET", count=1, **fault)
    mark = faults.marks()[1]

    answer = call(faults)
    body = assert_error(answer, 502, "backend_unavailable")
    assert body["message"].startswith("Bad gateway.")
    assert "Retry-After" not in answer.headers
    assert_nothing_leaked(answer)
    assert [a["fault"] for a in sent(faults, answer, mark)] == [fault_id]  # not retried
    assert call(faults).status_code == 200  # and nothing is remembered


@pytest.mark.parametrize("body", [{}, {"fullname": CANARY}, {"contactid": 7}])
def test_r9_a_record_without_its_key_is_502(faults: Api, body: dict[str, Any]) -> None:
    record = call(faults).json()["items"][0]["id"]
    add_fault(faults, "dataverse", path=f"{CONTACTS}({record})", method="GET", count=1,
              status=200, body=body)  # fmt: skip
    answer = call(faults, path=f"/api/customers/{record}")
    assert_error(answer, 502, "backend_unavailable")
    assert_nothing_leaked(answer)


def test_r9_a_failing_write_is_502(faults: Api) -> None:
    call(faults)
    fault_id = add_fault(faults, "dataverse", path=CONTACTS, method="POST", count=1, status=500)
    mark = faults.marks()[1]
    answer = call(faults, "POST", "/api/customers", json_body={"lastName": "R9 write"})
    assert_error(answer, 502, "backend_unavailable")
    assert [a["fault"] for a in sent(faults, answer, mark)] == [fault_id]


def test_r9_dataverse_timeout_is_504(fresh: Restart, faults: Api) -> None:
    fresh(DOWNSTREAM_TIMEOUT_SECONDS="0.5")
    call(faults)
    fault_id = add_fault(faults, "dataverse", path=CONTACTS, method="GET", count=1, delay_ms=1500)
    mark = faults.marks()[1]

    answer = call(faults)
    assert_error(answer, 504, "backend_timeout")
    assert_nothing_leaked(answer)
    settle(faults, "dataverse", fault_id)
    assert [a["fault"] for a in sent(faults, answer, mark)] == [fault_id]
