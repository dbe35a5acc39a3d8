"""`/api/health` reports the shared store, end to end through the dev stack's API host: "ok"
against the stack's own valkey-server, "degraded" (still 200, requests still served) when the
store is down, "off" without REDIS_URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.valkey import ValkeyServer
from shared import health
from tests.api.conftest import Api
from tests.faults.conftest import Restart, api, faults, fresh

__all__ = ["api", "faults", "fresh"]


@pytest.fixture
def own(tmp_path: Path) -> Iterator[ValkeyServer]:
    with ValkeyServer(tmp_path / "valkey") as server:
        yield server


def _health(api: Api) -> tuple[int, dict[str, str]]:
    health.forget()
    response = api.call("GET", "/api/health", key=None, token=None)
    return response.status_code, response.json()["checks"]


def test_the_stack_runs_the_api_with_its_store(api: Api) -> None:
    assert api.stack.settings["REDIS_URL"] == api.stack.settings["DEVSTACK_REDIS_URL"]
    assert api.stack.valkey is not None
    assert api.stack.valkey.running
    status, checks = _health(api)
    assert status == 200
    assert checks["sharedStore"] == "ok"


def test_store_down_is_degraded_and_still_ready(
    faults: Api, fresh: Restart, own: ValkeyServer
) -> None:
    # No cooldown, so that the check after the restart probes at once.
    fresh(REDIS_URL=own.url, REDIS_BREAKER_SECONDS="0")
    assert _health(faults)[1]["sharedStore"] == "ok"
    own.stop()
    status, checks = _health(faults)
    assert status == 200
    assert checks["sharedStore"] == "degraded"
    assert checks["dataverse"] == "reachable"
    served = faults.call("GET", "/api/customers?pageSize=1", user="alice")
    assert served.status_code == 200
    own.start()
    assert _health(faults) == (200, {**checks, "sharedStore": "ok"})


def test_without_a_url_the_store_is_off(faults: Api, fresh: Restart) -> None:
    fresh(REDIS_URL="")
    status, checks = _health(faults)
    assert status == 200
    assert checks["sharedStore"] == "off"
