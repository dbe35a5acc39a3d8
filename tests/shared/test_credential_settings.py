"""API_CLIENT_CREDENTIAL and its companions: an explicit mode, each taking its own setting and
refusing another's; unset, inferred from the one credential setting present (never the managed
identity); REDIS_CREDENTIAL with the managed identity."""

from __future__ import annotations

from typing import Any

import pytest

from shared.settings import Settings, SettingsError
from tests.shared.test_settings import GOOD

MI_ID = "5b2f7e0c-3d4a-4c1b-9e8f-6a7b8c9d0e1f"
BASE = {k: v for k, v in GOOD.items() if k != "API_CLIENT_SECRET"}


def env(**values: str) -> dict[str, str]:
    return {**BASE, **values}


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        (
            {"API_CLIENT_CREDENTIAL": "managed-identity", "API_MANAGED_IDENTITY_CLIENT_ID": MI_ID},
            "managed-identity",
        ),
        ({"API_CLIENT_CREDENTIAL": "managed-identity"}, "managed-identity"),  # system-assigned
        ({"API_CLIENT_CREDENTIAL": "secret", "API_CLIENT_SECRET": "s3cret"}, "secret"),
        (
            {"API_CLIENT_CREDENTIAL": "certificate", "API_CLIENT_CERTIFICATE_PATH": "/c.pem"},
            "certificate",
        ),
        ({"API_CLIENT_SECRET": "s3cret"}, "secret"),  # unset: inferred
        ({"API_CLIENT_CERTIFICATE_PATH": "/c.pem"}, "certificate"),
    ],
)
def test_the_mode(values: dict[str, str], mode: str) -> None:
    settings = Settings.from_env(env(**values))
    assert settings.credential == settings.api_client_credential == mode
    assert settings.api_managed_identity_audience == "api://AzureADTokenExchange"


def test_the_identity_client_id_is_read_as_a_guid() -> None:
    settings = Settings.from_env(
        env(API_CLIENT_CREDENTIAL="managed-identity", API_MANAGED_IDENTITY_CLIENT_ID=MI_ID.upper())
    )
    assert settings.api_managed_identity_client_id == MI_ID


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({}, "API_CLIENT_CREDENTIAL"),
        ({"API_CLIENT_CREDENTIAL": "password"}, "API_CLIENT_CREDENTIAL"),
        (
            {"API_CLIENT_SECRET": "s3cret", "API_CLIENT_CERTIFICATE_PATH": "/c.pem"},
            "API_CLIENT_CREDENTIAL",
        ),
        (
            {"API_CLIENT_CREDENTIAL": "managed-identity", "API_CLIENT_SECRET": "s3cret"},
            "API_CLIENT_SECRET",
        ),
        (
            {"API_CLIENT_CREDENTIAL": "managed-identity", "API_CLIENT_CERTIFICATE_PATH": "/c.pem"},
            "API_CLIENT_CERTIFICATE_PATH",
        ),
        ({"API_CLIENT_CREDENTIAL": "secret"}, "API_CLIENT_SECRET"),
        (
            {
                "API_CLIENT_CREDENTIAL": "secret",
                "API_CLIENT_SECRET": "s3cret",
                "API_CLIENT_CERTIFICATE_PATH": "/c.pem",
            },
            "API_CLIENT_CERTIFICATE_PATH",
        ),
        ({"API_CLIENT_CREDENTIAL": "certificate"}, "API_CLIENT_CERTIFICATE_PATH"),
        (
            {
                "API_CLIENT_CREDENTIAL": "secret",
                "API_CLIENT_SECRET": "s3cret",
                "API_MANAGED_IDENTITY_CLIENT_ID": MI_ID,
            },
            "API_MANAGED_IDENTITY_CLIENT_ID",
        ),
        (
            {"API_CLIENT_CREDENTIAL": "managed-identity", "API_MANAGED_IDENTITY_CLIENT_ID": "x"},
            "API_MANAGED_IDENTITY_CLIENT_ID",
        ),
    ],
)
def test_contradictions_fail_fast_naming_the_setting(values: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named) as caught:
        Settings.from_env(env(**values))
    assert "s3cret" not in str(caught.value)


MI = {"API_CLIENT_CREDENTIAL": "managed-identity", "API_MANAGED_IDENTITY_CLIENT_ID": MI_ID}


@pytest.mark.parametrize(
    ("values", "ok"),
    [
        (
            {
                **MI,
                "REDIS_URL": "rediss://cache.example:10000",
                "REDIS_CREDENTIAL": "managed-identity",
            },
            True,
        ),
        (
            {
                **MI,
                "REDIS_URL": "rediss://:k3y@cache.example:10000",
                "REDIS_CREDENTIAL": "managed-identity",
            },
            False,
        ),
        ({**MI, "REDIS_CREDENTIAL": "managed-identity"}, False),  # no REDIS_URL
        (
            {
                "API_CLIENT_SECRET": "s3cret",
                "REDIS_URL": "rediss://cache.example:10000",
                "REDIS_CREDENTIAL": "managed-identity",
            },
            False,
        ),
        ({**MI, "REDIS_URL": "rediss://cache.example:10000", "REDIS_CREDENTIAL": "entra"}, False),
    ],
)
def test_the_store_credential(values: dict[str, Any], ok: bool) -> None:
    if ok:
        assert Settings.from_env(env(**values)).redis_credential == "managed-identity"
        return
    with pytest.raises(SettingsError, match="REDIS_") as caught:
        Settings.from_env(env(**values))
    assert "k3y" not in str(caught.value)
