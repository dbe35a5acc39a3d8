"""Delegated flows: resource-owner password for portal users, refresh tokens, and the
on-behalf-of exchange a middle-tier API makes, with every refusal Entra would give."""

from __future__ import annotations

import base64
import gc
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import OnBehalfOfCredential

from devstack.pki import Material
from devstack.tenant import Tenant
from tests.declared import consented
from tests.devstack.entra_helpers import (
    MsalApps,
    UserTokens,
    Validator,
    api_scope,
    assert_entra_error,
    obo_form,
    password_form,
    ropc,
)


def _dataverse(tenant: Tenant, scope: str = "user_impersonation") -> str:
    return f"{tenant.app('dataverse').identifier_uris[0]}/{scope}"


def _portal_login(
    msal_apps: MsalApps, tenant: Tenant, material: Material, user: str = "alice"
) -> dict[str, Any]:
    app = msal_apps.public(tenant.app("portal").client_id)
    result = ropc(app, tenant.user(user).upn, material.password(user), [api_scope(tenant)])
    assert "access_token" in result, result
    return result


# --- resource-owner password ---------------------------------------------------------------------


def test_password_grant_gives_v2_user_token_with_all_consented_scopes(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator
) -> None:
    app = msal_apps.public(tenant.app("portal").client_id)
    result = ropc(
        app, "alice@demo.example", material.password("alice"), [api_scope(tenant, "customer.read")]
    )
    assert "access_token" in result, result
    assert {"refresh_token", "id_token", "client_info", "scope"} <= set(result)
    alice = tenant.user("alice")
    claims = validator.api_claims(result["access_token"])
    # Entra puts every scope the client was granted on the API in `scp`, not just the asked one.
    assert claims["scp"].split() == consented(tenant, "portal")
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
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator
) -> None:
    subs = []
    for _ in range(2):
        token = _portal_login(msal_apps, tenant, material)["access_token"]
        subs.append(validator.api_claims(token)["sub"])
    assert subs[0] == subs[1]
    assert subs[0] != tenant.user("alice").oid


def test_bad_password_is_invalid_grant(
    msal_apps: MsalApps, tenant: Tenant, material: Material
) -> None:
    app = msal_apps.public(tenant.app("portal").client_id)
    result = ropc(app, "bob@demo.example", "wrong", [api_scope(tenant)])
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
        app, "bob@demo.example", material.password("bob"), [api_scope(tenant, "case.readwrite")]
    )
    assert_entra_error(result, "invalid_grant", 65001, suberror="consent_required")


def test_unknown_scope_is_invalid_scope(
    msal_apps: MsalApps, tenant: Tenant, material: Material
) -> None:
    app = msal_apps.public(tenant.app("portal").client_id)
    result = ropc(app, "bob@demo.example", material.password("bob"), [api_scope(tenant, "nope")])
    assert_entra_error(result, "invalid_scope", 70011)


def test_confidential_client_may_use_password_grant(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator
) -> None:
    api = tenant.app("central-api")
    app = msal_apps.confidential(
        api.client_id, material.client_secret("central-api"), for_password_grant=True
    )
    result = ropc(app, "alice@demo.example", material.password("alice"), [_dataverse(tenant)])
    assert "access_token" in result, result
    dataverse_url = tenant.app("dataverse").identifier_uris[0]
    claims = validator.v1_claims(result["access_token"], audience=dataverse_url)
    assert claims["ver"] == "1.0"
    assert claims["appidacr"] == "1"
    assert claims["upn"] == claims["unique_name"] == "alice@demo.example"
    assert claims["scp"] == "user_impersonation"


# --- refresh tokens ------------------------------------------------------------------------------


def test_refresh_token_redeems_for_same_and_other_consented_resource(
    tenant: Tenant, material: Material, token_url: str, http: requests.Session
) -> None:
    portal = tenant.app("portal").client_id
    first = http.post(
        token_url,
        data=password_form(
            tenant,
            "bob@demo.example",
            material.password("bob"),
            scope=f"{api_scope(tenant, 'customer.read')} openid profile offline_access",
        ),
    ).json()

    def redeem(client_id: str, refresh_token: str, scope: str) -> requests.Response:
        form = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "refresh_token": refresh_token,
            "scope": scope,
        }
        return http.post(token_url, data=form)

    partner = tenant.app("partner-api").identifier_uris[0]
    for scope in (api_scope(tenant), f"{partner}/access_as_user offline_access"):
        again = redeem(portal, first["refresh_token"], scope)
        assert again.status_code == 200, again.text
        assert "access_token" in again.json()
    # Another client cannot use bob's refresh token.
    stolen = redeem(tenant.app("reporting").client_id, first["refresh_token"], api_scope(tenant))
    assert_entra_error(stolen.json(), "invalid_grant", 70000)
    bogus = redeem(portal, "not-a-refresh-token", api_scope(tenant))
    assert_entra_error(bogus.json(), "invalid_grant", 9002313)


def test_msal_silent_refresh(msal_apps: MsalApps, tenant: Tenant, material: Material) -> None:
    app = msal_apps.public(tenant.app("portal").client_id)
    ropc(
        app, "alice@demo.example", material.password("alice"), [api_scope(tenant, "customer.read")]
    )
    account = app.get_accounts()[0]
    result = app.acquire_token_silent_with_error(
        [api_scope(tenant, "case.read")], account=account, force_refresh=True
    )
    assert result is not None
    assert "access_token" in result, result


# --- on-behalf-of --------------------------------------------------------------------------------


def test_obo_to_dataverse_with_msal(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator
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
    claims = validator.v1_claims(result["access_token"], audience=dataverse_url)
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
    msal_apps: MsalApps, tenant: Tenant, material: Material
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
    tenant: Tenant, material: Material, token_url: str, http: requests.Session
) -> None:
    response = http.post(token_url, data=obo_form(tenant, material, "this.is.not-a-jwt"))
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
