"""Discovery, JWKS and user realm, over HTTPS as clients see them."""

from __future__ import annotations

import ssl
from typing import Any

import jwt
import pytest
import requests

from devstack.tenant import Tenant


def test_v2_discovery_names_the_tenant_guid(
    entra: Any, tenant: Tenant, http: requests.Session
) -> None:
    for segment in (tenant.id, tenant.domain):
        doc = http.get(f"{entra.url}/{segment}/v2.0/.well-known/openid-configuration").json()
        root = f"{entra.url}/{tenant.id}"
        assert doc["issuer"] == f"{root}/v2.0"
        assert doc["token_endpoint"] == f"{root}/oauth2/v2.0/token"
        assert doc["authorization_endpoint"] == f"{root}/oauth2/v2.0/authorize"
        assert doc["jwks_uri"] == f"{root}/discovery/v2.0/keys"
        assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
        for field in (
            "response_types_supported",
            "subject_types_supported",
            "scopes_supported",
            "claims_supported",
            "tenant_region_scope",
            "cloud_instance_name",
        ):
            assert doc[field]


def test_v1_discovery(entra: Any, tenant: Tenant, http: requests.Session) -> None:
    doc = http.get(f"{entra.url}/{tenant.id}/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"{entra.url}/{tenant.id}/"
    assert doc["token_endpoint"] == f"{entra.url}/{tenant.id}/oauth2/token"
    assert doc["jwks_uri"] == f"{entra.url}/{tenant.id}/discovery/keys"


def test_common_discovery_keeps_entra_placeholder(entra: Any, http: requests.Session) -> None:
    doc = http.get(f"{entra.url}/organizations/v2.0/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"{entra.url}/{{tenantid}}/v2.0"
    assert doc["token_endpoint"] == f"{entra.url}/organizations/oauth2/v2.0/token"


def test_unknown_tenant_is_invalid_tenant(entra: Any, http: requests.Session) -> None:
    response = http.get(f"{entra.url}/contoso.example/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_tenant"
    assert body["error_codes"] == [90002]


def test_both_jwks_uris_serve_the_signing_keys(
    entra: Any, tenant: Tenant, http: requests.Session
) -> None:
    v2 = http.get(f"{entra.url}/{tenant.id}/discovery/v2.0/keys").json()
    v1 = http.get(f"{entra.url}/{tenant.id}/discovery/keys").json()
    assert v1 == v2
    assert len(v2["keys"]) >= 2
    for key in v2["keys"]:
        assert {"kty", "use", "kid", "x5t", "n", "e", "x5c"} <= set(key)
        assert key["kty"] == "RSA"
        assert key["use"] == "sig"


def test_in_process_sign_validates_against_published_jwks(
    entra: Any, tenant: Tenant, ca_bundle: Any
) -> None:
    handle = entra.app.state.entra
    token = handle.sign({"aud": "x", "iss": "y", "sub": "z"})
    header = jwt.get_unverified_header(token)
    assert header["kid"] == handle.keys.active.kid
    assert header["x5t"] == handle.keys.active.x5t
    assert header["alg"] == "RS256"
    client = jwt.PyJWKClient(
        f"{entra.url}/{tenant.id}/discovery/v2.0/keys",
        ssl_context=ssl.create_default_context(cafile=str(ca_bundle)),
    )
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="x")
    assert claims["sub"] == "z"


@pytest.mark.parametrize(
    ("username", "account_type"),
    [("alice@demo.example", "Managed"), ("someone@elsewhere.example", "Unknown")],
)
def test_user_realm(entra: Any, http: requests.Session, username: str, account_type: str) -> None:
    body = http.get(f"{entra.url}/common/userrealm/{username}?api-version=1.0").json()
    assert body["account_type"] == account_type
    if account_type == "Managed":
        assert body["domain_name"] == "demo.example"
        assert body["cloud_audience_urn"] == "urn:federation:MicrosoftOnline"
