"""Fixtures shared by the Entra emulator tests; the helpers they build on are in
tests/devstack/entra_helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.tenant import Tenant
from tests.devstack.entra_helpers import MsalApps, UserTokens, Validator


@pytest.fixture
def msal_apps(entra: Any, tenant: Tenant, ca_bundle: Path) -> Iterator[MsalApps]:
    apps = MsalApps(entra.url, tenant, ca_bundle)
    yield apps
    apps.close()


@pytest.fixture
def validator(entra: Any, tenant: Tenant, ca_bundle: Path) -> Validator:
    return Validator(entra.url, tenant, ca_bundle)


@pytest.fixture
def user_tokens(entra: Any, tenant: Tenant) -> UserTokens:
    return UserTokens(entra.app.state.entra, tenant, tenant.app("central-api").client_id)


@pytest.fixture
def token_url(entra: Any, tenant: Tenant) -> str:
    return f"{entra.url}/{tenant.id}/oauth2/v2.0/token"
