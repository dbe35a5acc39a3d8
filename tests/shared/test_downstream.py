"""shared.downstream against the Entra emulator: OBO and client credentials with real MSAL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
import requests

from devstack.pki import Material
from devstack.tenant import Tenant
from shared.downstream import (
    AssertionRejected,
    ClaimsChallenge,
    ConsentRequired,
    CredentialRejected,
    DownstreamTokens,
    TokenServiceTimeout,
    TokenServiceUnavailable,
)
from shared.settings import Settings
from tests.conftest import Emulator

OBO = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture
def entra_clean(entra: Emulator) -> Iterator[Emulator]:
    requests.post(f"{entra.url}/_emulator/reset", timeout=5)
    yield entra
    requests.post(f"{entra.url}/_emulator/reset", timeout=5)


def settings(tenant: Tenant, material: Material, entra: Emulator, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tenant_id": tenant.id,
        "authority_host": entra.url,
        "api_client_id": tenant.app("central-api").client_id,
        "api_client_secret": material.client_secret("central-api"),
        "dataverse_url": tenant.app("dataverse").identifier_uris[0],
        "subscription_keys": {},
        "data_key": bytes(32),
        "downstream_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


def user_token(entra: Emulator, tenant: Tenant, user: str = "alice", **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": f"{entra.url}/{tenant.id}/v2.0",
        "aud": tenant.app("central-api").client_id,
        "tid": tenant.id,
        "oid": tenant.user(user).oid,
        "sub": str(uuid.uuid4()),
        "azp": tenant.app("portal").client_id,
        "scp": "customer.read",
        "ver": "2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "uti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return str(entra.app.state.entra.sign(claims))


def token_requests(entra: Emulator, grant: str) -> list[dict[str, Any]]:
    log = requests.get(f"{entra.url}/_emulator/requests", timeout=5).json()["requests"]
    return [r for r in log if r["grant_type"] == grant]


def test_one_exchange_per_token_however_many_calls(
    entra_clean: Emulator, tenant: Tenant, material: Material
) -> None:
    tokens = DownstreamTokens(settings(tenant, material, entra_clean))
    incoming = user_token(entra_clean, tenant)
    with ThreadPoolExecutor(16) as pool:
        results = set(pool.map(lambda _: tokens.for_user(incoming), range(100)))
    assert len(results) == 1
    assert tokens.obo_exchanges == 1
    assert len(token_requests(entra_clean, OBO)) == 1
    claims = jwt.decode(results.pop(), options={"verify_signature": False})
    assert claims["oid"] == tenant.user("alice").oid
    assert claims["aud"] == tenant.app("dataverse").identifier_uris[0]
    assert "user_impersonation" in claims["scp"]


def test_tokens_never_cross_callers(
    entra_clean: Emulator, tenant: Tenant, material: Material
) -> None:
    tokens = DownstreamTokens(settings(tenant, material, entra_clean))
    alice = tokens.for_user(user_token(entra_clean, tenant, "alice"))
    app = tokens.for_app()
    bob = tokens.for_user(user_token(entra_clean, tenant, "bob"))
    oid = lambda t: jwt.decode(t, options={"verify_signature": False}).get("oid")  # noqa: E731
    assert oid(alice) == tenant.user("alice").oid
    assert oid(bob) == tenant.user("bob").oid
    app_claims = jwt.decode(app, options={"verify_signature": False})
    assert "scp" not in app_claims
    assert app_claims["appid"] == tenant.app("central-api").client_id
    assert tokens.for_app() == app  # MSAL's cache
    assert len(token_requests(entra_clean, "client_credentials")) == 1


def test_claims_challenge_for_mfa_user(
    entra_clean: Emulator, tenant: Tenant, material: Material
) -> None:
    tokens = DownstreamTokens(settings(tenant, material, entra_clean))
    with pytest.raises(ClaimsChallenge) as caught:
        tokens.for_user(user_token(entra_clean, tenant, "dave"))
    assert "capolids" in caught.value.claims
    assert caught.value.entra_code == 50079


def test_consent_missing(entra_clean: Emulator, tenant: Tenant, material: Material) -> None:
    requests.delete(
        f"{entra_clean.url}/_emulator/consents",
        json={"client": "central-api", "resource": "dataverse"},
        timeout=5,
    ).raise_for_status()
    tokens = DownstreamTokens(settings(tenant, material, entra_clean))
    with pytest.raises(ConsentRequired):
        tokens.for_user(user_token(entra_clean, tenant))


def test_expired_assertion(entra_clean: Emulator, tenant: Tenant, material: Material) -> None:
    tokens = DownstreamTokens(settings(tenant, material, entra_clean))
    with pytest.raises(AssertionRejected):
        tokens.for_user(user_token(entra_clean, tenant, exp=int(time.time()) - 60))


def test_our_bad_secret_is_a_misconfiguration(
    entra_clean: Emulator, tenant: Tenant, material: Material
) -> None:
    tokens = DownstreamTokens(settings(tenant, material, entra_clean, api_client_secret="wrong"))
    with pytest.raises(CredentialRejected):
        tokens.for_user(user_token(entra_clean, tenant))
    with pytest.raises(CredentialRejected):
        tokens.for_app()


def test_certificate_credential(entra_clean: Emulator, tenant: Tenant, material: Material) -> None:
    tokens = DownstreamTokens(
        settings(
            tenant,
            material,
            entra_clean,
            api_client_secret=None,
            api_client_certificate_path=str(material.client_certs["central-api"]),
        )
    )
    assert tokens.for_app()
    assert tokens.for_user(user_token(entra_clean, tenant))


@pytest.mark.parametrize(
    ("fault", "expected", "retry_after"),
    [
        ({"status": 503, "retry_after": 7}, TokenServiceUnavailable, 7),
        (
            {"status": 429, "retry_after": 9, "body": {"error": "temporarily_unavailable"}},
            TokenServiceUnavailable,
            9,
        ),
        ({"action": "reset"}, TokenServiceUnavailable, None),
        ({"action": "garbage"}, TokenServiceUnavailable, None),
        ({"delay_ms": 3000}, TokenServiceTimeout, None),
    ],
)
def test_token_endpoint_faults(
    entra_clean: Emulator,
    tenant: Tenant,
    material: Material,
    fault: dict[str, Any],
    expected: type[Exception],
    retry_after: int | None,
) -> None:
    tokens = DownstreamTokens(settings(tenant, material, entra_clean))
    tokens.for_app()  # discovery done; only the token endpoint fails below
    requests.post(
        f"{entra_clean.url}/_emulator/faults",
        json={"path": "*/oauth2/v2.0/token", "count": 1, **fault},
        timeout=5,
    ).raise_for_status()
    with pytest.raises(expected) as caught:
        tokens.for_user(user_token(entra_clean, tenant))
    if retry_after is not None:
        assert getattr(caught.value, "retry_after", None) == retry_after
