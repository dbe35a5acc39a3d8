"""Who may call the Dataverse emulator and what they see: token validation (401 with
`WWW-Authenticate`), system users (carol is not one), security roles (row-level depth), service
protection limits (429), the request log, and real tokens from the Entra emulator via MSAL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msal
import pytest
import requests

from devstack.pki import Material
from devstack.tenant import Tenant
from tests.devstack.dataverse_helpers import Api, Tokens, assert_error
from tests.devstack.entra_helpers import MsalApps, api_scope, ropc

ALICE = "f775ea63-9e01-4b35-8d49-8af1a935d228"
BOB = "e80b6af1-6428-4a30-92ce-22f7005e3a46"
CENTRAL_API = "5f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"


def logged_since(control: Any, since: int, count: int) -> list[dict[str, Any]]:
    """The request log after `since`, once it holds `count` entries: the control plane writes an
    entry after the response has gone out, so a fast client can look before it is there."""
    deadline = time.monotonic() + 5
    while len(entries := control.requests(since)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(entries)


def last_seq(control: Any) -> int:
    entries = control.requests()
    return int(entries[-1]["seq"]) if entries else 0


@pytest.fixture(scope="module")
def tokens(entra: Any, tenant: Tenant, dataverse: Any) -> Tokens:
    return Tokens(entra.app.state.entra, tenant, dataverse.url)


@pytest.fixture(scope="module")
def connect(dataverse: Any, ca_bundle: Path) -> Iterator[Callable[[str | None], Api]]:
    clients: list[Api] = []

    def make(token: str | None) -> Api:
        client = Api(dataverse.url, ca_bundle, token)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def alice(connect: Callable[[str | None], Api], tokens: Tokens) -> Api:
    return connect(tokens.user("alice"))


@pytest.fixture(scope="module")
def bob(connect: Callable[[str | None], Api], tokens: Tokens) -> Api:
    return connect(tokens.user("bob"))


@pytest.fixture(scope="module")
def service(connect: Callable[[str | None], Api], tokens: Tokens) -> Api:
    return connect(tokens.app("central-api"))


@pytest.fixture
def control(dataverse: Any, ca_bundle: Path) -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_bundle)
    yield session
    session.delete(f"{dataverse.url}/_emulator/limits")
    session.close()


# --- tokens --------------------------------------------------------------------------------------


EVIL = [
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "other_tenant",
    "no_expiry",
    "bad_signature",
    "tampered",
    "unknown_kid",
    "alg_none",
    "neither_user_nor_app",
]


def _assert_401(response: requests.Response, tenant: Tenant, entra: Any, dataverse: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == (
        f"Bearer authorization_uri={entra.url}/{tenant.id}/oauth2/authorize, "
        f"resource_id={dataverse.url}/"
    )
    assert response.content == b""


@pytest.mark.parametrize("variant", EVIL)
def test_bad_tokens_are_401_with_challenge(
    connect: Callable[[str | None], Api],
    tokens: Tokens,
    tenant: Tenant,
    entra: Any,
    dataverse: Any,
    variant: str,
) -> None:
    token = getattr(tokens, variant)()
    _assert_401(connect(token).get("contacts?$top=1"), tenant, entra, dataverse)


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Basic YWxpY2U6cGFzcw==", "Bearer a.b", "Bearer a b c",
     "Bearer x.y.z", "bearer " + "A" * 20000],
)  # fmt: skip
def test_malformed_authorization_headers_are_401(
    connect: Callable[[str | None], Api],
    tenant: Tenant,
    entra: Any,
    dataverse: Any,
    authorization: str,
) -> None:
    response = connect(None).get("WhoAmI", headers={"Authorization": authorization})
    assert response.status_code in (401, 431), response.status_code
    if response.status_code == 401:
        _assert_401(response, tenant, entra, dataverse)


def test_no_token_is_401(
    connect: Callable[[str | None], Api], tenant: Tenant, entra: Any, dataverse: Any
) -> None:
    _assert_401(connect(None).get("contacts"), tenant, entra, dataverse)


def test_audience_with_trailing_slash_and_v2_issuer_are_accepted(
    connect: Callable[[str | None], Api], tokens: Tokens, entra: Any, tenant: Tenant
) -> None:
    with_slash = tokens.user("bob", aud=tokens.dataverse_url + "/")
    assert connect(with_slash).get("WhoAmI").json()["UserId"] == BOB
    v2 = tokens.user("bob", iss=f"{entra.url}/{tenant.id}/v2.0", ver="2.0")
    assert connect(v2).get("WhoAmI").status_code == 200


def test_key_rollover_is_followed(
    connect: Callable[[str | None], Api], tokens: Tokens, entra: Any, dataverse: Any
) -> None:
    """A token signed with a key the emulator has not seen yet makes it refetch the JWKS."""
    keys = entra.app.state.entra.keys
    cache = dataverse.app.state.dataverse.keys
    connect(tokens.user("bob")).get("WhoAmI")  # the old keys are cached now
    fetches, interval = cache.fetches, cache.refresh_interval
    # "Too recently" must not depend on how long ago, on a busy machine, the keys were fetched
    # (the 10 s interval could pass between the fetch and the new token).
    cache.refresh_interval = 3600
    new = keys.add()
    keys.promote(new.kid)
    try:
        token = tokens.user("bob")
        assert connect(token).get("WhoAmI").status_code == 401  # refetched too recently
        cache.refresh_interval = 0  # as if the refresh interval had passed
        assert connect(token).get("WhoAmI").status_code == 200
        assert cache.fetches == fetches + 1
    finally:
        cache.refresh_interval = interval
        keys.reset()


def test_told_to_refresh_it_drops_a_retired_key(
    connect: Callable[[str | None], Api],
    tokens: Tokens,
    entra: Any,
    dataverse: Any,
    control: requests.Session,
) -> None:
    """`POST /_emulator/keys/refresh` fetches Entra's keys at once, as Dataverse does in time
    after an emergency rollover: a key Entra retired stops validating (401), a new one works."""
    keys = entra.app.state.entra.keys
    original = keys.active.kid
    published = [k.kid for k in keys.published()]
    url = f"{dataverse.url}/_emulator/keys/refresh"
    new = keys.add()
    keys.promote(new.kid)
    try:
        signed_by_new = tokens.user("bob")
        refreshed = control.post(url)
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json() == {"kids": sorted([*published, new.kid])}
        assert connect(signed_by_new).get("WhoAmI").status_code == 200

        keys.promote(original)
        keys.retire(new.kid)
        assert control.post(url).json() == {"kids": sorted(published)}
        assert connect(signed_by_new).get("WhoAmI").status_code == 401
        assert connect(tokens.user("bob")).get("WhoAmI").status_code == 200
    finally:
        keys.reset()
        control.post(url)


# --- system users and the request log ------------------------------------------------------------


def test_user_without_system_user_is_not_a_member(
    connect: Callable[[str | None], Api], tokens: Tokens, dataverse: Any, tenant: Tenant
) -> None:
    control = dataverse.app.state.dataverse.control
    since = last_seq(control)
    response = connect(tokens.user("carol")).get("contacts")
    assert_error(response, 403, "0x80072560", "The user is not a member of the organization.")
    # Only this request: a slow request from an earlier test may be logged meanwhile.
    entries = logged_since(control, since, 1)
    [logged] = [e for e in entries if e["path"].endswith("/contacts") and e["status"] == 403]
    assert logged["caller"] == {"oid": tenant.user("carol").oid}


def test_app_without_application_user_is_not_a_member(
    connect: Callable[[str | None], Api], tokens: Tokens
) -> None:
    response = connect(tokens.app("dealer-sync")).get("WhoAmI")
    assert_error(response, 403, "0x80072560")


def test_request_log_names_callers_never_tokens(
    alice: Api, service: Api, dataverse: Any, tenant: Tenant
) -> None:
    control = dataverse.app.state.dataverse.control
    since = last_seq(control)
    alice.get("contacts?$top=1")
    service.get("bos_vehicles?$top=1")
    entries = logged_since(control, since, 2)
    assert [e["caller"] for e in entries] == [
        {"oid": tenant.user("alice").oid, "systemuserid": ALICE},
        {"appid": tenant.app("central-api").client_id, "systemuserid": CENTRAL_API},
    ]
    assert all(e["status"] == 200 for e in entries)
    assert alice.token is not None
    assert alice.token not in repr(entries)


# --- security roles ------------------------------------------------------------------------------


def test_user_depth_sees_only_own_rows_organization_sees_all(alice: Api, bob: Api) -> None:
    query = "contacts?$select=_ownerid_value&$count=true"
    mine = alice.get(query).json()
    everyone = bob.get(query).json()
    assert mine["value"]
    assert {r["_ownerid_value"] for r in mine["value"]} == {ALICE}
    assert {ALICE, BOB, CENTRAL_API} <= {r["_ownerid_value"] for r in everyone["value"]}
    assert mine["@odata.count"] < everyone["@odata.count"]
    same_filter = "contacts?$select=fullname&$filter=startswith(lastname,'H')"
    alice_ids = {r["contactid"] for r in alice.values(same_filter)}
    bob_ids = {r["contactid"] for r in bob.values(same_filter)}
    assert alice_ids < bob_ids


def test_reading_someone_elses_row_by_key_is_the_access_check_403(alice: Api, bob: Api) -> None:
    """The privilege is held (user depth) but does not reach this row: Dataverse's access-check
    failure, 0x80048306 (-2147187962), not the missing-privilege 0x80040220."""
    theirs = bob.values(f"contacts?$select=fullname&$filter=_ownerid_value eq {BOB}&$top=1")[0]
    response = alice.get(f"contacts({theirs['contactid']})")
    assert_error(
        response, 403, "0x80048306", "SecLib::AccessCheckEx failed. Returned hr = -2147187962"
    )
    message = response.json()["error"]["message"]
    assert f"ObjectID: {theirs['contactid']}" in message
    assert f"CallingUser: {ALICE}" in message
    assert "AccessRights: ReadAccess" in message
    changed = alice.patch(f"contacts({theirs['contactid']})", {"firstname": "x"})
    assert_error(changed, 403, "0x80048306", "AccessRights: WriteAccess")
    deleted = alice.delete(f"contacts({theirs['contactid']})")
    assert_error(deleted, 403, "0x80048306", "AccessRights: DeleteAccess")


def test_no_read_privilege_is_403_naming_the_privilege(alice: Api) -> None:
    for path in ("bos_vehicles", "bos_vehicles(00000000-0000-0000-0000-000000000001)"):
        response = alice.get(path)
        assert_error(response, 403, "0x80040220", f"Principal user (Id={ALICE}, type=8")
        assert "is missing prvReadbos_Vehicle privilege" in response.json()["error"]["message"]


def test_no_create_privilege_is_403(bob: Api) -> None:
    response = bob.post("contacts", {"lastname": "Berg"})
    assert_error(response, 403, "0x80040220", "is missing prvCreateContact privilege")


def test_application_user_reads_and_writes_vehicles(service: Api, bob: Api) -> None:
    vehicles = service.values("bos_vehicles?$select=bos_vin,bos_registrationnumber&$top=5")
    assert len(vehicles) == 5
    assert all(len(v["bos_vin"]) == 17 for v in vehicles)
    owner = bob.values("contacts?$select=fullname&$top=1")[0]["contactid"]
    vin = "W1K" + uuid.uuid4().hex[:14].upper()
    created = service.post(
        "bos_vehicles?$select=bos_vin,_bos_ownercontactid_value,_ownerid_value",
        {
            "bos_vin": vin,
            "bos_registrationnumber": "EL12345",
            "bos_make": "Mercedes-Benz",
            "bos_model": "EQA",
            "bos_modelyear": 2024,
            "bos_OwnerContactId@odata.bind": f"/contacts({owner})",
        },
        headers={"Prefer": "return=representation"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["_bos_ownercontactid_value"] == owner
    assert body["_ownerid_value"] == CENTRAL_API
    found = service.values(f"bos_vehicles?$select=bos_vin&$filter=bos_vin eq '{vin.lower()}'")
    assert [v["bos_vehicleid"] for v in found] == [body["bos_vehicleid"]]
    assert_error(service.delete(f"bos_vehicles({body['bos_vehicleid']})"), 403, "0x80040220")


def test_lowercase_nav_name_for_custom_lookup_is_refused(service: Api) -> None:
    response = service.post(
        "bos_vehicles",
        {
            "bos_vin": "X",
            "bos_ownercontactid@odata.bind": "/contacts(00000000-0000-0000-0000-000000000001)",
        },
    )
    assert_error(response, 400, "0x80048d19", "An undeclared property 'bos_ownercontactid'")


def test_expand_needs_read_on_the_target_table(
    tokens: Tokens, connect: Callable[[str | None], Api]
) -> None:
    dave = connect(tokens.user("dave"))
    rows = dave.values("contacts?$select=fullname&$top=1")
    assert rows
    response = dave.get("contacts?$select=fullname&$expand=parentcustomerid_account($select=name)")
    assert_error(response, 403, "0x80040220", "is missing prvReadAccount privilege")


# --- service protection limits -------------------------------------------------------------------


def test_request_limit_gives_429_with_retry_after(
    alice: Api, bob: Api, control: requests.Session, dataverse: Any
) -> None:
    url = f"{dataverse.url}/_emulator/limits"
    control.delete(url)  # forget earlier tests' requests
    log = dataverse.app.state.dataverse.control
    since = last_seq(log)
    assert control.put(url, json={"requests": 3, "window_seconds": 60}).status_code == 200
    remaining = [alice.get("WhoAmI").headers["x-ms-ratelimit-burst-remaining-xrm-requests"]
                 for _ in range(3)]  # fmt: skip
    assert remaining == ["2", "1", "0"]
    throttled = alice.get("WhoAmI")
    assert_error(
        throttled,
        429,
        "0x80072322",
        "Number of requests exceeded the limit of 3 over time window of 60 seconds.",
    )
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert bob.get("WhoAmI").status_code == 200  # limits are per user
    logged = logged_since(log, since, 5)[3]
    assert (logged["status"], logged["caller"]["systemuserid"]) == (429, ALICE)
    snapshot = control.get(url).json()
    assert snapshot["callers"][ALICE]["requests"] == 3
    assert control.delete(url).status_code == 204
    assert alice.get("WhoAmI").status_code == 200


def test_execution_time_limit(alice: Api, control: requests.Session, dataverse: Any) -> None:
    url = f"{dataverse.url}/_emulator/limits"
    control.delete(url)
    control.put(url, json={"execution_ms": 1})
    alice.get("contacts?$select=fullname")
    throttled = alice.get("WhoAmI")
    assert_error(throttled, 429, "0x80072321", "Combined execution time of incoming requests")
    assert int(throttled.headers["Retry-After"]) >= 1


def test_reset_restores_default_limits(control: requests.Session, dataverse: Any) -> None:
    url = f"{dataverse.url}/_emulator/limits"
    control.put(url, json={"requests": 1})
    assert control.post(f"{dataverse.url}/_emulator/reset").status_code == 204
    assert control.get(url).json()["thresholds"] == {
        "requests": 6000,
        "execution_ms": 1_200_000,
        "concurrent": 52,
        "window_seconds": 300.0,
    }


@pytest.mark.parametrize(
    "body", [{"requests": 0}, {"requests": "5"}, {"nonsense": 1}, [1], {"concurrent": True}]
)
def test_bad_limit_settings_are_400(control: requests.Session, dataverse: Any, body: Any) -> None:
    response = control.put(f"{dataverse.url}/_emulator/limits", json=body)
    assert response.status_code == 400
    assert "error" in response.json()


def test_users_control_route(control: requests.Session, dataverse: Any) -> None:
    users = control.get(f"{dataverse.url}/_emulator/users").json()["users"]
    by_name = {u["name"]: u for u in users}
    assert by_name["alice"]["privileges"]["contacts"]["read"] == "user"
    assert by_name["central-api"]["kind"] == "application"
    assert "carol" not in by_name


# --- real tokens from the Entra emulator ---------------------------------------------------------


@pytest.fixture
def msal_apps(msal_apps: MsalApps, monkeypatch: pytest.MonkeyPatch) -> MsalApps:
    """The Entra tests' MSAL clients (tests/devstack/conftest.py), with `REQUESTS_CA_BUNDLE`
    unset so that MSAL uses the dev CA it is given."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return msal_apps


@pytest.fixture
def middle_tier(
    msal_apps: MsalApps, tenant: Tenant, material: Material
) -> msal.ConfidentialClientApplication:
    """The central API's MSAL app, with its secret."""
    return msal_apps.confidential(
        tenant.app("central-api").client_id, material.client_secret("central-api")
    )


def test_client_credentials_token_from_msal(
    middle_tier: msal.ConfidentialClientApplication,
    dataverse: Any,
    connect: Callable[[str | None], Api],
) -> None:
    result = middle_tier.acquire_token_for_client([f"{dataverse.url}/.default"])
    assert "access_token" in result, result
    api = connect(result["access_token"])
    assert api.get("WhoAmI").json()["UserId"] == CENTRAL_API
    assert len(api.values("bos_vehicles?$select=bos_name&$top=3")) == 3


def test_on_behalf_of_token_from_msal_applies_the_users_roles(
    msal_apps: MsalApps,
    middle_tier: msal.ConfidentialClientApplication,
    tenant: Tenant,
    material: Material,
    dataverse: Any,
    connect: Callable[[str | None], Api],
) -> None:
    portal = msal_apps.public(tenant.app("portal").client_id)
    login = ropc(portal, tenant.user("alice").upn, material.password("alice"), [api_scope(tenant)])
    assert "access_token" in login, login
    result = middle_tier.acquire_token_on_behalf_of(
        login["access_token"], scopes=[f"{dataverse.url}/user_impersonation"]
    )
    assert "access_token" in result, result
    api = connect(result["access_token"])
    assert api.get("WhoAmI").json()["UserId"] == ALICE
    owners = {r["_ownerid_value"] for r in api.values("contacts?$select=_ownerid_value")}
    assert owners == {ALICE}


# --- owners --------------------------------------------------------------------------------------


def test_owner_can_be_assigned_with_organization_depth_only(service: Api, alice: Api) -> None:
    created = service.post(
        "bos_vehicles?$select=_ownerid_value",
        {"bos_name": "Kia EV6 EL55555", "ownerid@odata.bind": f"/systemusers({BOB})"},
        headers={"Prefer": "return=representation"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["_ownerid_value"] == BOB
    refused = alice.post(
        "contacts", {"lastname": "Owned", "ownerid@odata.bind": f"/systemusers({BOB})"}
    )
    assert_error(refused, 403, "0x80048306", "AccessRights: CreateAccess")


def test_system_users_are_readable_and_expandable_by_everyone(alice: Api) -> None:
    users = alice.values("systemusers?$select=fullname,azureactivedirectoryobjectid")
    assert {u["fullname"] for u in users} >= {"Alice Andersen", "Bob Berg"}
    mine = alice.values("contacts?$select=lastname&$expand=ownerid($select=fullname)&$top=2")
    assert [c["ownerid"]["fullname"] for c in mine] == ["Alice Andersen", "Alice Andersen"]
    assert_error(
        alice.post("systemusers", {"fullname": "x"}), 403, "0x80040220", "prvCreateSystemUser"
    )
