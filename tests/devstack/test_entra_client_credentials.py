"""Client credentials with real clients (MSAL, azure-identity): secret, Basic, certificates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import CertificateCredential, ClientSecretCredential

from devstack.pki import Material
from devstack.tenant import Tenant
from tests.declared import app_roles
from tests.devstack.entra_helpers import (
    OMIT,
    MsalApps,
    Validator,
    api_scope,
    assert_entra_error,
    cert_credential,
    client_credentials_form,
)


def test_secret_gives_v2_app_token_with_assigned_roles(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator
) -> None:
    sync = tenant.app("dealer-sync")
    app = msal_apps.confidential(sync.client_id, material.client_secret("dealer-sync"))
    result = app.acquire_token_for_client(scopes=[api_scope(tenant)])
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert "refresh_token" not in result
    assert "id_token" not in result
    assert 3600 <= result["expires_in"] <= 5400

    claims = validator.api_claims(result["access_token"])
    assert claims["ver"] == "2.0"
    assert claims["azp"] == sync.client_id
    assert claims["azpacr"] == "1"
    assert sorted(claims["roles"]) == sorted(app_roles(tenant, "dealer-sync"))
    assert claims["idtyp"] == "app"
    assert "scp" not in claims
    assert claims["tid"] == tenant.id
    assert claims["oid"] == claims["sub"]
    assert 3600 <= claims["exp"] - claims["iat"] <= 5400
    for claim in ("uti", "rh", "nbf"):
        assert claim in claims


def test_app_without_assignment_gets_no_roles_claim(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator
) -> None:
    app = msal_apps.confidential(
        tenant.app("no-access").client_id,
        material.client_secret("no-access"),
    )
    result = app.acquire_token_for_client(scopes=[api_scope(tenant)])
    assert "roles" not in validator.api_claims(result["access_token"])


@pytest.mark.parametrize("sha256", [False, True], ids=["RS256-x5t", "PS256-x5t#S256"])
def test_certificate_credential(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator, sha256: bool
) -> None:
    sync = tenant.app("dealer-sync")
    credential = cert_credential(material.client_certs["dealer-sync"], sha256=sha256)
    app = msal_apps.confidential(sync.client_id, credential)
    result = app.acquire_token_for_client(scopes=[api_scope(tenant)])
    assert "access_token" in result, result
    assert validator.api_claims(result["access_token"])["azpacr"] == "2"


def test_certificate_of_another_app_is_refused(
    msal_apps: MsalApps, tenant: Tenant, material: Material
) -> None:
    credential = cert_credential(material.client_certs["no-access"], sha256=False)
    app = msal_apps.confidential(tenant.app("dealer-sync").client_id, credential)
    result = app.acquire_token_for_client(scopes=[api_scope(tenant)])
    assert_entra_error(result, "invalid_client", 700027)


def test_dataverse_resource_gets_v1_token(
    msal_apps: MsalApps, tenant: Tenant, material: Material, validator: Validator
) -> None:
    api = tenant.app("central-api")
    dataverse_url = tenant.app("dataverse").identifier_uris[0]
    app = msal_apps.confidential(api.client_id, material.client_secret("central-api"))
    result = app.acquire_token_for_client(scopes=[f"{dataverse_url}/.default"])
    claims = validator.v1_claims(result["access_token"], audience=dataverse_url)
    assert claims["ver"] == "1.0"
    assert claims["appid"] == api.client_id
    assert claims["appidacr"] == "1"
    assert "idtyp" not in claims
    assert "roles" not in claims


def test_client_id_and_bare_client_id_scopes_address_the_same_api(
    entra: Any, tenant: Tenant, material: Material, http: requests.Session
) -> None:
    sync = tenant.app("dealer-sync")
    response = http.post(
        f"{entra.url}/{tenant.domain}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "scope": f"{tenant.app('central-api').client_id}/.default",
        },
        auth=(sync.client_id, material.client_secret("dealer-sync")),  # client_secret_basic
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert body["ext_expires_in"] > body["expires_in"]


def test_azure_identity_secret_and_certificate(
    entra: Any, tenant: Tenant, material: Material, ca_bundle: Path, validator: Validator
) -> None:
    sync = tenant.app("dealer-sync")
    common: dict[str, Any] = {
        "authority": entra.url,
        "disable_instance_discovery": True,
        "connection_verify": str(ca_bundle),
    }
    by_secret = ClientSecretCredential(
        tenant.id, sync.client_id, material.client_secret("dealer-sync"), **common
    )
    by_cert = CertificateCredential(
        tenant.id, sync.client_id, str(material.client_certs["dealer-sync"]), **common
    )
    for credential in (by_secret, by_cert):
        with credential:
            token = credential.get_token(api_scope(tenant))
        claims = validator.api_claims(token.token)
        assert claims["azp"] == sync.client_id
        assert abs(token.expires_on - claims["exp"]) <= 2  # computed client-side from expires_in


def test_bad_secret_is_401_invalid_client(
    token_url: str, tenant: Tenant, material: Material, http: requests.Session
) -> None:
    response = http.post(
        token_url,
        data=client_credentials_form(tenant, material, client_secret="not-the-secret"),
        headers={"client-request-id": "5d1f8c2e-0b7a-4c55-9a61-2f2a0e7b9c11"},
    )
    assert response.status_code == 401
    body = response.json()
    assert_entra_error(body, "invalid_client", 7000215)
    assert body["correlation_id"] == "5d1f8c2e-0b7a-4c55-9a61-2f2a0e7b9c11"


def test_msal_sees_bad_secret(msal_apps: MsalApps, tenant: Tenant) -> None:
    app = msal_apps.confidential(tenant.app("dealer-sync").client_id, "wrong")
    result = app.acquire_token_for_client(scopes=[api_scope(tenant)])
    assert_entra_error(result, "invalid_client", 7000215)


@pytest.mark.parametrize(
    ("scope", "error", "code"),
    [
        ("api://c8a8d8a5-a350-45e2-af0f-42a4e0716e11/customer.read", "invalid_scope", 1002012),
        ("api://unknown-api/.default", "invalid_resource", 500011),
        (
            "api://c8a8d8a5-a350-45e2-af0f-42a4e0716e11/.default "
            "api://46441eb5-f1f8-4fa9-ae74-d302e6c7ad86/.default",
            "invalid_scope",
            28000,
        ),
    ],
    ids=["not-default", "unknown-resource", "two-resources"],
)
def test_client_credentials_scope_errors(
    token_url: str,
    tenant: Tenant,
    material: Material,
    http: requests.Session,
    scope: str,
    error: str,
    code: int,
) -> None:
    response = http.post(token_url, data=client_credentials_form(tenant, material, scope=scope))
    assert response.status_code == 400
    assert_entra_error(response.json(), error, code)


def test_public_client_cannot_use_client_credentials(
    token_url: str, tenant: Tenant, material: Material, http: requests.Session
) -> None:
    form = client_credentials_form(
        tenant, material, client_id=tenant.app("portal").client_id, client_secret=OMIT
    )
    response = http.post(token_url, data=form)
    assert response.status_code == 401
    assert_entra_error(response.json(), "invalid_client", 7000218)
