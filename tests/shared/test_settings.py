"""shared.settings: typed, read once, failing fast with the setting's name (never its value)."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any

import pytest

from devstack.config import ROOT
from shared.settings import Settings, SettingsError

GOOD = {
    "AZURE_TENANT_ID": "730301b0-eb39-4533-8015-c9d14296909d",
    "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
    "API_CLIENT_ID": "C8A8D8A5-A350-45E2-AF0F-42A4E0716E11",
    "API_CLIENT_SECRET": "s3cret-value-xyz",
    "DATAVERSE_URL": "https://contoso.crm4.dynamics.com/",
    "SUBSCRIPTION_KEYS": json.dumps({"portal": ["a" * 32, "b" * 32]}),
    "API_DATA_KEY": base64.b64encode(bytes(range(32))).decode(),
}


def test_reads_and_normalises() -> None:
    settings = Settings.from_env(GOOD)
    assert (
        settings.authority
        == "https://login.microsoftonline.com/730301b0-eb39-4533-8015-c9d14296909d"
    )
    assert settings.api_client_id == "c8a8d8a5-a350-45e2-af0f-42a4e0716e11"
    assert settings.dataverse_url == "https://contoso.crm4.dynamics.com"
    assert settings.subscription_keys == {"portal": ("a" * 32, "b" * 32)}
    assert settings.clock_skew_seconds == 120
    assert not settings.subscription_key_in_query
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AZURE_TENANT_ID", ""),
        ("AZURE_TENANT_ID", "contoso"),
        ("AZURE_AUTHORITY_HOST", "http://login.microsoftonline.com"),
        ("API_CLIENT_ID", None),
        ("DATAVERSE_URL", "contoso.crm4.dynamics.com"),
        ("SUBSCRIPTION_KEYS", "not json"),
        ("SUBSCRIPTION_KEYS", "{}"),
        ("SUBSCRIPTION_KEYS", '{"portal": ["short"]}'),
        ("API_CLIENT_SECRET", ""),
        ("CLOCK_SKEW_SECONDS", "two minutes"),
        ("OBO_CACHE_SIZE", "-1"),
        ("SIGNING_KEYS_MAX_AGE_SECONDS", "299"),  # below the 5-minute refresh interval
        ("SIGNING_KEYS_MAX_AGE_SECONDS", "a day"),
        ("SIGNING_KEYS_GRACE_SECONDS", "-1"),
        ("API_DATA_KEY", None),
        ("API_DATA_KEY", "not base64 at all"),
        ("API_DATA_KEY", base64.b64encode(b"k" * 16).decode()),  # AES-128: too short
        ("API_DATA_KEY", base64.b64encode(b"k" * 33).decode()),
        ("API_DATA_KEY", base64.b64encode(b"k" * 32).decode().rstrip("=")),  # not canonical
        ("API_DATA_KEY", base64.urlsafe_b64encode(b"\xff" * 32).decode()),  # not standard
        ("API_DATA_KEY_PREVIOUS", "c2hvcnQ="),
        ("PAGE_TOKEN_LIFETIME_SECONDS", "0"),
        ("PAGE_TOKEN_LIFETIME_SECONDS", "86401"),
        ("PAGE_TOKEN_LIFETIME_SECONDS", "an hour"),
    ],
)
def test_fails_fast_naming_the_setting(name: str, value: Any) -> None:
    env = {k: v for k, v in GOOD.items() if k != name}
    if value is not None:
        env[name] = value
    with pytest.raises(SettingsError, match=name) as caught:
        Settings.from_env(env)
    if value:
        assert value not in str(caught.value)


def test_data_keys_are_32_bytes_and_not_shown() -> None:
    previous = bytes(range(100, 132))
    env = {**GOOD, "API_DATA_KEY_PREVIOUS": base64.b64encode(previous).decode()}
    settings = Settings.from_env(env)
    assert settings.data_key == bytes(range(32))
    assert settings.data_key_previous == previous
    assert settings.page_token_lifetime_seconds == 3600
    assert repr(bytes(range(32))) not in repr(settings)
    assert repr(previous) not in repr(settings)
    assert Settings.from_env(GOOD).data_key_previous is None


def test_certificate_instead_of_secret() -> None:
    env = {**GOOD, "API_CLIENT_SECRET": "", "API_CLIENT_CERTIFICATE_PATH": "/etc/cert.pem"}
    assert Settings.from_env(env).api_client_certificate_path == "/etc/cert.pem"


# Read by the Functions platform or by libraries rather than by shared/settings.py, and documented
# all the same: operators set them in the same place as the API's own settings.
PLATFORM_SETTINGS = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "AzureWebJobsStorage",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",  # telemetry, optional
        "REQUESTS_CA_BUNDLE",  # requests and MSAL; dev stack only
        "PYTHON_THREADPOOL_THREAD_COUNT",  # the Python worker's threads; sizes the per-caller cap
        "IDENTITY_ENDPOINT",  # the managed-identity endpoint (azure-identity); set by the platform
        "IDENTITY_HEADER",
    }
)


def _read_by_settings() -> set[str]:
    return set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (ROOT / "shared" / "settings.py").read_text()))


def _example_values() -> dict[str, str]:
    text = (ROOT / "local.settings.json.example").read_text()
    values: dict[str, str] = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE))[
        "Values"
    ]
    return values


def _readme_rows() -> dict[str, str]:
    """The operators' guide's settings tables (docs/operations.md): setting name -> its row."""
    rows: dict[str, str] = {}
    for line in (ROOT / "docs" / "operations.md").read_text().splitlines():
        match = re.match(r"\| `([A-Za-z][A-Za-z0-9_]+)` \|", line)
        if match:
            rows[match.group(1)] = line
    return rows


def test_every_setting_is_in_the_example_and_the_readme() -> None:
    documented = _read_by_settings() | PLATFORM_SETTINGS
    example = _example_values()
    rows = _readme_rows()
    for name in sorted(documented):
        assert name in example, name
        assert name in rows, f"{name} has no row in docs/operations.md's settings tables"
    stale = set(example) - documented
    assert not stale, f"the example lists settings nothing reads: {sorted(stale)}"


def _shown(value: object) -> str:
    """A default as the example and docs/operations.md write it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_defaults_agree_in_code_example_and_readme() -> None:
    settings = Settings.from_env(GOOD)
    example = _example_values()
    rows = _readme_rows()
    defaulted = [
        f for f in dataclasses.fields(Settings) if f.default not in (dataclasses.MISSING, None)
    ]
    assert defaulted
    for f in defaulted:
        name = f.name.upper()
        assert getattr(settings, f.name) == f.default, name
        assert example[name] == _shown(f.default), name
        assert f"default `{_shown(f.default)}`" in rows[name], name
