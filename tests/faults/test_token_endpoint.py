"""R5-R7: Entra's token endpoint failing under the API's On-Behalf-Of and client-credentials
exchanges, through the API host.

Faults are injected on the token path only, with Entra's own error JSON; each test makes only
the exchanges it means to break (fresh user tokens are never in the OBO cache; the app's token
is fetched once per runtime). Every test has a runtime of its own (`fresh`): MSAL remembers a
throttled answer per client, and that memory must not outlive the test.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from shared.downstream.tokens import MSAL_BACKOFF
from tests.api.conftest import Api
from tests.faults.conftest import (
    TOKEN_PATH,
    Restart,
    add_fault,
    all_at_once,
    assert_error,
    mint_app,
    mint_user,
    retry_after,
    settle,
    token_posts,
)

LIST = "/api/customers?pageSize=1"
CANARY = "upstream-canary-5d1c"


def entra_error(
    error: str,
    code: int,
    message: str,
    *,
    suberror: str | None = None,
    claims: str | None = None,
) -> dict[str, Any]:
    """An error body in Entra's shape (as `devstack.entra.http.render_error` writes it)."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = "2026-01-01 00:00:00Z"
    body: dict[str, Any] = {
        "error": error,
        "error_description": f"AADSTS{code}: {message} {CANARY}\r\nTrace ID: {trace}\r\n"
        f"Correlation ID: {correlation}\r\nTimestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    if suberror:
        body["suberror"] = suberror
    if claims:
        body["claims"] = claims
    return body


def assert_nothing_leaked(response: Any, *secrets: str) -> None:
    for secret in (CANARY, "AADSTS", *secrets):
        assert secret not in response.text
        assert all(secret not in v for v in response.headers.values())


# --- R5: timeout, 5xx, 429 ----------------------------------------------------------------------


def test_r5_token_endpoint_timeout_is_504(fresh: Restart, faults: Api) -> None:
    fresh(DOWNSTREAM_TIMEOUT_SECONDS="0.5")
    token = mint_user(faults, "alice")
    fault_id = add_fault(faults, "entra", path=TOKEN_PATH, method="POST", delay_ms=1500, count=1)
    entra_mark, dv_mark = faults.marks()

    answer = faults.call("GET", LIST, token=token)
    assert_error(answer, 504, "token_service_timeout")
    assert "WWW-Authenticate" not in answer.headers
    assert faults.dataverse_requests(dv_mark) == []
    settle(faults, "entra", fault_id)
    assert [p["fault"] for p in token_posts(faults.entra_requests(entra_mark))] == [fault_id]

    # A timeout is not remembered: the client's retry exchanges again and succeeds.
    assert faults.call("GET", LIST, token=token).status_code == 200


@pytest.mark.parametrize(
    ("fault", "expected_retry_after"),
    [
        ({"status": 503, "retry_after": 7, "body": CANARY}, 7),
        # Without Retry-After MSAL holds the failure for 5 s; the client is told so.
        ({"status": 500, "body": entra_error("server_error", 90033, "busy")}, MSAL_BACKOFF),
        ({"status": 502, "body": "<html>bad gateway</html>"}, MSAL_BACKOFF),
        ({"action": "reset"}, None),
        ({"action": "garbage"}, None),
    ],
    ids=["503-retry-after", "500-entra-json", "502-html", "reset", "garbage"],
)
def test_r5_token_endpoint_failure_is_503(
    fresh: Restart, faults: Api, fault: dict[str, Any], expected_retry_after: int | None
) -> None:
    token = mint_user(faults, "alice")
    fault_id = add_fault(faults, "entra", path=TOKEN_PATH, method="POST", count=1, **fault)
    entra_mark, dv_mark = faults.marks()

    answer = faults.call("GET", LIST, token=token)
    assert_error(answer, 503, "token_service_unavailable")
    if expected_retry_after is None:
        assert "Retry-After" not in answer.headers
    else:
        assert retry_after(answer) == expected_retry_after
    assert_nothing_leaked(answer)
    assert [p["fault"] for p in token_posts(faults.entra_requests(entra_mark))] == [fault_id]
    assert faults.dataverse_requests(dv_mark) == []


@pytest.mark.parametrize(
    "body",
    [
        None,
        entra_error(
            "temporarily_unavailable", 50196, "The server terminated an operation because it "
            "encountered a client request loop.",
        ),
    ],
    ids=["no-body", "entra-json"],
)  # fmt: skip
def test_r5_throttled_exchange_is_503_with_retry_after_and_spares_cached_users(
    fresh: Restart, faults: Api, body: Any
) -> None:
    cached = mint_user(faults, "bob")
    throttled, next_user = mint_user(faults, "alice"), mint_user(faults, "alice", "reporting")
    assert faults.call("GET", LIST, token=cached).status_code == 200  # Bob's exchange cached
    fault_id = add_fault(
        faults, "entra", path=TOKEN_PATH, method="POST", status=429, retry_after=30, body=body
    )
    entra_mark, dv_mark = faults.marks()

    answer = faults.call("GET", LIST, token=throttled)
    assert_error(answer, 503, "token_service_unavailable")
    assert retry_after(answer) == 30
    assert_nothing_leaked(answer)

    # Bob's cached exchange is untouched by Alice's throttling.
    assert faults.call("GET", LIST, token=cached).status_code == 200

    # Entra asked the API to back off: another user's new exchange is not sent (MSAL replays
    # the throttled answer), and that client is told how long is left.
    other = faults.call("GET", LIST, token=next_user)
    assert_error(other, 503, "token_service_unavailable")
    assert 1 <= retry_after(other) <= 30

    posts = token_posts(faults.entra_requests(entra_mark))
    assert [p["fault"] for p in posts] == [fault_id]
    calls = faults.dataverse_requests(dv_mark)
    assert [c["caller"]["oid"] for c in calls] == [faults.stack.tenant.user("bob").oid]


def test_r5_throttled_client_credentials_is_503_with_retry_after(
    fresh: Restart, faults: Api
) -> None:
    token = mint_app(faults)
    add_fault(faults, "entra", path=TOKEN_PATH, method="POST", status=429, retry_after=12)
    dv_mark = faults.marks()[1]
    answer = faults.call("GET", "/api/vehicles?pageSize=1", token=token)
    assert_error(answer, 503, "token_service_unavailable")
    assert retry_after(answer) == 12
    again = faults.call("GET", "/api/vehicles?pageSize=1", token=token)
    assert_error(again, 503, "token_service_unavailable")
    assert 1 <= retry_after(again) <= 12
    assert faults.dataverse_requests(dv_mark) == []


def test_r5_concurrent_cold_app_calls_share_one_exchange_and_its_failure(
    fresh: Restart, faults: Api
) -> None:
    # Twenty calls of one app at once, all let through (the per-caller cap would refuse 12).
    fresh(MAX_CONCURRENT_REQUESTS_PER_CALLER="0")
    tokens = [mint_app(faults) for _ in range(20)]
    fault_id = add_fault(
        faults, "entra", path=TOKEN_PATH, method="POST", status=503, retry_after=9, count=1,
        delay_ms=300,  # long enough for every caller to arrive while the exchange runs
    )  # fmt: skip
    entra_mark, dv_mark = faults.marks()
    answers = all_at_once(faults, "/api/vehicles?pageSize=1", tokens)
    for answer in answers:
        assert_error(answer, 503, "token_service_unavailable")
        assert 1 <= retry_after(answer) <= 9
    assert [p["fault"] for p in token_posts(faults.entra_requests(entra_mark))] == [fault_id]
    assert faults.dataverse_requests(dv_mark) == []


# --- R6: claims challenge -----------------------------------------------------------------------


def _challenge(header: str) -> dict[str, str]:
    assert header.startswith("Bearer ")
    parts = {}
    for item in header.removeprefix("Bearer ").split(", "):
        name, _, value = item.partition("=")
        parts[name] = value.strip('"')
    return parts


def test_r6_interaction_required_is_a_401_claims_challenge(fresh: Restart, faults: Api) -> None:
    claims = json.dumps(
        {"access_token": {"capolids": {"essential": True, "values": [str(uuid.uuid4())]}}}
    )
    token = mint_user(faults, "alice")
    add_fault(
        faults, "entra", path=TOKEN_PATH, method="POST", count=1, status=400,
        body=entra_error(
            "interaction_required", 50079, "Due to a configuration change made by your "
            "administrator, you must enroll in multi-factor authentication.",
            suberror="basic_action", claims=claims,
        ),
    )  # fmt: skip
    dv_mark = faults.marks()[1]

    answer = faults.call("GET", LIST, token=token)
    assert_error(answer, 401, "claims_challenge")
    challenge = _challenge(answer.headers["WWW-Authenticate"])
    settings = faults.stack.settings
    assert challenge == {
        "realm": "",
        "authorization_uri": f"{settings['AZURE_AUTHORITY_HOST']}/{settings['AZURE_TENANT_ID']}"
        "/oauth2/v2.0/authorize",
        "error": "insufficient_claims",
        "claims": base64.b64encode(claims.encode()).decode(),
    }
    assert json.loads(base64.b64decode(challenge["claims"])) == json.loads(claims)
    assert_nothing_leaked(answer)
    assert faults.dataverse_requests(dv_mark) == []


def test_r6_conditional_access_from_entra_itself(fresh: Restart, faults: Api) -> None:
    """Not injected: Dave's MFA policy makes the emulator answer interaction_required."""
    answer = faults.call("GET", LIST, user="dave")
    assert_error(answer, 401, "claims_challenge")
    claims = json.loads(base64.b64decode(_challenge(answer.headers["WWW-Authenticate"])["claims"]))
    assert claims["access_token"]["capolids"]["values"]


# --- R7: consent, our own credential, a rejected assertion --------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (
            400,
            entra_error(
                "invalid_grant", 65001, "The user or administrator has not consented to use "
                "the application.", suberror="consent_required",
            ),
            403,
            "consent_required",
        ),
        (
            401,
            entra_error("invalid_client", 7000215, "Invalid client secret provided."),
            500,
            "credential_rejected",
        ),
        (
            400,
            entra_error("unauthorized_client", 700016, "Application not found in the directory."),
            500,
            "credential_rejected",
        ),
        (
            400,
            entra_error("invalid_grant", 500133, "The assertion is not within its valid time "
                        "range."),
            401,
            "assertion_rejected",
        ),
    ],
    ids=["consent-required", "invalid-client", "unknown-app", "assertion-expired"],
)  # fmt: skip
def test_r7_entra_refusals(
    fresh: Restart, faults: Api, status: int, body: dict[str, Any], expected: int, code: str
) -> None:
    token = mint_user(faults, "alice")
    add_fault(faults, "entra", path=TOKEN_PATH, method="POST", count=1, status=status, body=body)
    dv_mark = faults.marks()[1]

    answer = faults.call("GET", LIST, token=token)
    payload = assert_error(answer, expected, code)
    assert_nothing_leaked(answer)
    if expected == 403:
        assert "consent" in payload["message"].lower()
        assert "WWW-Authenticate" not in answer.headers
    elif expected == 500:
        assert "misconfigured" in payload["message"]
        assert "WWW-Authenticate" not in answer.headers  # never an authentication failure
    else:
        assert payload["message"] == "Unauthorized. Access token is missing or invalid."
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert faults.dataverse_requests(dv_mark) == []


def test_r7_our_credential_rejected_for_client_credentials_is_500(
    fresh: Restart, faults: Api
) -> None:
    token = mint_app(faults)
    add_fault(
        faults, "entra", path=TOKEN_PATH, method="POST", count=1, status=401,
        body=entra_error("invalid_client", 7000222, "The provided client secret keys are expired."),
    )  # fmt: skip
    answer = faults.call("GET", "/api/vehicles?pageSize=1", token=token)
    assert_error(answer, 500, "credential_rejected")
    assert "WWW-Authenticate" not in answer.headers
    assert_nothing_leaked(answer)
