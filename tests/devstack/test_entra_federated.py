"""The managed-identity endpoint (App Service's shape) and Entra's federated client assertions,
over real HTTP: the endpoint's answers and errors, azure-identity reading it, and the FIC checks
with Entra's codes; the request log's `client_auth`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests

from devstack.config import API_IDENTITY
from devstack.entra.identity import create_identity_app
from devstack.pki import Material, SigningKey
from devstack.server import ServerThread
from devstack.tenant import Tenant
from tests.conftest import Emulator
from tests.devstack.entra_helpers import assert_entra_error

HEADER = "test-identity-header"
EXCHANGE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def identity_url(entra: Emulator) -> Iterator[str]:
    server = ServerThread(name="identity-endpoint")
    server.start(create_identity_app(entra.app.state.entra, header=HEADER))
    yield server.url
    server.stop()


@pytest.fixture
def entra_clean(entra: Emulator) -> Iterator[Emulator]:
    requests.post(f"{entra.url}/_emulator/reset", timeout=5)
    yield entra
    requests.post(f"{entra.url}/_emulator/reset", timeout=5)


def mi_token(url: str, tenant: Tenant, resource: str = EXCHANGE, **params: str) -> dict[str, Any]:
    query = {
        "api-version": "2019-08-01",
        "resource": resource,
        "client_id": tenant.managed_identity(API_IDENTITY).client_id,
        **params,
    }
    answer = requests.get(
        f"{url}/msi/token", params=query, headers={"X-IDENTITY-HEADER": HEADER}, timeout=5
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_the_endpoint_answers_as_app_service_does(identity_url: str, tenant: Tenant) -> None:
    mi = tenant.managed_identity(API_IDENTITY)
    before = int(time.time())
    body = mi_token(identity_url, tenant)
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["token_type"] == "Bearer"
    assert body["resource"] == EXCHANGE
    assert body["client_id"] == mi.client_id
    assert int(body["expires_on"]) >= before + 3600
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == claims["oid"] == mi.principal_id
    assert claims["aud"] == EXCHANGE
    assert claims["iss"].endswith(f"/{tenant.id}/v2.0")
    assert claims["tid"] == tenant.id


@pytest.mark.parametrize(
    ("headers", "params", "status", "message"),
    [
        ({}, {}, 401, "X-IDENTITY-HEADER"),
        ({"X-IDENTITY-HEADER": "wrong"}, {}, 401, "X-IDENTITY-HEADER"),
        ({"X-IDENTITY-HEADER": HEADER}, {"api-version": "2017-09-01"}, 400, "api-version"),
        ({"X-IDENTITY-HEADER": HEADER}, {"resource": ""}, 400, "resource"),
        (
            {"X-IDENTITY-HEADER": HEADER},
            {"client_id": str(uuid.uuid4())},
            400,
            "No User Assigned or Delegated Managed Identity found",
        ),
        ({"X-IDENTITY-HEADER": HEADER}, {"client_id": ""}, 400, "No User Assigned"),
    ],
    ids=["no-header", "wrong-header", "old-api-version", "no-resource", "unknown-id", "no-id"],
)
def test_the_endpoint_refuses_in_app_service_shape(
    identity_url: str,
    tenant: Tenant,
    headers: dict[str, str],
    params: dict[str, str],
    status: int,
    message: str,
) -> None:
    query = {
        "api-version": "2019-08-01",
        "resource": EXCHANGE,
        "client_id": tenant.managed_identity(API_IDENTITY).client_id,
        **params,
    }
    answer = requests.get(f"{identity_url}/msi/token", params=query, headers=headers, timeout=5)
    assert answer.status_code == status
    body = answer.json()
    assert body["statusCode"] == status
    assert message in body["message"]
    assert "access_token" not in body


def test_azure_identity_finds_the_endpoint_by_its_variables(
    identity_url: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.identity import ManagedIdentityCredential

    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{identity_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", HEADER)
    mi = tenant.managed_identity(API_IDENTITY)
    credential = ManagedIdentityCredential(client_id=mi.client_id)
    token = credential.get_token_info(f"{EXCHANGE}/.default")
    assert jwt.decode(token.token, options={"verify_signature": False})["oid"] == mi.principal_id
    assert token.expires_on > time.time() + 3600


def token_request(entra: Emulator, tenant: Tenant, assertion: str) -> requests.Response:
    return requests.post(
        f"{entra.url}/{tenant.id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": tenant.app("central-api").client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": f"{tenant.app('dataverse').identifier_uris[0]}/.default",
        },
        timeout=5,
    )


def last_token_log(entra: Emulator) -> dict[str, Any]:
    log = requests.get(f"{entra.url}/_emulator/requests", timeout=5).json()["requests"]
    entry: dict[str, Any] = [r for r in log if r["path"].endswith("/token")][-1]
    return entry


def test_entra_takes_the_identity_token_as_the_apps_client_assertion(
    entra_clean: Emulator, identity_url: str, tenant: Tenant
) -> None:
    answer = token_request(entra_clean, tenant, mi_token(identity_url, tenant)["access_token"])
    assert answer.status_code == 200, answer.text
    claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    assert claims["appid"] == tenant.app("central-api").client_id
    assert claims["appidacr"] == "2"
    assert last_token_log(entra_clean)["client_auth"] == "federated"


def assertion(entra: Emulator, tenant: Tenant, **changes: Any) -> str:
    """A managed-identity token as the endpoint makes them, with `changes` (None drops one)."""
    mi = tenant.managed_identity(API_IDENTITY)
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": EXCHANGE,
        "iss": f"{entra.url}/{tenant.id}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "oid": mi.principal_id,
        "sub": mi.principal_id,
        "tid": tenant.id,
    }
    claims.update(changes)
    return str(entra.app.state.entra.sign({k: v for k, v in claims.items() if v is not None}))


def set_fics(entra: Emulator, records: list[dict[str, Any]]) -> None:
    requests.put(
        f"{entra.url}/_emulator/apps/central-api/federated-credentials",
        json={"federated_credentials": records},
        timeout=5,
    ).raise_for_status()


@pytest.mark.parametrize(
    ("changes", "error", "code", "status"),
    [
        ({"sub": str(uuid.uuid4())}, "invalid_client", 700213, 401),
        ({"iss": "https://token.actions.githubusercontent.com"}, "invalid_client", 700211, 401),
        ({"aud": "api://SomethingElse"}, "invalid_client", 700212, 401),
        (
            {"exp": int(time.time()) - 3600, "nbf": int(time.time()) - 7200},
            "invalid_client",
            700024,
            401,
        ),
    ],
    ids=["subject", "issuer", "audience", "expired"],
)
def test_a_mismatch_gets_entras_own_error(
    entra_clean: Emulator,
    tenant: Tenant,
    changes: dict[str, Any],
    error: str,
    code: int,
    status: int,
) -> None:
    answer = token_request(entra_clean, tenant, assertion(entra_clean, tenant, **changes))
    assert answer.status_code == status
    assert_entra_error(answer.json(), error, code)
    assert last_token_log(entra_clean)["client_auth"] is None


def test_an_app_without_any_fic_gets_70021(entra_clean: Emulator, tenant: Tenant) -> None:
    set_fics(entra_clean, [])
    answer = token_request(entra_clean, tenant, assertion(entra_clean, tenant))
    assert answer.status_code == 400
    body = answer.json()
    assert_entra_error(body, "invalid_request", 70021)
    mi = tenant.managed_identity(API_IDENTITY)
    assert f"Assertion Subject: '{mi.principal_id}'" in body["error_description"]


def test_a_token_not_signed_by_the_issuer_is_refused(entra_clean: Emulator, tenant: Tenant) -> None:
    genuine = assertion(entra_clean, tenant)
    header = jwt.get_unverified_header(genuine)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    forged = jwt.encode(claims, SigningKey.generate().private_pem(), "RS256", headers=header)
    answer = token_request(entra_clean, tenant, forged)
    assert answer.status_code == 401
    assert_entra_error(answer.json(), "invalid_client", 700027)


def test_the_log_says_how_each_client_authenticated(
    entra_clean: Emulator, tenant: Tenant, material: Material
) -> None:
    import msal

    from tests.devstack.entra_helpers import cert_credential

    api = tenant.app("central-api")
    scope = [f"{tenant.app('dataverse').identifier_uris[0]}/.default"]
    authority = f"{entra_clean.url}/{tenant.id}"
    for credential, expected in (
        (material.client_secret("central-api"), "secret"),
        (cert_credential(material.client_certs["central-api"], sha256=False), "certificate"),
        ({"client_assertion": lambda: assertion(entra_clean, tenant)}, "federated"),
    ):
        app = msal.ConfidentialClientApplication(
            api.client_id,
            client_credential=credential,
            authority=authority,
            instance_discovery=False,
        )
        assert "access_token" in app.acquire_token_for_client(scope)
        assert last_token_log(entra_clean)["client_auth"] == expected
