"""Outside review, item 5: the existence oracle (docs/security.md, "5. Existence oracle").

A record the caller may not see must answer exactly as a record that does not exist, on
single-record GET and PATCH and for a reference in a POST; otherwise 403 against 404 tells any
caller which ids exist. Dataverse tells the two denials apart by its error code: the access
check for one record fails with 0x80048306 (-2147187962), a privilege missing on the whole
table is 0x80040220 (-2147220960), a caller with no Dataverse user 0x80072560. Only the first
depends on the record, so only it becomes 404; the others stay 403 `backend_forbidden`.

The demo tenant gives the real cases: Alice (salesperson) reads and writes only the contacts she
owns, Bob (service agent) reads every contact and writes none, Carol has no Dataverse user. No
demo role reads a row it may not write at row level, and no one can reference a row they may not
see, so those two answers are injected with Dataverse's own error on the Web API path.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from tests.api.conftest import Api
from tests.api.contract_helpers import (
    assert_error,
    downstream,
    new_customer,
    oid,
    store_rows,
    systemuserid,
    unique,
)
from tests.faults.conftest import add_fault

NOT_FOUND = "Not found. No such record, or it is not visible to the caller."
CONTACTS = "/api/data/v9.2/contacts"
ACCESS_CHECK = "0x80048306"
MISSING_PRIVILEGE = "0x80040220"
NOT_A_MEMBER = "0x80072560"


def bobs_contact(api: Api) -> str:
    rows = store_rows(
        api,
        'SELECT contactid FROM "contacts" WHERE _ownerid_value = ? LIMIT 1',
        (systemuserid(api, user="bob"),),
    )
    return str(rows[0]["contactid"])


def same_answer(seen: requests.Response, missing: requests.Response) -> None:
    """Nothing in the two answers differs but the correlation id."""
    assert (seen.status_code, missing.status_code) == (404, 404)
    one, other = seen.json(), missing.json()
    assert one.pop("correlationId") != other.pop("correlationId")
    assert one == other == {"statusCode": 404, "message": NOT_FOUND, "code": "not_found"}
    ignore = {"x-correlation-id", "date", "content-length"}

    def kept(response: requests.Response) -> set[tuple[str, str]]:
        # x-devstack-*: the dev host's own timings (README, "The dev stack"), never sent by Azure.
        return {
            (k.lower(), v)
            for k, v in response.headers.items()
            if k.lower() not in ignore and not k.lower().startswith("x-devstack-")
        }

    assert kept(seen) == kept(missing)


def dataverse_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@pytest.fixture(scope="module")
def warm(api: Api) -> Api:
    """Alice's and Bob's Dataverse tokens are cached: the logs below hold only the request."""
    for user in ("alice", "bob"):
        assert api.call("GET", "/api/customers?pageSize=1", user=user).status_code == 200
    return api


# --- GET ----------------------------------------------------------------------------------


def test_get_of_a_record_alice_may_not_see_answers_as_a_missing_one(warm: Api) -> None:
    theirs = bobs_contact(warm)
    with downstream(warm) as seen:
        hidden = warm.call("GET", f"/api/customers/{theirs}", user="alice")
    missing = warm.call("GET", f"/api/customers/{uuid.uuid4()}", user="alice")
    same_answer(hidden, missing)
    # Dataverse itself refused Alice, as Alice, with the access check's code.
    [call] = seen.to_table("contacts")
    assert (call["status"], call["caller"]["oid"]) == (403, oid(warm, "alice"))


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (ACCESS_CHECK, 404, "not_found"),
        (MISSING_PRIVILEGE, 403, "backend_forbidden"),
        (NOT_A_MEMBER, 403, "backend_forbidden"),
        (None, 403, "backend_forbidden"),
    ],
    ids=["access-check", "missing-privilege", "not-a-member", "no-code"],
)
def test_only_the_access_check_code_reads_as_not_found(
    warm: Api, faults: Api, code: str | None, status: int, expected: str
) -> None:
    mine = new_customer(warm)["id"]
    body = {"error": {"code": code, "message": "denied"}} if code else "Forbidden"
    add_fault(faults, "dataverse", path=f"{CONTACTS}({mine})", method="GET", status=403,
              count=1, body=body)  # fmt: skip
    assert_error(warm.call("GET", f"/api/customers/{mine}", user="alice"), status, expected)


def test_privilege_level_denials_stay_403(warm: Api) -> None:
    """Carol has no Dataverse user (0x80072560); Bob holds no write privilege on contacts
    (0x80040220). Neither says anything about one record, and neither costs a second call."""
    carol = warm.call("GET", f"/api/customers/{bobs_contact(warm)}", user="carol")
    assert_error(carol, 403, "backend_forbidden")
    alices = new_customer(warm)["id"]
    with downstream(warm) as seen:
        bob = warm.call("PATCH", f"/api/customers/{alices}", user="bob", json_body={"city": "x"})
    assert_error(bob, 403, "backend_forbidden")
    assert [(c["method"], c["status"]) for c in seen.to_table("contacts")] == [("PATCH", 403)]


# --- PATCH --------------------------------------------------------------------------------


def test_patch_of_a_record_alice_may_not_see_answers_as_a_missing_one(warm: Api) -> None:
    theirs = bobs_contact(warm)
    before = store_rows(warm, 'SELECT * FROM "contacts" WHERE contactid = ?', (theirs,))
    change = {"jobTitle": unique()}
    with downstream(warm) as seen:
        hidden = warm.call("PATCH", f"/api/customers/{theirs}", user="alice", json_body=change)
    missing = warm.call("PATCH", f"/api/customers/{uuid.uuid4()}", user="alice", json_body=change)
    same_answer(hidden, missing)
    # The refused write, then the one read that shows Alice may not see the record either.
    calls = seen.to_table("contacts")
    assert [(c["method"], c["status"]) for c in calls] == [("PATCH", 403), ("GET", 403)]
    assert store_rows(warm, 'SELECT * FROM "contacts" WHERE contactid = ?', (theirs,)) == before


def test_patch_of_a_record_the_caller_may_read_but_not_change_is_403(
    warm: Api, faults: Api
) -> None:
    """Row-level write refused, row-level read allowed: a 403 tells nothing the caller could
    not read anyway, and is the honest answer."""
    mine = new_customer(warm)["id"]
    refusal = dataverse_error(
        ACCESS_CHECK,
        f"Principal user with id {systemuserid(warm, user='alice')} does not have WriteAccess "
        f"right(s) for record with id {mine} of entity Contact.",
    )
    fault = add_fault(faults, "dataverse", path=f"{CONTACTS}({mine})", method="PATCH",
                      status=403, count=1, body=refusal)  # fmt: skip
    with downstream(warm) as seen:
        response = warm.call(
            "PATCH", f"/api/customers/{mine}", user="alice", json_body={"city": "Oslo"}
        )
    assert_error(response, 403, "backend_forbidden")
    calls = seen.to_table("contacts")
    assert [(c["method"], c["status"], c["fault"]) for c in calls] == [
        ("PATCH", 403, fault),
        ("GET", 200, None),
    ]
    assert "Oslo" not in response.text


# --- POST with a reference ------------------------------------------------------------------


def test_a_reference_to_a_record_the_caller_may_not_see_reads_as_missing(
    warm: Api, faults: Api
) -> None:
    """Dataverse checks AppendTo access on the referenced row; refused, it answers the access
    check's 0x80048306. The client learns only what a reference to no record at all tells."""
    customer = new_customer(warm)["id"]
    refusal = dataverse_error(
        ACCESS_CHECK,
        f"Principal user with id {systemuserid(warm, user='bob')} does not have AppendToAccess "
        f"right(s) for record with id {customer} of entity Contact.",
    )
    add_fault(faults, "dataverse", path="/api/data/v9.2/incidents", method="POST", status=403,
              count=1, body=refusal)  # fmt: skip
    hidden = warm.call(
        "POST", "/api/cases", user="bob", json_body={"title": "x", "customerId": customer}
    )
    missing = warm.call(
        "POST", "/api/cases", user="bob", json_body={"title": "x", "customerId": str(uuid.uuid4())}
    )
    for response in (hidden, missing):
        assert_error(response, 400, "invalid_input")
    one, other = hidden.json(), missing.json()
    assert one.pop("correlationId") != other.pop("correlationId")
    assert one == other
    assert one["message"] == "Bad request. customerId: refers to a record that does not exist."
