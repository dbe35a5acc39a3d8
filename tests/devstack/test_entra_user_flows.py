"""Delegated flows: resource-owner password for portal users, refresh tokens, and the
on-behalf-of exchange a middle-tier API makes, with every refusal Entra would give."""

from __future__ import annotations

import base64
import gc
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import OnBehalfOfCredential

from devstack.pki import Material
from devstack.tenant import Tenant
from tests.devstack.entra_helpers import (
    MsalApps,
    UserTokens,
    Validator,
    assert_entra_error,
    ropc,
)


@pytest.fixture
def msal_apps(entra: Any, tenant: Tenant, ca_bundle: Path) -> Iterator[MsalApps]:
    apps = MsalApps(entra.url, tenant, ca_bundle)
    yield apps
    apps.close()


@pytest.fixture
def validator(entra: Any, tenant: Tenant, ca_bundle: Path) -> Validator:
    return Validator(f"{entra.url}/{tenant.id}/discovery/v2.0/keys", ca_bundle)


@pytest.fixture
def user_tokens(entra: Any, tenant: Tenant) -> UserTokens:
    return UserTokens(entra.app.state.entra, tenant, tenant.app("central-api").client_id)


def _api(tenant: Tenant, scope: str) -> str:
    return f"{tenant.app('central-api').identifier_uris[0]}/{scope}"


def _dataverse(tenant: Tenant, scope: str = "user_impersonation") -> str:
    return f"{tenant.app('dataverse').identifier_uris[0]}/{scope}"


def _portal_login(
    msal_apps: MsalApps, tenant: Tenant, material: Material, user: str = "alice"
) -> dict[str, Any]:
    app = msal_apps.public(tenant.app("portal").client_id)
    result = ropc(app, tenant.user(user).upn, material.password(user), [_api(tenant, ".default")])
    assert "access_token" in result, result
    return result


# --- resource-owner password ---------------------------------------------------------------------


def test_password_grant_gives_v2_user_token_with_all_consented_scopes(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator, entra: Any
) -> None:
    app = msal_apps.public(tenant.app("portal").client_id)
    result = ropc(
        app, "alice@demo.example", material.password("alice"), [_api(tenant, "customer.read")]
    )
    assert "access_token" in result, result
    assert {"refresh_token", "id_token", "client_info", "scope"} <= set(result)
    alice, api = tenant.user("alice"), tenant.app("central-api")
    claims = validator.claims(
        result["access_token"], audience=api.client_id, issuer=f"{entra.url}/{tenant.id}/v2.0"
    )
    # Entra puts every scope the client was granted on the API in `scp`, not just the asked one.
    assert claims["scp"].split() == [
        "customer.read",
        "customer.readwrite",
        "case.read",
        "case.readwrite",
    ]
    assert claims["oid"] == alice.oid
    assert claims["preferred_username"] == alice.upn
    assert claims["name"] == alice.display_name
    assert claims["azp"] == tenant.app("portal").client_id
    assert claims["azpacr"] == "0"
    assert claims["idtyp"] == "user"
    assert claims["ver"] == "2.0"
    assert "roles" not in claims
    assert result["id_token_claims"]["aud"] == tenant.app("portal").client_id
    info = json.loads(base64.urlsafe_b64decode(result["client_info"] + "=="))
    assert info == {"uid": alice.oid, "utid": tenant.id}
    # MSAL filed the account under the user, from client_info.
    assert app.get_accounts()[0]["home_account_id"] == f"{alice.oid}.{tenant.id}"


def test_sub_is_pairwise_and_stable(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator, entra: Any
) -> None:
    subs = []
    for _ in range(2):
        token = _portal_login(msal_apps, tenant, material)["access_token"]
        claims = validator.claims(
            token,
            audience=tenant.app("central-api").client_id,
            issuer=f"{entra.url}/{tenant.id}/v2.0",
        )
        subs.append(claims["sub"])
    assert subs[0] == subs[1]
    assert subs[0] != tenant.user("alice").oid


def test_bad_password_is_invalid_grant(
    msal_apps: MsalApps, tenant: Tenant, material: Material
) -> None:
    app = msal_apps.public(tenant.app("portal").client_id)
    result = ropc(app, "bob@demo.example", "wrong", [_api(tenant, ".default")])
    assert_entra_error(result, "invalid_grant", 50126)


def test_password_without_consent_is_consent_required(
    msal_apps: MsalApps, tenant: Tenant, material: Material
) -> None:
    app = msal_apps.public(tenant.app("reporting").client_id)
    partner = tenant.app("partner-api").identifier_uris[0]
    result = ropc(app, "bob@demo.example", material.password("bob"), [f"{partner}/.default"])
    assert_entra_error(result, "invalid_grant", 65001, suberror="consent_required")


def test_password_for_scope_beyond_consent_is_consent_required(
    msal_apps: MsalApps, tenant: Tenant, material: Material
) -> None:
    app = msal_apps.public(tenant.app("reporting").client_id)
    result = ropc(
        app, "bob@demo.example", material.password("bob"), [_api(tenant, "case.readwrite")]
    )
    assert_entra_error(result, "invalid_grant", 65001, suberror="consent_required")


def test_unknown_scope_is_invalid_scope(
    msal_apps: MsalApps, tenant: Tenant, material: Material
) -> None:
    app = msal_apps.public(tenant.app("portal").client_id)
    result = ropc(app, "bob@demo.example", material.password("bob"), [_api(tenant, "nope")])
    assert_entra_error(result, "invalid_scope", 70011)


def test_confidential_client_may_use_password_grant(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator, entra: Any
) -> None:
    api = tenant.app("central-api")
    app = msal_apps.confidential(
        api.client_id, material.client_secret("central-api"), for_password_grant=True
    )
    result = ropc(app, "alice@demo.example", material.password("alice"), [_dataverse(tenant)])
    assert "access_token" in result, result
    dataverse_url = tenant.app("dataverse").identifier_uris[0]
    claims = validator.claims(
        result["access_token"], audience=dataverse_url, issuer=f"{entra.url}/{tenant.id}/"
    )
    assert claims["ver"] == "1.0"
    assert claims["appidacr"] == "1"
    assert claims["upn"] == claims["unique_name"] == "alice@demo.example"
    assert claims["scp"] == "user_impersonation"


# --- refresh tokens ------------------------------------------------------------------------------


def test_refresh_token_redeems_for_same_and_other_consented_resource(
    tenant: Tenant, material: Material, entra: Any, http: requests.Session, ca_bundle: Path
) -> None:
    token_url = f"{entra.url}/{tenant.id}/oauth2/v2.0/token"
    portal = tenant.app("portal").client_id
    first = http.post(
        token_url,
        data={
            "grant_type": "password",
            "client_id": portal,
            "username": "bob@demo.example",
            "password": material.password("bob"),
            "scope": f"{_api(tenant, 'customer.read')} openid profile offline_access",
        },
    ).json()
    partner = tenant.app("partner-api").identifier_uris[0]
    for scope in (_api(tenant, ".default"), f"{partner}/access_as_user offline_access"):
        again = http.post(
            token_url,
            data={
                "grant_type": "refresh_token",
                "client_id": portal,
                "refresh_token": first["refresh_token"],
                "scope": scope,
            },
        )
        assert again.status_code == 200, again.text
        assert "access_token" in again.json()
    # Another client cannot use bob's refresh token.
    stolen = http.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": tenant.app("reporting").client_id,
            "refresh_token": first["refresh_token"],
            "scope": _api(tenant, ".default"),
        },
    )
    assert_entra_error(stolen.json(), "invalid_grant", 70000)
    bogus = http.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": portal,
            "refresh_token": "not-a-refresh-token",
            "scope": _api(tenant, ".default"),
        },
    )
    assert_entra_error(bogus.json(), "invalid_grant", 9002313)


def test_msal_silent_refresh(msal_apps: MsalApps, tenant: Tenant, material: Material) -> None:
    app = msal_apps.public(tenant.app("portal").client_id)
    ropc(app, "alice@demo.example", material.password("alice"), [_api(tenant, "customer.read")])
    account = app.get_accounts()[0]
    result = app.acquire_token_silent_with_error(
        [_api(tenant, "case.read")], account=account, force_refresh=True
    )
    assert result is not None
    assert "access_token" in result, result


# --- on-behalf-of --------------------------------------------------------------------------------


def test_obo_to_dataverse_with_msal(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator, entra: Any
) -> None:
    user_token = _portal_login(msal_apps, tenant, material)["access_token"]
    api = tenant.app("central-api")
    app = msal_apps.confidential(api.client_id, material.client_secret("central-api"))
    result = app.acquire_token_on_behalf_of(user_token, scopes=[_dataverse(tenant, ".default")])
    assert "access_token" in result, result
    for field in ("refresh_token", "id_token", "client_info", "scope", "ext_expires_in"):
        assert field in result, field
    assert result["id_token_claims"]["aud"] == api.client_id
    dataverse_url = tenant.app("dataverse").identifier_uris[0]
    claims = validator.claims(
        result["access_token"], audience=dataverse_url, issuer=f"{entra.url}/{tenant.id}/"
    )
    assert claims["appid"] == api.client_id
    assert claims["oid"] == tenant.user("alice").oid
    assert claims["scp"] == "user_impersonation"
    assert claims["ver"] == "1.0"
    # MSAL cached it under alice, not in the app-token partition.
    accounts = app.get_accounts()
    assert [a["home_account_id"] for a in accounts] == [f"{tenant.user('alice').oid}.{tenant.id}"]


def test_obo_with_azure_identity(
    msal_apps: MsalApps, tenant: Tenant, material: Material, entra: Any, ca_bundle: Path
) -> None:
    user_token = _portal_login(msal_apps, tenant, material, user="bob")["access_token"]
    api = tenant.app("central-api")
    credential = OnBehalfOfCredential(
        tenant.id,
        api.client_id,
        client_secret=material.client_secret("central-api"),
        user_assertion=user_token,
        authority=entra.url,
        disable_instance_discovery=True,
        connection_verify=str(ca_bundle),
    )
    with credential:
        token = credential.get_token(_dataverse(tenant, ".default"))
    assert token.token


def test_obo_for_user_under_conditional_access_needs_interaction(
    msal_apps: MsalApps, tenant: Tenant, material: Material
) -> None:
    user_token = _portal_login(msal_apps, tenant, material, user="dave")["access_token"]
    api = tenant.app("central-api")
    app = msal_apps.confidential(api.client_id, material.client_secret("central-api"))
    result = app.acquire_token_on_behalf_of(user_token, scopes=[_dataverse(tenant, ".default")])
    assert_entra_error(result, "interaction_required", 50079)
    policy = tenant.conditional_access[0].id
    assert json.loads(result["claims"]) == {
        "access_token": {"capolids": {"essential": True, "values": [policy]}}
    }


def test_obo_without_consent_is_consent_required(
    msal_apps: MsalApps, tenant: Tenant, material: Material, entra: Any
) -> None:
    partner = tenant.app("partner-api")
    portal = msal_apps.public(tenant.app("portal").client_id)
    login = ropc(
        portal,
        "alice@demo.example",
        material.password("alice"),
        [f"{partner.identifier_uris[0]}/access_as_user"],
    )
    app = msal_apps.confidential(partner.client_id, material.client_secret("partner-api"))
    result = app.acquire_token_on_behalf_of(
        login["access_token"], scopes=[_dataverse(tenant, ".default")]
    )
    assert_entra_error(result, "invalid_grant", 65001, suberror="consent_required")


@pytest.mark.parametrize(
    ("variant", "error", "code"),
    [
        ("expired", "invalid_grant", 500133),
        ("foreign_signed", "invalid_grant", 50013),
        ("unknown_kid", "invalid_grant", 50013),
        ("wrong_audience", "invalid_grant", 500131),
        ("app_only", "invalid_grant", 50013),
    ],
)
def test_obo_refuses_bad_assertions(
    msal_apps: MsalApps,
    tenant: Tenant,
    material: Material,
    user_tokens: UserTokens,
    variant: str,
    error: str,
    code: int,
) -> None:
    assertion = getattr(user_tokens, variant)()
    api = tenant.app("central-api")
    app = msal_apps.confidential(api.client_id, material.client_secret("central-api"))
    result = app.acquire_token_on_behalf_of(assertion, scopes=[_dataverse(tenant, ".default")])
    assert_entra_error(result, error, code)


def test_obo_accepts_a_crafted_valid_assertion(
    msal_apps: MsalApps, tenant: Tenant, material: Material, user_tokens: UserTokens
) -> None:
    api = tenant.app("central-api")
    app = msal_apps.confidential(api.client_id, material.client_secret("central-api"))
    result = app.acquire_token_on_behalf_of(
        user_tokens.valid("bob"), scopes=[_dataverse(tenant, "user_impersonation")]
    )
    assert "access_token" in result, result


def test_obo_garbage_assertion_is_invalid_request(
    tenant: Tenant, material: Material, entra: Any, http: requests.Session, ca_bundle: Path
) -> None:
    api = tenant.app("central-api")
    response = http.post(
        f"{entra.url}/{tenant.id}/oauth2/v2.0/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "requested_token_use": "on_behalf_of",
            "client_id": api.client_id,
            "client_secret": material.client_secret("central-api"),
            "assertion": "this.is.not-a-jwt",
            "scope": _dataverse(tenant, ".default"),
        },
    )
    assert response.status_code == 400
    assert_entra_error(response.json(), "invalid_request", 50027)


def test_azure_identity_obo_error_surfaces(
    tenant: Tenant,
    material: Material,
    entra: Any,
    ca_bundle: Path,
    user_tokens: UserTokens,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # azure-identity logs the failure with its traceback; a captured record would keep the
    # failed answer's connection alive past the test, and the server's shutdown waits for it.
    caplog.set_level(logging.CRITICAL, logger="azure.identity")

    def fail_once() -> None:
        credential = OnBehalfOfCredential(
            tenant.id,
            tenant.app("central-api").client_id,
            client_secret=material.client_secret("central-api"),
            user_assertion=user_tokens.expired(),
            authority=entra.url,
            disable_instance_discovery=True,
            connection_verify=str(ca_bundle),
        )
        with credential, pytest.raises(ClientAuthenticationError, match="AADSTS500133"):
            credential.get_token(_dataverse(tenant, ".default"))

    fail_once()
    gc.collect()  # the traceback cycle still holds that connection
