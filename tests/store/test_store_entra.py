"""The shared store with the managed identity (REDIS_CREDENTIAL=managed-identity), as far as it
can be emulated.

Azure Managed Redis takes `AUTH <object id> <Entra token>` and checks the token. valkey cannot
verify Entra tokens, so the server here has an ACL user named after the identity's object id
that accepts any password (`ValkeyServer(entra_users=...)`), and the default user keeps its
password. What is tested: the API builds its connection with redis-entraid's credential provider,
which gets a token for `https://redis.azure.com` from the managed-identity endpoint
(IDENTITY_ENDPOINT) and signs in as the identity's object id; without it, the same URL gets
nowhere. What is not: the token's check by the server, and re-authentication when it is renewed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from devstack.config import API_IDENTITY
from devstack.entra.identity import create_identity_app
from devstack.server import ServerThread
from devstack.tenant import Tenant
from devstack.valkey import HOST, ValkeyServer
from shared.store import build_store
from tests.conftest import Emulator
from tests.store.conftest import settings_for

HEADER = "store-identity-header"


@pytest.fixture(scope="module")
def identity_url(entra: Emulator) -> Iterator[str]:
    server = ServerThread(name="identity-endpoint")
    server.start(create_identity_app(entra.app.state.entra, header=HEADER))
    yield server.url
    server.stop()


@pytest.fixture
def entra_valkey(tmp_path: Path, tenant: Tenant) -> Iterator[ValkeyServer]:
    principal = tenant.managed_identity(API_IDENTITY).principal_id
    with ValkeyServer(tmp_path, entra_users=(principal,)) as server:
        yield server


def test_the_store_signs_in_as_the_managed_identity(
    entra_valkey: ValkeyServer,
    identity_url: str,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{identity_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", HEADER)
    mi = tenant.managed_identity(API_IDENTITY)
    url = f"redis://{HOST}:{entra_valkey.port}/0"  # no password: the token is the password
    store = build_store(
        settings_for(
            url,
            API_CLIENT_SECRET="",
            API_CLIENT_CREDENTIAL="managed-identity",
            API_MANAGED_IDENTITY_CLIENT_ID=mi.client_id,
            REDIS_CREDENTIAL="managed-identity",
            REDIS_KEY_PREFIX=f"test-{uuid.uuid4().hex[:12]}",
        )
    )
    assert store is not None
    try:
        key = store.key("entra")
        assert store.set(key, b"v", ttl_ms=60_000)
        assert store.get(key) == b"v"
        assert store._client.acl_whoami() == mi.principal_id
    finally:
        store.close()
    log = requests.get(f"{identity_url}/_emulator/requests", timeout=5).json()["requests"]
    asked = [unquote(r["query"]) for r in log if r["path"] == "/msi/token"]
    assert asked
    assert all("resource=https://redis.azure.com" in q for q in asked)
    assert all(f"client_id={mi.client_id}" in q for q in asked)


def test_without_the_provider_the_same_url_gets_nowhere(entra_valkey: ValkeyServer) -> None:
    url = f"redis://{HOST}:{entra_valkey.port}/0"
    store = build_store(settings_for(url, REDIS_KEY_PREFIX=f"test-{uuid.uuid4().hex[:12]}"))
    assert store is not None
    try:
        assert not store.set(store.key("entra"), b"v", ttl_ms=60_000)
    finally:
        store.close()
