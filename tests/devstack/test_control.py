"""The control plane shared by both emulators: request log, fault injection, reset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.control import ControlPlane, Fault
from devstack.server import ServerThread


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, ControlPlane, list[int]]]:
    resets: list[int] = []
    control = ControlPlane("test", on_reset=lambda: resets.append(1))

    async def hello(request: Request) -> Response:
        request.state.caller = {"oid": request.query_params.get("oid", "someone")}
        return JSONResponse({"hello": request.path_params["name"]})

    app = Starlette(routes=[*control.routes(), Route("/hello/{name}", hello)])
    server = ServerThread(name="control-test").start(control.wrap(app))
    yield server.url, control, resets
    server.stop()


@pytest.fixture
def plane(served: tuple[str, ControlPlane, list[int]]) -> Iterator[tuple[str, ControlPlane]]:
    url, control, _ = served
    requests.post(f"{url}/_emulator/reset", timeout=5)
    yield url, control
    requests.post(f"{url}/_emulator/reset", timeout=5)


def _add(url: str, **fault: Any) -> dict[str, Any]:
    response = requests.post(f"{url}/_emulator/faults", json=fault, timeout=5)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_requests_are_logged_with_caller_and_correlation_id(
    plane: tuple[str, ControlPlane],
) -> None:
    url, _ = plane
    requests.get(
        f"{url}/hello/x?oid=abc", headers={"client-request-id": "corr-1"}, timeout=5
    ).raise_for_status()
    log = requests.get(f"{url}/_emulator/requests", timeout=5).json()["requests"]
    assert [(r["method"], r["path"], r["status"]) for r in log] == [("GET", "/hello/x", 200)]
    assert log[0]["caller"] == {"oid": "abc"}
    assert log[0]["correlation_id"] == "corr-1"
    assert log[0]["query"] == "oid=abc"
    # control-plane calls are not logged, and `since` pages
    assert requests.get(f"{url}/_emulator/requests?since={log[0]['seq']}", timeout=5).json() == {
        "requests": []
    }


def test_status_fault_for_n_requests_then_normal(plane: tuple[str, ControlPlane]) -> None:
    url, _ = plane
    _add(url, path="/hello/*", status=503, body={"error": "down"}, retry_after=7, count=2)
    for _ in range(2):
        response = requests.get(f"{url}/hello/x", timeout=5)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert response.json() == {"error": "down"}
    assert requests.get(f"{url}/hello/x", timeout=5).status_code == 200
    statuses = [
        r["status"] for r in requests.get(f"{url}/_emulator/requests", timeout=5).json()["requests"]
    ]
    assert statuses == [503, 503, 200]


def test_fault_matches_method_and_path_only(plane: tuple[str, ControlPlane]) -> None:
    url, _ = plane
    _add(url, path="/hello/a", method="POST", status=500)
    assert requests.get(f"{url}/hello/a", timeout=5).status_code == 200
    assert requests.get(f"{url}/hello/b", timeout=5).status_code == 200


def test_reset_fault_drops_the_connection(plane: tuple[str, ControlPlane]) -> None:
    url, _ = plane
    _add(url, path="/hello/*", action="reset", count=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/hello/x", timeout=5)


def test_garbage_fault_is_not_json(plane: tuple[str, ControlPlane]) -> None:
    url, _ = plane
    _add(url, path="/hello/*", action="garbage", count=1)
    response = requests.get(f"{url}/hello/x", timeout=5)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_delay_without_status_slows_but_answers(plane: tuple[str, ControlPlane]) -> None:
    url, _ = plane
    _add(url, path="/hello/*", delay_ms=300, count=1)
    response = requests.get(f"{url}/hello/x", timeout=5)
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.3
    _add(url, path="/hello/*", delay_ms=2000, count=1)
    with pytest.raises(requests.Timeout):
        requests.get(f"{url}/hello/x", timeout=0.5)


def test_fraction_fault_hits_some(plane: tuple[str, ControlPlane]) -> None:
    url, _ = plane
    _add(url, path="/hello/*", status=500, fraction=0.5)
    codes = [requests.get(f"{url}/hello/x", timeout=5).status_code for _ in range(60)]
    assert 5 < codes.count(500) < 55


@pytest.mark.parametrize(
    "bad",
    [{"nope": 1}, {"action": "explode"}, {"fraction": 2}, {"status": "x", "count": []}, [1]],
)
def test_bad_fault_rules_are_400(plane: tuple[str, ControlPlane], bad: Any) -> None:
    url, _ = plane
    response = requests.post(f"{url}/_emulator/faults", json=bad, timeout=5)
    assert response.status_code == 400
    assert "error" in response.json()


def test_delete_one_fault_and_list(plane: tuple[str, ControlPlane]) -> None:
    url, _ = plane
    first = _add(url, path="/hello/a", status=500)
    _add(url, path="/hello/b", status=500)
    requests.delete(f"{url}/_emulator/faults/{first['id']}", timeout=5)
    faults = requests.get(f"{url}/_emulator/faults", timeout=5).json()["faults"]
    assert [f["path"] for f in faults] == ["/hello/b"]
    assert requests.get(f"{url}/hello/a", timeout=5).status_code == 200


def test_reset_clears_and_calls_back(served: tuple[str, ControlPlane, list[int]]) -> None:
    url, control, resets = served
    before = len(resets)
    control.add_fault(Fault(path="*", status=500))
    requests.post(f"{url}/_emulator/reset", timeout=5)
    assert len(resets) == before + 1
    assert requests.get(f"{url}/hello/x", timeout=5).status_code == 200
