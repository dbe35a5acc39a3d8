"""The shared store's settings: optional URL, validated without echoing it (it may hold a
password), timeouts and prefix checked at start-up."""

from __future__ import annotations

import pytest

from shared.settings import SettingsError
from tests.store.conftest import settings_for


def test_defaults_no_store() -> None:
    settings = settings_for(None)
    assert settings.redis_url is None
    assert settings.redis_timeout_seconds == 0.1
    assert settings.redis_breaker_seconds == 5
    assert settings.redis_key_prefix == "capi"


def test_url_is_kept_and_never_shown() -> None:
    url = "rediss://:s3cretAccessKey@contoso.westeurope.redis.azure.net:10000"
    settings = settings_for(url)
    assert settings.redis_url == url
    assert "s3cretAccessKey" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "http://:s3cretAccessKey@cache:6380"),
        ("REDIS_URL", "s3cretAccessKey@cache:6380"),
        ("REDIS_URL", "rediss://:s3cretAccessKey@:6380"),
        ("REDIS_URL", "rediss://:s3cretAccessKey@cache:99999"),
        ("REDIS_URL", "unix:///tmp/s3cretAccessKey.sock"),
        ("REDIS_TIMEOUT_SECONDS", "0"),
        ("REDIS_TIMEOUT_SECONDS", "-1"),
        ("REDIS_TIMEOUT_SECONDS", "11"),
        ("REDIS_TIMEOUT_SECONDS", "nan"),
        ("REDIS_TIMEOUT_SECONDS", "fast"),
        ("REDIS_BREAKER_SECONDS", "-1"),
        ("REDIS_KEY_PREFIX", "has space"),
        ("REDIS_KEY_PREFIX", "a:b"),
        ("REDIS_KEY_PREFIX", "x" * 65),
    ],
)
def test_fails_fast_naming_the_setting_never_its_value(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name) as caught:
        settings_for(None, **{name: value})
    if len(value) > 3:  # "0" may well be in a message about the bounds
        assert value not in str(caught.value)
    assert "s3cretAccessKey" not in str(caught.value)
