"""`GET /api/health`: anonymous readiness, kept for a while, no secrets."""

from __future__ import annotations

import json

from shared import health
from tests.api.conftest import Api


def test_health_is_anonymous_and_ready(api: Api) -> None:
    health.forget()
    response = api.call("GET", "/api/health", key=None, token=None)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "settings": "ok",
            "signingKeys": "ok",
            "dataverse": "reachable",
            "sharedStore": "ok",  # the dev stack runs its own store
        },
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_health_shows_no_settings_values(api: Api) -> None:
    health.forget()
    body = api.call("GET", "/api/health", key=None, token=None).text
    for name, value in api.stack.settings.items():
        if name.startswith(("API_CLIENT", "SUBSCRIPTION", "AZURE_TENANT")):
            for part in [value, *json.dumps(value).split('"')]:
                assert len(part) < 8 or part not in body


def test_unreachable_dataverse_is_unavailable_and_results_are_kept(faults: Api) -> None:
    health.forget()
    faults.dataverse_control("POST", "faults", json={"path": "/api/data/v9.2/", "action": "reset"})
    _, mark = faults.marks()
    first = faults.call("GET", "/api/health", key=None, token=None)
    assert first.status_code == 503
    assert first.json()["checks"]["dataverse"] == "unreachable"
    again = faults.call("GET", "/api/health", key=None, token=None)
    assert again.json() == first.json()
    probes = [r for r in faults.dataverse_requests(mark) if r["path"] == "/api/data/v9.2/"]
    assert len(probes) == 1  # the second answer came from the kept result
    health.forget()
