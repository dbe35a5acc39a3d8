"""Stores for the tests of shared.store: against the session's `valkey` server, each test with a
key prefix of its own so that tests sharing the server never see each other's keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devstack.valkey import ValkeyServer
from shared.settings import Settings
from shared.store import Store, build_store
from tests.shared.test_settings import GOOD


def settings_for(url: str | None, **extra: str) -> Settings:
    env = dict(GOOD, **extra)
    if url is not None:
        env["REDIS_URL"] = url
    return Settings.from_env(env)


def store_for(url: str, **extra: str) -> Store:
    extra.setdefault("REDIS_KEY_PREFIX", f"test-{uuid.uuid4().hex[:12]}")
    store = build_store(settings_for(url, **extra))
    assert store is not None
    return store


@pytest.fixture
def store(valkey: ValkeyServer) -> Iterator[Store]:
    built = store_for(valkey.url)
    yield built
    built.close()
