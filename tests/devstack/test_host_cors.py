"""CORS on the dev host, as the Functions host applies Host.CORS / platform CORS
(devstack/host/_cors.py): preflights answered by the host, headers on allowed answers only.

Over real HTTP against tests/devstack/hostapps/routes_app.py (prefix svc/v1), whose
`echo/{*rest}` and `m/head` functions accept OPTIONS, so a preflight that reached a function
would be answered by it (a JSON body naming it) instead of the host's empty 204.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.host import (
    CORS_CREDENTIALS_SETTING,
    CORS_SETTING,
    HOST_MAX_HEADER_READ,
    CorsPolicy,
    HostConfigError,
    InstanceLimits,
    create_app,
)
from devstack.server import ServerThread

HOSTAPPS = Path(__file__).parent / "hostapps"
APP = "http://localhost:7070"
OTHER = "https://evil.example"
SPA_HEADERS = "authorization,content-type,if-match,ocp-apim-subscription-key"


def serve(policy: CorsPolicy) -> Iterator[str]:
    app = create_app(
        "routes_app", root=HOSTAPPS, limits=InstanceLimits(threads=4, concurrency=8), cors=policy
    )
    server = ServerThread(name="cors-host").start(app, max_header_read=HOST_MAX_HEADER_READ)
    yield f"{server.url}/svc/v1"
    server.stop()
    app.router.close()


@pytest.fixture(scope="module")
def host() -> Iterator[str]:
    yield from serve(CorsPolicy.parse(f"{APP}, https://portal.example.com/"))


def preflight(
    url: str, origin: str, method: str = "PATCH", headers: str = SPA_HEADERS
) -> requests.Response:
    return requests.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
        timeout=10,
    )


def cors_headers(response: requests.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-")}


def test_the_host_answers_an_allowed_preflight_itself(host: str) -> None:
    response = preflight(f"{host}/echo/anything", APP)
    assert response.status_code == 204
    assert response.content == b""  # the echo function would have answered with JSON
    assert cors_headers(response) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "PATCH",
        "access-control-allow-headers": SPA_HEADERS,
    }
    assert response.headers["vary"] == "Origin"


def test_origins_are_compared_as_browsers_send_them(host: str) -> None:
    # configured with a trailing slash; a browser's Origin never has one
    response = preflight(f"{host}/echo/x", "https://portal.example.com", method="GET", headers="")
    assert cors_headers(response) == {
        "access-control-allow-origin": "https://portal.example.com",
        "access-control-allow-methods": "GET",
    }


def test_a_refused_origin_gets_the_204_without_cors_headers(host: str) -> None:
    for origin in (OTHER, "http://localhost:7071", "https://localhost:7070"):
        response = preflight(f"{host}/m/head", origin)
        assert response.status_code == 204
        assert response.content == b""
        assert cors_headers(response) == {}, origin


def test_an_options_request_that_is_no_preflight_reaches_the_function(host: str) -> None:
    response = requests.options(f"{host}/m/head", headers={"Origin": APP}, timeout=10)
    assert response.status_code == 200
    assert response.json()["function"] == "m_head"
    assert response.headers["access-control-allow-origin"] == APP


def test_answers_to_an_allowed_origin_carry_the_cors_headers(host: str) -> None:
    response = requests.get(f"{host}/echo/x", headers={"Origin": APP}, timeout=10)
    assert response.json()["function"] == "echo_all"
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in response.headers
    # the host's own answers too: a browser may read the 404
    missing = requests.get(f"{host}/no/such/path", headers={"Origin": APP}, timeout=10)
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == APP


def test_answers_to_other_origins_run_but_carry_no_cors_headers(host: str) -> None:
    response = requests.get(f"{host}/echo/x", headers={"Origin": OTHER}, timeout=10)
    assert response.json()["function"] == "echo_all"  # CORS protects the reader, not the server
    assert cors_headers(response) == {}
    assert cors_headers(requests.get(f"{host}/echo/x", timeout=10)) == {}


def test_any_origin_and_credentials() -> None:
    for url in serve(CorsPolicy.parse("*")):
        response = preflight(f"{url}/echo/x", OTHER)
        assert response.headers["access-control-allow-origin"] == "*"
        assert "vary" not in response.headers
        assert "access-control-allow-credentials" not in response.headers
    for url in serve(CorsPolicy.parse(APP, "true")):
        response = requests.get(f"{url}/echo/x", headers={"Origin": APP}, timeout=10)
        assert response.headers["access-control-allow-origin"] == APP
        assert response.headers["access-control-allow-credentials"] == "true"
        refused = preflight(f"{url}/echo/x", OTHER)
        assert cors_headers(refused) == {}


def test_without_a_policy_the_host_does_no_cors() -> None:
    assert not CorsPolicy.from_env({}).enabled
    for url in serve(CorsPolicy()):
        response = preflight(f"{url}/m/head", APP)
        assert response.json()["function"] == "m_head"  # as under Core Tools without Host.CORS
        assert cors_headers(response) == {}
        assert preflight(f"{url}/m/get", APP).status_code == 404


def test_settings_are_read_as_core_tools_reads_host_cors() -> None:
    policy = CorsPolicy.from_env(
        {
            CORS_SETTING: " HTTP://LocalHost:7070/ ,https://a.example",
            CORS_CREDENTIALS_SETTING: "True",
        }
    )
    assert policy == CorsPolicy(
        origins=frozenset({"http://localhost:7070", "https://a.example"}), credentials=True
    )
    assert CorsPolicy.from_env(policy.environment()) == policy
    assert CorsPolicy.parse("*, https://a.example").any_origin


@pytest.mark.parametrize(
    ("origins", "credentials", "names"),
    [
        ("localhost:7070", "", CORS_SETTING),
        ("http://localhost:7070/app", "", CORS_SETTING),
        ("ftp://files.example", "", CORS_SETTING),
        ("http://localhost:70x0", "", CORS_SETTING),
        ("*", "true", CORS_CREDENTIALS_SETTING),
        (APP, "yes-secret", CORS_CREDENTIALS_SETTING),
    ],
)
def test_malformed_settings_stop_the_host(origins: str, credentials: str, names: str) -> None:
    with pytest.raises(HostConfigError, match=names) as caught:
        create_app(
            "routes_app",
            root=HOSTAPPS,
            cors=CorsPolicy.from_env(
                {CORS_SETTING: origins, CORS_CREDENTIALS_SETTING: credentials}
            ),
        )
    assert "secret" not in str(caught.value)
