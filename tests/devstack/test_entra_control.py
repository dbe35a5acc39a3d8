"""The control plane: key rotation, in-process and HTTP signing, access-token versions,
consents, the request log, fault injection and reset."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from msal.exceptions import MsalServiceError

from devstack.pki import Material
from devstack.tenant import Tenant
from tests.declared import consented
from tests.devstack.entra_helpers import (
    MsalApps,
    UserTokens,
    Validator,
    api_scope,
    assert_entra_error,
    ropc,
)


@pytest.fixture
def control(entra: Any, ca_bundle: Path) -> Iterator[requests.Session]:
    """A session for `/_emulator/`; whatever a test changes is reset afterwards."""
    with requests.Session() as session:
        session.verify = str(ca_bundle)
        yield session
        assert session.post(f"{entra.url}/_emulator/reset").status_code == 204


def _client_credentials(msal_apps: MsalApps, tenant: Tenant, material: Material) -> dict[str, Any]:
    """dealer-sync asks a fresh MSAL app for a central-API token; the answer as MSAL gives it."""
    app = msal_apps.confidential(
        tenant.app("dealer-sync").client_id, material.client_secret("dealer-sync")
    )
    result: dict[str, Any] = app.acquire_token_for_client(scopes=[api_scope(tenant)])
    return result


@pytest.fixture
def app_token(msal_apps: MsalApps, tenant: Tenant, material: Material) -> Callable[[], str]:
    """`app_token()`: dealer-sync's central-API access token, from a fresh MSAL app each call."""

    def fetch() -> str:
        result = _client_credentials(msal_apps, tenant, material)
        assert "access_token" in result, result
        token: str = result["access_token"]
        return token

    return fetch


# --- keys ----------------------------------------------------------------------------------------


def test_key_rotation_add_promote_retire_reset(
    entra: Any, control: requests.Session, app_token: Callable[[], str], validator: Validator
) -> None:
    base = f"{entra.url}/_emulator/keys"
    start = control.get(base).json()["keys"]
    assert len(start) == 2
    assert [k["active"] for k in start] == [True, False]
    old_kid = start[0]["kid"]
    old_token = app_token()

    added = control.post(base, json={"action": "add"})
    assert added.status_code == 201
    new_kid = added.json()["kid"]
    assert added.json()["active"] is False
    published = {k["kid"] for k in validator.jwks()["keys"]}
    assert published == {k["kid"] for k in start} | {new_kid}
    # Published but not signing yet.
    assert jwt.get_unverified_header(app_token())["kid"] == old_kid

    assert control.post(base, json={"action": "promote", "kid": new_kid}).json()["active"]
    new_token = app_token()
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert validator.api_claims(new_token)["azp"]
    assert validator.api_claims(old_token)["azp"]  # still published

    assert control.post(base, json={"action": "retire", "kid": old_kid}).status_code == 200
    assert old_kid not in {k["kid"] for k in validator.jwks()["keys"]}
    with pytest.raises(jwt.PyJWKClientError):
        validator.api_claims(old_token)

    assert control.post(f"{entra.url}/_emulator/reset").status_code == 204
    assert control.get(base).json()["keys"] == start


def test_retired_key_no_longer_validates_obo_assertions(
    entra: Any, tenant: Tenant, material: Material, control: requests.Session, msal_apps: MsalApps
) -> None:
    handle = entra.app.state.entra
    tokens = UserTokens(handle, tenant, tenant.app("central-api").client_id)
    assertion = tokens.valid()
    old_kid = handle.keys.active.kid
    new_kid = control.post(f"{entra.url}/_emulator/keys", json={"action": "add"}).json()["kid"]
    control.post(f"{entra.url}/_emulator/keys", json={"action": "promote", "kid": new_kid})
    control.post(f"{entra.url}/_emulator/keys", json={"action": "retire", "kid": old_kid})
    app = msal_apps.confidential(
        tenant.app("central-api").client_id, material.client_secret("central-api")
    )
    dataverse = tenant.app("dataverse").identifier_uris[0]
    result = app.acquire_token_on_behalf_of(assertion, scopes=[f"{dataverse}/.default"])
    assert_entra_error(result, "invalid_grant", 50013)


@pytest.mark.parametrize(
    "body",
    [
        {"action": "retire", "kid": "no-such-kid"},
        {"action": "promote", "kid": "no-such-kid"},
        {"action": "promote"},
        {"action": "explode"},
        ["not", "an", "object"],
    ],
)
def test_bad_key_requests(entra: Any, control: requests.Session, body: Any) -> None:
    response = control.post(f"{entra.url}/_emulator/keys", json=body)
    assert response.status_code == 400
    assert "error" in response.json()


def test_the_signing_key_cannot_be_retired(entra: Any, control: requests.Session) -> None:
    active = next(
        k for k in control.get(f"{entra.url}/_emulator/keys").json()["keys"] if k["active"]
    )
    response = control.post(
        f"{entra.url}/_emulator/keys", json={"action": "retire", "kid": active["kid"]}
    )
    assert response.status_code == 400


# --- signing -------------------------------------------------------------------------------------


def test_sign_over_http_and_in_process(
    entra: Any, tenant: Tenant, control: requests.Session, validator: Validator
) -> None:
    claims = {"aud": "evil-test", "iss": "whoever", "exp": 4_000_000_000, "iat": 0, "nbf": 0}
    over_http = control.post(
        f"{entra.url}/_emulator/sign", json={"claims": claims, "headers": {"typ": "at+jwt"}}
    ).json()["token"]
    assert jwt.get_unverified_header(over_http)["typ"] == "at+jwt"
    in_process = entra.app.state.entra.sign(claims)
    for token in (over_http, in_process):
        assert validator.claims(token, audience="evil-test", issuer="whoever")["iat"] == 0
    assert control.post(f"{entra.url}/_emulator/sign", json={"claims": "x"}).status_code == 400
    assert control.post(f"{entra.url}/_emulator/sign", data=b"{not json").status_code == 400


# --- access-token version ------------------------------------------------------------------------


class Apps:
    """`/_emulator/apps`: the app registrations' token settings, read and changed over HTTP."""

    def __init__(self, entra: Any, control: requests.Session) -> None:
        self.url = f"{entra.url}/_emulator/apps"
        self.control = control

    def put(self, app: str, body: Any) -> requests.Response:
        return self.control.put(f"{self.url}/{app}", json=body)

    def listed(self, app: str) -> dict[str, Any]:
        listed: dict[str, Any] = self.control.get(self.url).json()["apps"][app]
        return listed


@pytest.fixture
def apps(entra: Any, control: requests.Session) -> Apps:
    return Apps(entra, control)


def test_switch_central_api_to_v1_tokens(
    tenant: Tenant, apps: Apps, app_token: Callable[[], str], validator: Validator
) -> None:
    response = apps.put("central-api", {"access_token_version": 1})
    assert response.json() == {
        "name": "central-api",
        "access_token_version": 1,
        "optional_claims": ["idtyp"],
    }
    claims = validator.v1_claims(
        app_token(),
        audience=tenant.app("central-api").identifier_uris[0],
    )
    assert claims["ver"] == "1.0"
    assert claims["appid"] == tenant.app("dealer-sync").client_id
    assert claims["idtyp"] == "app"
    assert apps.listed("central-api")["access_token_version"] == 1
    assert apps.put("central-api", {"access_token_version": 3}).status_code == 400
    assert apps.put("nope", {"access_token_version": 1}).status_code == 400


def test_remove_the_optional_idtyp_claim(
    tenant: Tenant, apps: Apps, app_token: Callable[[], str], validator: Validator
) -> None:
    response = apps.put("central-api", {"optional_claims": []})
    assert response.json() == {
        "name": "central-api",
        "access_token_version": 2,
        "optional_claims": [],
    }
    claims = validator.api_claims(app_token())
    assert "idtyp" not in claims
    assert claims["oid"] == claims["sub"]
    assert apps.listed("central-api")["optional_claims"] == []
    for bad in ({"optional_claims": ["groups"]}, {"optional_claims": "idtyp"}, {}):
        assert apps.put("central-api", bad).status_code == 400
    # All or nothing: a bad claim name leaves the version alone too.
    both = {"access_token_version": 1, "optional_claims": ["x"]}
    assert apps.put("central-api", both).ok is False
    assert apps.listed("central-api") == {
        "client_id": tenant.app("central-api").client_id,
        "access_token_version": 2,
        "optional_claims": [],
    }


# --- consents ------------------------------------------------------------------------------------


def test_revoke_and_grant_consent(
    entra: Any, tenant: Tenant, material: Material, control: requests.Session, msal_apps: MsalApps
) -> None:
    url = f"{entra.url}/_emulator/consents"
    api_default = api_scope(tenant)
    partner_default = f"{tenant.app('partner-api').identifier_uris[0]}/.default"

    revoked = control.request(
        "DELETE", url, json={"client": "portal", "resource": "central-api"}
    ).json()
    assert revoked["scopes"] == []
    portal = msal_apps.public(tenant.app("portal").client_id)
    result = ropc(portal, "alice@demo.example", material.password("alice"), [api_default])
    assert_entra_error(result, "invalid_grant", 65001, suberror="consent_required")

    granted = control.post(
        url, json={"client": "reporting", "resource": "partner-api", "scopes": ["access_as_user"]}
    ).json()
    assert granted == {
        "client": "reporting",
        "resource": "partner-api",
        "scopes": ["access_as_user"],
    }
    reporting = msal_apps.public(tenant.app("reporting").client_id)
    result = ropc(reporting, "bob@demo.example", material.password("bob"), [partner_default])
    assert "access_token" in result, result

    bad = control.post(url, json={"client": "portal", "resource": "central-api", "scopes": ["x"]})
    assert bad.status_code == 400
    control.post(f"{entra.url}/_emulator/reset")
    consents = control.get(url).json()["consents"]
    assert {
        "client": "portal",
        "resource": "central-api",
        "scopes": consented(tenant, "portal"),
    } in consents
    assert not any(c["client"] == "reporting" and c["resource"] == "partner-api" for c in consents)


# --- request log and faults ----------------------------------------------------------------------


def test_request_log_names_grant_and_caller(
    entra: Any,
    tenant: Tenant,
    control: requests.Session,
    msal_apps: MsalApps,
    app_token: Callable[[], str],
) -> None:
    control.delete(f"{entra.url}/_emulator/requests")
    app_token()
    portal = msal_apps.public(tenant.app("portal").client_id)
    ropc(portal, "bob@demo.example", "wrong-password", [api_scope(tenant)])

    log = control.get(f"{entra.url}/_emulator/requests").json()["requests"]
    tokens = [r for r in log if r["path"].endswith("/oauth2/v2.0/token")]
    assert [(r["grant_type"], r["status"]) for r in tokens] == [
        ("client_credentials", 200),
        ("password", 400),
    ]
    assert tokens[0]["caller"] == {"appid": tenant.app("dealer-sync").client_id}
    assert tokens[1]["caller"] == {
        "appid": tenant.app("portal").client_id,
        "oid": tenant.user("bob").oid,
    }
    assert not any(r["path"].startswith("/_emulator") for r in log)


def test_faults_reach_msal(
    entra: Any,
    tenant: Tenant,
    material: Material,
    control: requests.Session,
    msal_apps: MsalApps,
    app_token: Callable[[], str],
) -> None:
    faults = f"{entra.url}/_emulator/faults"
    token_path = f"/{tenant.id}/oauth2/v2.0/token"
    control.post(
        faults,
        json={
            "path": token_path,
            "status": 429,
            "retry_after": 7,
            "count": 1,
            "body": {"error": "temporarily_unavailable", "error_description": "slow down"},
        },
    )
    throttled = _client_credentials(msal_apps, tenant, material)
    assert throttled["error"] == "temporarily_unavailable"

    control.post(faults, json={"path": token_path, "status": 503, "count": 1})
    with pytest.raises(MsalServiceError, match="503"):
        _client_credentials(msal_apps, tenant, material)
    # Used up: the next, fresh client gets its token.
    assert app_token()
    log = control.get(f"{entra.url}/_emulator/requests").json()["requests"]
    assert [r["status"] for r in log if r["path"] == token_path][-3:] == [429, 503, 200]
