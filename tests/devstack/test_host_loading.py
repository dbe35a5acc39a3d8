"""Loading a FunctionApp: what the host refuses, host.json, and the repository's own app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests

from devstack.host import (
    FunctionLoadError,
    FunctionsRouter,
    HostConfigError,
    HostSettings,
    create_app,
    read_host_json,
)
from devstack.server import ServerThread

HOSTAPPS = Path(__file__).parent / "hostapps"
REPO = Path(__file__).resolve().parents[2]


def _app(*routes: tuple[str, dict[str, Any]]) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    for index, (route, options) in enumerate(routes):

        def handler(req: func.HttpRequest) -> str:
            return "x"

        handler.__name__ = f"f{index}"
        app.route(route=route, **options)(handler)
    return app


def _load_error(app: func.FunctionRegister) -> FunctionLoadError:
    with pytest.raises(FunctionLoadError) as caught:
        FunctionsRouter(app).close()
    assert caught.value.code == "function_load"
    return caught.value


@pytest.mark.parametrize(
    "route", ["admin/x", "Admin", "administration/x", "runtime/webhooks", "/admin/"]
)
def test_routes_reserved_by_the_host_are_refused(route: str) -> None:
    error = _load_error(_app((route, {})))
    assert error.function == "f0"
    assert "built-in routes" in error.reason


def test_two_functions_on_one_route_need_disjoint_methods() -> None:
    FunctionsRouter(
        _app(("x/{id}", {"methods": ["GET"]}), ("X/{id}/", {"methods": ["POST"]}))
    ).close()
    error = _load_error(
        _app(("x/{id}", {"methods": ["GET", "PUT"]}), ("x/{id}", {"methods": ["PUT"]}))
    )
    assert error.function == "f1"
    assert "'f0'" in error.reason
    assert _load_error(_app(("x", {}), ("x", {"methods": ["GET"]}))).function == "f1"


def test_every_unservable_function_is_named() -> None:
    app = _app(("ok", {}), ("bad/{", {}), ("admin", {}))

    @app.route(route="extra")
    def extra(req: func.HttpRequest, surprise: str) -> str:
        return surprise

    @app.route(route="queue")
    @app.queue_output(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
    def queue(req: func.HttpRequest, msg: func.Out[str]) -> str:
        return "x"

    @app.route(route="renamed", trigger_arg_name="request")
    def renamed(req: func.HttpRequest) -> str:
        return "x"

    error = _load_error(app)
    assert error.function == "f1, f2, extra, queue, renamed"
    assert "unterminated parameter" in error.reason
    assert "['surprise']" in error.reason
    assert "queue (msg)" in error.reason
    assert "['request']" in error.reason


def test_an_app_can_be_routed_more_than_once() -> None:
    app = _app(("a", {}))
    for _ in range(2):
        router = FunctionsRouter(app)
        assert [f.name for f in router.functions] == ["f0"]
        router.close()


@pytest.mark.parametrize(
    ("module", "message"),
    [("no_such_module_here", "cannot import"), ("two_apps", "found 2")],
)
def test_a_module_must_import_and_hold_one_function_app(module: str, message: str) -> None:
    with pytest.raises(FunctionLoadError, match=message):
        create_app(module, root=HOSTAPPS)


Write = Callable[[str], Path]


@pytest.fixture
def write_host_json(tmp_path: Path) -> Write:
    def write(text: str) -> Path:
        (tmp_path / "host.json").write_text(text, encoding="utf-8")
        return tmp_path

    return write


def test_host_json_settings(tmp_path: Path, write_host_json: Write) -> None:
    assert read_host_json(tmp_path) == HostSettings(route_prefix="api")
    assert read_host_json(write_host_json('{"version": "2.0"}')).route_prefix == "api"
    prefix = '{"extensions": {"http": {"routePrefix": ""}}}'
    assert read_host_json(write_host_json(prefix)).route_prefix == ""
    version_one = '{"http": {"routePrefix": "/v1/"}}'
    assert read_host_json(write_host_json(version_one)).route_prefix == "v1"
    assert read_host_json(HOSTAPPS) == HostSettings(
        route_prefix="svc/v1", custom_headers={"X-Content-Type-Options": "nosniff"}
    )


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"extensions": {"http": {"routePrefix": 1}}}',
        '{"extensions": {"http": []}}',
        '{"extensions": {"http": {"customHeaders": {"X": 1}}}}',
    ],
)
def test_a_bad_host_json_is_refused(write_host_json: Write, text: str) -> None:
    with pytest.raises(HostConfigError) as caught:
        read_host_json(write_host_json(text))
    assert caught.value.code == "host_config"


def test_the_repository_function_app_answers_its_health_check() -> None:
    app = create_app()
    server = ServerThread(name="host-function-app").start(app)
    try:
        # Ready or not depends on the settings in this process; either way it answers JSON.
        response = requests.get(f"{server.url}/api/health", timeout=10)
        assert response.status_code in (200, 503)
        assert response.json()["status"] in ("ok", "unavailable")
        in_process = app.router.dispatch(func.HttpRequest("GET", "/api/health", body=b""))
        assert in_process.status_code == response.status_code
    finally:
        server.stop()
        app.router.close()
