"""Contract, "Errors from downstream", one test per row, end to end: the demo users whose
situation produces the row (Dave's MFA policy, Carol without a Dataverse user), the Entra
emulator's consent switch, and fault injection on both emulators for the rest.

Tokens for a test are made before its faults are set, so the client app's own sign-in never
meets them; each test uses a token the API has not exchanged yet, so its OBO really happens.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import requests

from shared import runtime as runtime_module
from tests.api.conftest import Api
from tests.api.contract_helpers import (
    OBO_GRANT,
    assert_error,
    client_id,
    downstream,
    fresh_token,
    oid,
)

TOKEN_PATH = "*/oauth2/v2.0/token"
CONTACTS = "/api/data/v9.2/contacts"
MARKER = "UPSTREAM-DETAIL-7f3a"  # must never reach a client
LIST = "/api/customers?pageSize=1"


def entra_fault(api: Api, **rule: Any) -> None:
    api.entra_control("POST", "faults", json={"path": TOKEN_PATH, "method": "POST", **rule})


def dataverse_fault(api: Api, **rule: Any) -> None:
    api.dataverse_control("POST", "faults", json={"path": CONTACTS, "method": "GET", **rule})


def entra_error(error: str, code: int, status: int = 400, **extra: Any) -> dict[str, Any]:
    return {
        "status": status,
        "body": {
            "error": error,
            "error_description": f"AADSTS{code}: {MARKER}\r\nTrace ID: x\r\nCorrelation ID: y",
            "error_codes": [code],
            **extra,
        },
    }


def assert_no_upstream_detail(response: Any) -> None:
    assert MARKER not in response.text
    assert "AADSTS" not in response.text
    assert "0x8" not in response.text
    assert "Traceback" not in response.text


@pytest.fixture
def own_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The API on a runtime of its own for one test, the session's put back afterwards.

    Entra faults need it: MSAL holds back *every* On-Behalf-Of request of a client after a
    429 or 5xx for the Retry-After time (its throttling key leaves out the assertion), so a
    fault would otherwise outlive its test. Settings are injected: downstream calls time out
    after 0.5 s here.
    """
    current = runtime_module.runtime()
    settings = dataclasses.replace(current.settings, downstream_timeout_seconds=0.5)
    own = runtime_module.build(settings)
    monkeypatch.setattr(runtime_module, "_current", own)
    yield
    own.dataverse.close()  # its async client, on the host's loop
    _close_sessions(own)


def _close_sessions(root: object, depth: int = 6, seen: set[int] | None = None) -> None:
    """Close every requests.Session the runtime holds (HTTP clients, MSAL's), wherever it is
    kept, so that no socket is left for the garbage collector to complain about."""
    seen = set() if seen is None else seen
    if depth == 0 or id(root) in seen:
        return
    seen.add(id(root))
    if isinstance(root, requests.Session):
        root.close()
        return
    if isinstance(root, type | ModuleType) or not hasattr(root, "__dict__"):
        return
    for value in vars(root).values():
        _close_sessions(value, depth - 1, seen)


# --- On-Behalf-Of -------------------------------------------------------------------------


def _challenge(header: str) -> dict[str, str]:
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def test_dave_gets_the_claims_challenge_entra_asked_for(api: Api) -> None:
    token = fresh_token(api, "dave")
    with downstream(api) as seen:
        response = api.call("GET", LIST, token=token)
    assert_error(response, 401, "claims_challenge")
    assert_no_upstream_detail(response)
    challenge = _challenge(response.headers["WWW-Authenticate"])
    assert challenge["error"] == "insufficient_claims"
    assert challenge["realm"] == ""
    tid = api.stack.tenant.id
    assert challenge["authorization_uri"] == f"{api.stack.entra_url}/{tid}/oauth2/v2.0/authorize"

    # The claims are exactly what Entra answered the API's exchange, base64-encoded: ask Entra
    # the same question ourselves.
    answer = api.http.post(
        f"{api.stack.entra_url}/{tid}/oauth2/v2.0/token",
        data={
            "grant_type": OBO_GRANT,
            "requested_token_use": "on_behalf_of",
            "client_id": client_id(api, "central-api"),
            "client_secret": api.stack.material.client_secret("central-api"),
            "assertion": token,
            "scope": f"{api.stack.dataverse_url}/user_impersonation",
        },
        timeout=30,
    ).json()
    assert answer["error"] == "interaction_required"
    assert base64.b64decode(challenge["claims"]).decode("utf-8") == answer["claims"]
    assert "capolids" in answer["claims"]

    assert [e["caller"]["oid"] for e in seen.exchanges] == [oid(api, "dave")]
    assert seen.dataverse == []


def test_missing_consent_for_dataverse_is_a_403_saying_so(api: Api) -> None:
    token = fresh_token(api, "alice")
    grant = {"client": "central-api", "resource": "dataverse"}
    api.entra_control("DELETE", "consents", json=grant)
    try:
        with downstream(api) as seen:
            response = api.call("GET", LIST, token=token)
    finally:
        api.entra_control("POST", "consents", json={**grant, "scopes": ["user_impersonation"]})
    body = assert_error(response, 403, "consent_required", mentions=("onsent",))
    assert body["code"] not in ("insufficient_scope", "backend_forbidden")
    assert_no_upstream_detail(response)
    assert len(seen.exchanges) == 1
    assert seen.dataverse == []


def test_an_assertion_entra_rejects_is_an_invalid_token(
    api: Api, faults: Api, own_runtime: None
) -> None:
    token = fresh_token(api, "alice")
    entra_fault(api, **entra_error("invalid_grant", 500133))
    response = api.call("GET", LIST, token=token)
    assert_error(response, 401, "assertion_rejected",
                 message="Unauthorized. Access token is missing or invalid.")  # fmt: skip
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert_no_upstream_detail(response)


def test_our_own_credential_rejected_is_a_500_never_a_401(
    api: Api, faults: Api, own_runtime: None, caplog: pytest.LogCaptureFixture
) -> None:
    token = fresh_token(api, "alice")
    entra_fault(api, **entra_error("invalid_client", 7000215, status=401))
    with caplog.at_level(logging.INFO, logger="central_api"):
        response = api.call("GET", LIST, token=token)
    assert_error(response, 500, "credential_rejected")
    assert "WWW-Authenticate" not in response.headers
    assert_no_upstream_detail(response)
    cid = response.headers["x-correlation-id"]
    loud = [
        r for r in caplog.records
        if r.levelno >= logging.ERROR
        and (getattr(r, "correlation_id", None) == cid or cid in r.getMessage())
    ]  # fmt: skip
    assert loud, "a rejected credential must be logged loudly"


@pytest.mark.parametrize(
    ("rule", "retry_after"),
    [
        ({"status": 503, "body": {"error": "temporarily_unavailable"}, "retry_after": 17}, "17"),
        ({"status": 500, "body": MARKER}, "any"),
        ({"status": 429, "retry_after": 42, **entra_error("too_many", 50196, 429)}, "42"),
        ({"action": "reset"}, None),
    ],
    ids=["503", "500", "429", "reset"],
)
def test_entra_failing_is_a_503_with_retry_after_when_known(
    api: Api, faults: Api, own_runtime: None, rule: dict[str, Any], retry_after: str | None
) -> None:
    token = fresh_token(api, "alice")
    entra_fault(api, **rule)
    with downstream(api) as seen:
        response = api.call("GET", LIST, token=token)
    assert_error(response, 503)
    if retry_after == "any":  # Entra named no time; the API may name its own back-off
        assert response.headers.get("Retry-After", "1").isdigit()
    else:
        assert response.headers.get("Retry-After") == retry_after
    assert_no_upstream_detail(response)
    assert seen.dataverse == []


def test_entra_not_answering_in_time_is_a_504(api: Api, faults: Api, own_runtime: None) -> None:
    token = fresh_token(api, "alice")
    entra_fault(api, delay_ms=1000)
    assert_error(api.call("GET", LIST, token=token), 504, "token_service_timeout")


# --- Dataverse ----------------------------------------------------------------------------


def test_carol_gets_the_backend_403_not_the_scope_403(api: Api) -> None:
    token = fresh_token(api, "carol")  # signs in, holds customer.* scopes, no Dataverse user
    with downstream(api) as seen:
        response = api.call("GET", LIST, token=token)
    body = assert_error(response, 403, "backend_forbidden", mentions=("backend",))
    assert "WWW-Authenticate" not in response.headers  # not a token problem: a new one won't help
    assert_no_upstream_detail(response)
    scope_403 = api.call("POST", "/api/customers", user="alice", client="reporting",
                         json_body={"lastName": "x"}).json()  # fmt: skip
    assert body["code"] != scope_403["code"]
    assert body["message"] != scope_403["message"]
    # Dataverse itself refused Carol, as Carol.
    assert [(c["caller"]["oid"], c["status"]) for c in seen.to_table("contacts")] == [
        (oid(api, "carol"), 403)
    ]


def test_a_record_the_user_may_not_read_is_404_as_a_missing_one(api: Api) -> None:
    """The contract's 404 covers both (issue 10, item 5; tests/security/test_review_existence)."""
    listed = api.call("GET", "/api/customers?pageSize=200", user="bob").json()["items"]
    alices = {c["id"] for c in api.call(
        "GET", "/api/customers?pageSize=200", user="alice").json()["items"]}  # fmt: skip
    not_hers = next(c["id"] for c in listed if c["id"] not in alices)
    response = api.call("GET", f"/api/customers/{not_hers}", user="alice")
    assert_error(response, 404, "not_found")


def test_a_throttled_call_is_retried_when_retry_after_fits_the_budget(
    api: Api, faults: Api
) -> None:
    api.call("GET", LIST, user="alice")  # token and exchange ready
    dataverse_fault(api, status=429, headers={"Retry-After": "0.2"}, count=1,
                    body={"error": {"code": "0x80072322", "message": MARKER}})  # fmt: skip
    with downstream(api) as seen:
        response = api.call("GET", LIST, user="alice")
    assert response.status_code == 200, response.text
    calls = seen.to_table("contacts")
    assert [c["status"] for c in calls] == [429, 200]
    assert {c["correlation_id"] for c in calls} == {response.headers["x-correlation-id"]}


def test_a_throttled_call_that_cannot_wait_is_a_503_with_retry_after(api: Api, faults: Api) -> None:
    api.call("GET", LIST, user="alice")
    dataverse_fault(api, status=429, retry_after=3600,
                    body={"error": {"code": "0x80072322", "message": MARKER}})  # fmt: skip
    with downstream(api) as seen:
        response = api.call("GET", LIST, user="alice")
    assert_error(response, 503, "backend_throttled")
    assert response.headers["Retry-After"] == "3600"
    assert_no_upstream_detail(response)
    assert [c["status"] for c in seen.to_table("contacts")] == [429]  # no waiting for an hour


@pytest.mark.parametrize(
    ("rule", "status", "code"),
    [
        ({"status": 500, "body": {"error": {"code": "0x80040216", "message": MARKER}}}, 502,
         "backend_unavailable"),
        ({"status": 503, "body": MARKER}, 502, "backend_unavailable"),
        ({"action": "garbage"}, 502, "backend_unavailable"),
        ({"action": "reset"}, 502, "backend_unavailable"),
        ({"status": 200, "body": [MARKER]}, 502, "backend_unavailable"),
        ({"status": 401, "body": {"error": {"code": "0x80072560", "message": MARKER}}}, 502,
         "backend_auth_failed"),
        ({"status": 400, "body": {"error": {"code": "0x80060888", "message": MARKER}}}, 400,
         "backend_rejected"),
    ],
    ids=["500", "503", "garbage", "reset", "not-an-object", "401-our-token", "400"],
)  # fmt: skip
def test_dataverse_failures(
    api: Api, faults: Api, rule: dict[str, Any], status: int, code: str
) -> None:
    api.call("GET", LIST, user="alice")
    dataverse_fault(api, **rule)
    response = api.call("GET", LIST, user="alice")
    assert_error(response, status, code)
    assert "WWW-Authenticate" not in response.headers
    assert_no_upstream_detail(response)
    api.dataverse_control("DELETE", "faults")
    assert api.call("GET", LIST, user="alice").status_code == 200  # and the pool recovers


def test_dataverse_not_answering_in_time_is_a_504(api: Api, faults: Api, own_runtime: None) -> None:
    api.call("GET", LIST, app="dealer-sync")
    slow = {"path": "/api/data/v9.2/bos_vehicles", "delay_ms": 1000}  # twice the timeout
    api.dataverse_control("POST", "faults", json=slow)
    response = api.call("GET", "/api/vehicles?pageSize=1", app="dealer-sync")
    assert_error(response, 504, "backend_timeout")
