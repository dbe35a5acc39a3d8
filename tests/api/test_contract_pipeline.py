"""Contract, "Request pipeline": subscription key, access token, mode, authorisation, and the
correlation id, end to end through the API host (tests/api/contract_helpers.py explains the
fresh tokens and the downstream logs these tests read)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.contract_helpers import (
    INVALID_KEY,
    INVALID_TOKEN,
    MISSING_KEY,
    assert_error,
    client_id,
    downstream,
    fresh_token,
    sign,
    token_claims,
)
from tests.declared import domains, every_permission, minimal_body

GUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"

# One request per method and domain: the pipeline runs before any of them does anything.
REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/api/customers", None),
    ("GET", f"/api/customers/{GUID}", None),
    ("POST", "/api/cases", {"title": "x", "customerId": GUID}),
    ("PATCH", f"/api/vehicles/{GUID}", {"make": "x"}),
]


# --- 1. subscription key ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, MISSING_KEY),
        ("not-a-key-of-any-subscription", INVALID_KEY),
        ("", MISSING_KEY),
    ],
    ids=["missing", "unknown", "empty"],
)
def test_a_request_without_a_valid_key_gets_the_seeds_401_and_costs_nothing(
    api: Api, key: str | None, message: str
) -> None:
    token = fresh_token(api, "alice")  # never seen: any work on it would show downstream
    with downstream(api) as seen:
        for method, path, body in REQUESTS:
            kwargs: dict[str, Any] = {"json_body": body} if body else {}
            response = api.call(method, path, token=token, key=key, **kwargs)
            assert_error(response, 401, message=message)
            assert "WWW-Authenticate" not in response.headers
    assert seen.entra == []
    assert seen.dataverse == []


def test_a_near_miss_key_is_invalid_and_the_key_is_checked_before_the_token(api: Api) -> None:
    valid = api.subscription_key
    for key in (valid[:-1], valid + "x", valid.swapcase(), f"{valid} {valid}"):
        assert_error(api.call("GET", "/api/customers", user="alice", key=key), 401,
                     message=INVALID_KEY)  # fmt: skip
    # No key and no token: the key is what the client hears about first.
    assert_error(api.call("GET", "/api/customers", key=None, token=None), 401, message=MISSING_KEY)


def test_both_keys_of_every_subscription_work_for_rotation(api: Api) -> None:
    subscriptions = api.stack.material.subscription_keys
    assert len(subscriptions) >= 2
    for keys in subscriptions.values():
        assert len(keys) == 2
        for key in keys:
            response = api.call("GET", "/api/customers?pageSize=1", user="alice", key=key)
            assert response.status_code == 200, response.text


def test_the_key_in_the_query_string_is_off_by_default(api: Api) -> None:
    path = f"/api/customers?pageSize=1&subscription-key={api.subscription_key}"
    assert_error(api.call("GET", path, user="alice", key=None), 401, message=MISSING_KEY)


# --- 2. access token --------------------------------------------------------------------------


def test_no_token_is_401_with_a_bare_bearer_challenge(api: Api) -> None:
    with downstream(api) as seen:
        for method, path, body in REQUESTS:
            kwargs: dict[str, Any] = {"json_body": body} if body else {}
            response = api.call(method, path, token=None, **kwargs)
            assert_error(response, 401, "invalid_token", message=INVALID_TOKEN)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert seen.token_requests == []
    assert seen.dataverse == []


def _evil_tokens(api: Api) -> dict[str, str]:
    """One valid token's claims, each variant wrong in one way (signed by Entra's own key
    unless the variant is about the signature)."""
    good = token_claims(api, "alice")
    now = int(time.time())
    tid = api.stack.tenant.id

    def variant(**changes: Any) -> str:
        claims = {**good, **changes}
        return sign(api, {k: v for k, v in claims.items() if v is not None})

    valid = variant()
    head, payload, signature = valid.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return {
        "expired": variant(iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "not yet valid": variant(nbf=now + 3600, exp=now + 7200),
        "issued in the future": variant(iat=now + 3600),
        "wrong audience": variant(aud=client_id(api, "portal")),
        "audience of another API": variant(aud=f"api://{client_id(api, 'partner-api')}"),
        "wrong issuer": variant(iss=f"https://login.microsoftonline.com/{tid}/v2.0"),
        "v1 issuer on a v2 token": variant(iss=good["iss"].removesuffix("v2.0")),
        "other tenant": variant(tid=str(uuid.uuid4())),
        "no exp": variant(exp=None),
        "no tid": variant(tid=None),
        "no version": variant(ver=None),
        "neither scp nor roles": variant(scp=None),
        "app token with scp": variant(idtyp="app", roles=["customer.read"]),
        "bad signature": f"{head}.{payload}.{flipped}",
        "unsigned": f"{head}.{payload}.",
        "alg none": "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + payload + ".",
        "unknown kid": sign(api, good, headers={"kid": "no-such-key"}),
        "not a JWT": "abc.def",
        "garbage": "x" * 40,
    }


def test_every_unacceptable_token_is_the_same_401(api: Api) -> None:
    tokens = _evil_tokens(api)
    with downstream(api) as seen:
        for name, token in tokens.items():
            response = api.call("GET", "/api/customers?pageSize=1", token=token)
            assert response.status_code == 401, name
            assert_error(response, 401, "invalid_token", message=INVALID_TOKEN)
            assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', name
    # Nothing was exchanged and Dataverse heard nothing (a key refresh for the unknown kid may
    # reach Entra's key endpoint; no token request does).
    assert seen.token_requests == []
    assert seen.dataverse == []


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer  {t}", "Bearer {t} extra", "{t}",
     "Bearer {t},Bearer {t}", "Token {t}"],
)  # fmt: skip
def test_a_malformed_authorization_header_is_an_invalid_token(api: Api, authorization: str) -> None:
    header = authorization.replace("{t}", api.user_token("alice"))
    response = api.call("GET", "/api/customers", token=None, headers={"Authorization": header})
    assert_error(response, 401, "invalid_token", message=INVALID_TOKEN)
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_the_scheme_is_case_insensitive(api: Api, scheme: str) -> None:
    header = f"{scheme} {api.user_token('alice')}"
    response = api.call(
        "GET", "/api/customers?pageSize=1", token=None, headers={"Authorization": header}
    )
    assert response.status_code == 200, response.text


def test_v1_tokens_are_accepted_in_both_audience_forms(api: Api) -> None:
    v2 = token_claims(api, "alice")
    v1_issuer = v2["iss"].removesuffix("v2.0")
    for audience in (f"api://{client_id(api, 'central-api')}", client_id(api, "central-api")):
        claims = {**v2, "ver": "1.0", "iss": v1_issuer, "aud": audience,
                  "appid": v2["azp"], "azp": None}  # fmt: skip
        token = sign(api, {k: v for k, v in claims.items() if v is not None})
        response = api.call("GET", "/api/customers?pageSize=1", token=token)
        assert response.status_code == 200, (audience, response.text)


def test_an_application_token_entra_issues_as_v1_is_accepted(api: Api) -> None:
    """Switch central-api's registration to v1 tokens, get a real client-credentials token."""
    tid = api.stack.tenant.id
    api.entra_control("PUT", "apps/central-api", json={"access_token_version": 1})
    try:
        answer = api.http.post(
            f"{api.stack.entra_url}/{tid}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id(api, "dealer-sync"),
                "client_secret": api.stack.material.client_secret("dealer-sync"),
                "scope": f"api://{client_id(api, 'central-api')}/.default",
            },
            timeout=30,
        )
    finally:
        api.entra_control("PUT", "apps/central-api", json={"access_token_version": 2})
    token = answer.json()["access_token"]
    response = api.call("GET", "/api/vehicles?pageSize=1", token=token)
    assert response.status_code == 200, response.text


# --- 3. mode ----------------------------------------------------------------------------------


def test_roles_without_scp_is_application_mode_even_without_idtyp(api: Api) -> None:
    token = fresh_token(api, None, "dealer-sync", idtyp=None)
    with downstream(api) as seen:
        response = api.call("GET", "/api/vehicles?pageSize=1", token=token)
    assert response.status_code == 200, response.text
    assert [c["caller"].get("appid") for c in seen.to_table("bos_vehicles")] == [
        client_id(api, "central-api")
    ]
    assert seen.exchanges == []


def test_a_user_token_with_app_roles_is_judged_on_its_scopes_only(api: Api) -> None:
    token = fresh_token(
        api, "alice", scp="customer.read", roles=["customer.readwrite", "vehicle.readwrite"]
    )
    assert api.call("GET", "/api/customers?pageSize=1", token=token).status_code == 200
    assert_error(
        api.call("POST", "/api/customers", token=token, json_body={"lastName": "x"}),
        403, "insufficient_scope", mentions=("customer.readwrite",),
    )  # fmt: skip
    assert_error(api.call("GET", "/api/vehicles", token=token), 403, "application_only")


def test_mode_never_comes_from_the_request(api: Api) -> None:
    response = api.call(
        "GET", "/api/vehicles?mode=application", user="alice",
        headers={"X-Mode": "application", "X-Application": client_id(api, "dealer-sync"),
                 "X-MS-CLIENT-PRINCIPAL-ID": client_id(api, "dealer-sync")},
    )  # fmt: skip
    assert_error(response, 403, "application_only")


# --- 4. authorisation -------------------------------------------------------------------------


def test_reporting_cannot_create_a_customer_and_is_told_which_scope_it_needs(api: Api) -> None:
    token = api.user_token("alice", "reporting")  # customer.read only
    with downstream(api) as seen:
        response = api.call("POST", "/api/customers", token=token, json_body={"lastName": "x"})
    body = assert_error(response, 403, "insufficient_scope", mentions=("customer.readwrite",))
    assert "customer.read," not in body["message"]
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="customer.readwrite"'
    )
    assert seen.token_requests == []
    assert seen.dataverse == []
    # Reading is what it may do.
    assert api.call("GET", "/api/customers?pageSize=1", token=token).status_code == 200


def test_a_read_needs_either_read_scope_and_names_both(api: Api) -> None:
    reporting = api.user_token("alice", "reporting")
    response = api.call("GET", "/api/cases", token=reporting)
    assert_error(response, 403, "insufficient_scope", mentions=("case.read", "case.readwrite"))
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="case.read case.readwrite"'
    )
    readwrite_only = fresh_token(api, "bob", scp="customer.readwrite")
    assert api.call("GET", "/api/customers?pageSize=1", token=readwrite_only).status_code == 200


def test_a_delegated_token_on_an_application_only_endpoint(api: Api) -> None:
    token = fresh_token(api, "alice", scp="vehicle.read vehicle.readwrite")
    with downstream(api) as seen:
        for method, path, body in [
            ("GET", "/api/vehicles", None),
            ("GET", f"/api/vehicles/{GUID}", None),
            ("POST", "/api/vehicles", {"name": "x"}),
            ("PATCH", f"/api/vehicles/{GUID}", {"make": "x"}),
        ]:
            kwargs: dict[str, Any] = {"json_body": body} if body else {}
            response = api.call(method, path, token=token, **kwargs)
            body_ = assert_error(response, 403, "application_only")
            assert "application" in body_["message"]
            assert "insufficient_scope" in response.headers["WWW-Authenticate"]
    assert seen.token_requests == []
    assert seen.dataverse == []


def test_application_tokens_are_checked_against_their_roles(api: Api) -> None:
    # dealer-sync holds vehicle.readwrite and customer.read.
    assert api.call("GET", "/api/customers?pageSize=1", app="dealer-sync").status_code == 200
    response = api.call("POST", "/api/customers", app="dealer-sync", json_body={"lastName": "x"})
    body = assert_error(response, 403, "insufficient_scope", mentions=("customer.readwrite",))
    assert "app roles" in body["message"]
    assert_error(api.call("GET", "/api/cases", app="dealer-sync"), 403, "insufficient_scope",
                 mentions=("case.read", "case.readwrite"))  # fmt: skip
    # no-access holds no role at all.
    for path in ("/api/vehicles", "/api/customers", "/api/cases"):
        assert_error(api.call("GET", path, app="no-access"), 403, "insufficient_scope")


def test_application_mode_is_supported_by_every_endpoint(api: Api) -> None:
    token = fresh_token(api, None, "dealer-sync", roles=sorted(every_permission()))
    operations = [
        (method, f"/api/{domain.route}{suffix}", minimal_body(domain, GUID))
        for domain in domains()
        for method, suffix in (
            ("GET", ""),
            ("GET", f"/{GUID}"),
            ("POST", ""),
            ("PATCH", f"/{GUID}"),
        )
    ]
    with downstream(api) as seen:
        answers = []
        for method, path, body in operations:
            kwargs: dict[str, Any] = {"json_body": body} if method in ("POST", "PATCH") else {}
            response = api.call(method, path, token=token, **kwargs)
            # Past the pipeline: Dataverse answers for the application user's own role (which
            # may well refuse, as the integration role does for cases), never the scope 403.
            assert response.status_code in (200, 201, 403, 404), (path, response.text)
            if response.status_code == 403:
                assert response.json()["code"] == "backend_forbidden"
            answers.append(response.headers["x-correlation-id"])
    callers = {c["correlation_id"]: c["caller"] for c in seen.dataverse}
    assert set(callers) == set(answers)
    assert {c.get("appid") for c in callers.values()} == {client_id(api, "central-api")}
    assert seen.exchanges == []


# --- correlation id ---------------------------------------------------------------------------


def test_every_response_carries_a_correlation_id(api: Api) -> None:
    answers = [
        api.call("GET", "/api/customers?pageSize=1", user="alice"),  # 200
        api.call("GET", "/api/customers?pageSize=abc", user="alice"),  # 400
        api.call("GET", "/api/customers", key=None),  # 401
        api.call("GET", "/api/vehicles", user="alice"),  # 403
        api.call("GET", f"/api/customers/{uuid.uuid4()}", user="bob"),  # 404
    ]
    ids = [a.headers["x-correlation-id"] for a in answers]
    assert all(uuid.UUID(i) for i in ids)
    assert len(set(ids)) == len(ids)
    for answer in answers[1:]:
        assert answer.json()["correlationId"] == answer.headers["x-correlation-id"]


def test_the_correlation_id_is_the_one_dataverse_sees(api: Api) -> None:
    with downstream(api) as seen:
        mine = api.call("GET", "/api/customers?pageSize=1", user="alice")
        given = api.call(
            "GET", "/api/customers?pageSize=1", user="bob",
            headers={"x-correlation-id": "client-trace-0001"},
        )  # fmt: skip
        unsafe = api.call(
            "GET", "/api/customers?pageSize=1", user="bob",
            headers={"x-correlation-id": "has spaces; and=signs"},
        )  # fmt: skip
    assert given.headers["x-correlation-id"] == "client-trace-0001"
    assert unsafe.headers["x-correlation-id"] != "has spaces; and=signs"
    logged = [c["correlation_id"] for c in seen.to_table("contacts")]
    assert logged == [r.headers["x-correlation-id"] for r in (mine, given, unsafe)]
