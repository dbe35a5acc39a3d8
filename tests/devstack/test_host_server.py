"""The dev host over real HTTP, serving tests/devstack/hostapps/routes_app.py (prefix svc/v1)."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests

from devstack.host import (
    HOST_MAX_HEADER_READ,
    MAX_BODY_SIZE,
    HostApp,
    InstanceLimits,
    create_app,
)
from devstack.server import ServerThread

HOSTAPPS = Path(__file__).parent / "hostapps"
GUID = "cd2c1638-1638-72d5-1638-deadbeef1638"


@dataclass
class Host:
    url: str
    port: int
    app: HostApp

    def __call__(self, path: str) -> str:
        return f"{self.url}/svc/v1/{path}"


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    # Room for test_requests_run_concurrently's 32 calls at once; the limits themselves are
    # tested in test_host_worker.py.
    limits = InstanceLimits(threads=32, concurrency=32)
    app = create_app("routes_app", root=HOSTAPPS, limits=limits)
    server = ServerThread(name="host-under-test").start(app, max_header_read=HOST_MAX_HEADER_READ)
    yield Host(server.url, server.port, app)
    server.stop()
    app.router.close()


@pytest.fixture
def client() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def served_by(response: requests.Response) -> str | int:
    """The function that answered, or the status when the host answered itself."""
    if response.headers.get("content-type") != "application/json":
        return response.status_code
    return str(response.json()["function"])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("items/new", "item_new"),
        ("ITEMS/NEW", "item_new"),
        ("items/42", "item_int"),
        ("items/420", "item_big"),
        ("items/-1", "item_int"),
        (f"items/{GUID}", "item_guid"),
        ("items/abc", "item_any"),
        ("items/abc/children", "item_children"),
        ("items/a/b/c", "item_rest"),
        ("items/42/", "item_int"),
        ("items", "item_rest"),
        ("case/literal", "case_literal"),
        ("named_function", "named_function"),
        ("slashed", "slashed"),
        ("opt/x", "optional"),
        ("opt/x/y", "optional"),
        ("opt/x/y/z", 404),
        ("dflt", "defaulted"),
        ("files/report.pdf", "file_name"),
        ("files/report", "file_name"),
        ("nothing/here", 404),
    ],
)
def test_routing_and_precedence(
    host: Host, client: requests.Session, path: str, expected: str | int
) -> None:
    assert served_by(client.get(host(path))) == expected


def test_the_route_prefix_comes_from_host_json(host: Host, client: requests.Session) -> None:
    assert client.get(f"{host.url}/api/items/new").status_code == 404
    assert client.get(f"{host.url}/items/new").status_code == 404
    assert served_by(client.get(host("items/new"))) == "item_new"


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("int", ["42", "-7"], ["4.2", "abc", "99999999999"]),
        ("long", ["99999999999"], ["1e3"]),
        ("bool", ["true", "False"], ["yes", "1"]),
        ("guid", [GUID, GUID.replace("-", ""), f"%7B{GUID}%7D"], [GUID[:-2], "g" * 32]),
        ("alpha", ["abc"], ["ab1"]),
        ("datetime", ["2016-12-31", "2016-12-31%207:32pm"], ["2016-02-30"]),
        ("decimal", ["49.99", "-1,000.01"], ["1e3"]),
        ("double", ["1.5e3"], ["x"]),
        ("length", ["abc", "%C3%A9t%C3%A9"], ["ab", "abcd"]),
        ("between", ["ab", "abcd"], ["a", "abcde"]),
        ("minlength", ["ab"], ["a"]),
        ("maxlength", ["ab"], ["abc"]),
        ("min", ["10"], ["9"]),
        ("max", ["10"], ["11"]),
        ("range", ["5", "7"], ["4", "8"]),
        ("regex", ["ab1", "XY9"], ["abc", "ab12"]),
        ("chained", ["1", "9"], ["0", "10", "x"]),
    ],
)
def test_constraints_over_http(
    host: Host, client: requests.Session, kind: str, good: list[str], bad: list[str]
) -> None:
    assert [served_by(client.get(host(f"c/{kind}/{v}"))) for v in good] == [f"c_{kind}"] * len(good)
    assert [client.get(host(f"c/{kind}/{v}")).status_code for v in bad] == [404] * len(bad)


def test_a_method_no_route_allows_is_a_404(host: Host, client: requests.Session) -> None:
    assert client.get(host("m/get")).status_code == 200
    for method in ("POST", "PUT", "DELETE", "HEAD", "OPTIONS"):
        response = client.request(method, host("m/get"))
        assert (method, response.status_code, response.content) == (method, 404, b"")
    assert [client.request(m, host("m/write")).status_code for m in ("POST", "PUT", "PATCH")] == [
        200
    ] * 3
    assert served_by(client.post(host("m/shared/new"))) == "m_shared_id"
    assert served_by(client.get(host("m/shared/new"))) == "m_shared_new"
    assert client.get(host("m/shared/other")).status_code == 404


def test_head_and_options_reach_functions_that_list_them(
    host: Host, client: requests.Session
) -> None:
    assert client.head(host("m/head")).status_code == 200
    assert client.options(host("m/head")).json()["method"] == "OPTIONS"
    head = client.head(host("r/binary"))
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "1024", b"")


def test_the_request_reaches_the_function_as_the_worker_builds_it(
    host: Host, client: requests.Session
) -> None:
    path = "echo/caf%C3%A9/a%2Fb/%E2%9C%93"
    query = "q=caf%C3%A9&multi=1&MULTI=2&empty=&flag&plus=a+b&enc=%26%3D"
    response = client.put(
        f"{host(path)}?{query}",
        data=b"\x00\xffbinary",
        headers={"X-Custom": "Value", "Content-Type": "application/octet-stream"},
    )
    seen = response.json()
    assert seen["method"] == "PUT"
    assert seen["url"] == f"{host(path)}?{query}"
    assert seen["route_params"] == {"rest": "café/a%2Fb/✓"}
    assert seen["params"] == {"q": "café", "multi": "1,2", "plus": "a b", "enc": "&="}
    assert seen["headers"]["x-custom"] == "Value"
    assert seen["headers"]["host"] == f"localhost:{host.port}"
    assert seen["headers"]["content-type"] == "application/octet-stream"
    assert base64.b64decode(seen["body"]) == b"\x00\xffbinary"


def test_repeated_request_headers_are_joined_with_commas(host: Host) -> None:
    connection = http.client.HTTPConnection("localhost", host.port, timeout=10)
    try:
        connection.putrequest("GET", "/svc/v1/echo/headers")
        connection.putheader("X-Multi", "a")
        connection.putheader("x-multi", "b")
        connection.putheader("X-UPPER", "Kept Case")
        connection.endheaders()
        seen = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    assert seen["headers"]["x-multi"] == "a,b"
    assert seen["headers"]["x-upper"] == "Kept Case"


@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024])
def test_bodies_arrive_whole(host: Host, client: requests.Session, size: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    seen = client.post(host("echo/body"), data=body).json()
    assert base64.b64decode(seen["body"]) == body


def test_responses_keep_status_headers_mimetype_and_charset(
    host: Host, client: requests.Session
) -> None:
    response = client.get(host("r/custom"))
    assert response.status_code == 201
    assert response.headers["content-type"] == "text/html; charset=iso-8859-1"
    assert response.content == "héllo".encode("iso-8859-1")
    assert response.headers["content-length"] == "5"
    assert response.headers["x-repeated"] == "second"
    assert response.raw.headers.getlist("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert response.headers["x-content-type-options"] == "nosniff"

    binary = client.get(host("r/binary"))
    assert binary.headers["content-type"] == "application/octet-stream"
    assert binary.content == bytes(range(256)) * 4

    assert client.get(host("r/typed")).headers["content-type"] == "application/problem+json"
    assert client.get(host("r/own-header")).headers["x-content-type-options"] == "mine"


@pytest.mark.parametrize("status", [200, 201, 204, 304, 400, 418, 503])
def test_any_status_passes_through(host: Host, client: requests.Session, status: int) -> None:
    response = client.get(host(f"r/status/{status}"))
    assert response.status_code == status
    assert response.content == (b"" if status in (204, 304) else b"x")


def test_what_a_function_returns_becomes_the_response_the_worker_sends(
    host: Host, client: requests.Session
) -> None:
    text = client.get(host("r/str"))
    assert (text.status_code, text.headers["content-type"], text.text) == (
        200,
        "text/plain; charset=utf-8",
        "plain text",
    )
    out = client.get(host("r/out"))
    assert (out.status_code, out.text) == (202, "via out")
    assert client.get(host("r/out-unset")).status_code == 204
    for path in ("r/dict", "r/none", "r/non-ascii-header"):
        response = client.get(host(path))
        assert (path, response.status_code, response.content) == (path, 500, b"")


@pytest.mark.parametrize("path", ["fail/sync", "fail/async"])
def test_an_exception_is_a_bare_500_and_a_logged_traceback(
    host: Host, client: requests.Session, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    with caplog.at_level(logging.INFO, logger="devstack.host"):
        response = client.get(host(path))
    assert response.status_code == 500
    assert response.content == b""
    assert "secret" not in str(response.headers)
    failures = [r for r in caplog.records if r.name == "devstack.host" and r.exc_info]
    assert len(failures) == 1
    assert "secret" in caplog.text
    assert "Traceback" in caplog.text


def test_one_log_line_per_request_without_query_headers_or_body(
    host: Host, client: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    def lines() -> list[str]:
        return [line for line in _host_lines(caplog) if "/4242 " in line or "/logged " in line]

    with caplog.at_level(logging.INFO, logger="devstack.host"):
        client.post(
            host("items/4242") + "?code=query-secret",
            headers={"Authorization": "Bearer header-secret"},
            data=b"body-secret",
        )
        client.get(host("nothing/logged"))
        # The server logs once the response is sent, so the line may trail the answer.
        deadline = time.monotonic() + 5
        while len(lines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    post, get = lines()
    assert post.startswith("POST /svc/v1/items/4242 item_big 200 ")
    assert post.endswith(" ms")
    assert get.startswith("GET /svc/v1/nothing/logged - 404 ")
    assert "secret" not in caplog.text


def _host_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "devstack.host"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_function_asking_for_context_gets_one(
    host: Host, client: requests.Session, kind: str
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    headers = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01", "tracestate": "k=v"}
    first = client.get(host(f"ctx/{kind}"), headers=headers).json()
    second = client.get(host(f"ctx/{kind}")).json()
    assert first["function_name"] == f"ctx_{kind}"
    assert first["function_directory"] == str(HOSTAPPS.resolve())
    assert first["invocation_id"] != second["invocation_id"]
    assert first["trace_parent"].startswith(f"00-{trace_id}-")
    assert first["trace_parent"] != headers["traceparent"]
    assert first["trace_state"] == "k=v"
    assert second["trace_parent"].split("-")[1] != trace_id
    if kind == "sync":
        assert first["thread_invocation_id"] == first["invocation_id"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_requests_run_concurrently(host: Host, kind: str) -> None:
    def call(_: int) -> requests.Response:
        return requests.get(host(f"sleep/{kind}?s=0.5"), timeout=30)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(call, range(32)))
    elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 32
    assert elapsed < 4, f"32 calls sleeping 0.5 s took {elapsed:.1f} s"
    if kind == "sync":
        assert len({r.json()["thread"] for r in responses}) == 32


def test_a_body_over_the_limit_is_refused_before_it_is_read(host: Host) -> None:
    assert MAX_BODY_SIZE == 100 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
        sock.sendall(
            b"POST /svc/v1/echo/big HTTP/1.1\r\nHost: localhost\r\n"
            + f"Content-Length: {MAX_BODY_SIZE + 1}\r\n\r\n".encode()
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_body_over_a_smaller_limit_is_refused_streamed_or_not(host: Host) -> None:
    small = ServerThread(name="host-small-limit").start(
        HostApp(host.app.router, max_body_size=1000)
    )
    try:
        url = f"{small.url}/svc/v1/echo/limit"
        assert requests.post(url, data=b"x" * 1000, timeout=10).ok
        for body in (b"x" * 1001, iter([b"x" * 600, b"x" * 600])):
            refused = requests.post(url, data=body, timeout=10)
            assert (refused.status_code, refused.content) == (413, b"")
    finally:
        small.stop()


def test_a_body_without_content_length_arrives_empty_as_the_host_does(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="devstack.host"):
        seen = requests.post(host("echo/chunked"), data=iter([b"abc", b"def"]), timeout=10)
    assert seen.json()["body"] == ""
    assert "without Content-Length" in caplog.text


def test_a_url_over_4_kb_is_refused(host: Host, client: requests.Session) -> None:
    assert client.get(host("echo/x") + "?q=" + "a" * 4000).status_code == 200
    assert client.get(host("echo/x") + "?q=" + "a" * 4100).status_code == 414


def test_headers_over_32_kb_in_all_are_431_as_kestrel_answers(
    host: Host, client: requests.Session
) -> None:
    def padded(total: int) -> dict[str, str]:
        # requests adds Host, User-Agent, Accept-Encoding, Accept, Connection: under 200 bytes.
        return {f"X-Pad-{i:03d}": "v" * (1000 - 13) for i in range(total // 1000)}

    assert client.get(host("echo/x"), headers=padded(31_000)).status_code == 200
    answer = client.get(host("echo/x"), headers=padded(33_000))
    assert answer.status_code == 431
    assert answer.content == b""
    assert client.get(host("echo/x"), headers={"X-Big": "v" * 40_000}).status_code == 431
    # What the server in front reads before giving up with its own 400 is far beyond Kestrel's.
    assert client.get(host("echo/x"), headers={"X-Big": "v" * 500_000}).status_code == 431


def test_the_root_page_lists_the_functions(host: Host, client: requests.Session) -> None:
    page = client.get(host.url + "/")
    assert page.status_code == 200
    assert page.json()["state"] == "Running"
    routes = {f["name"]: f["route"] for f in page.json()["functions"]}
    assert routes["item_int"] == "/svc/v1/items/{id:int}"
    assert "not_http" not in routes
    assert client.post(host.url + "/").status_code == 404


def _comparable(status: int, headers: Any, body: bytes) -> tuple[int, list[tuple[str, str]], Any]:
    ignored = ("date", "server", "content-length")  # and the dev host's x-devstack-* timings
    kept = sorted(
        (k.lower(), v)
        for k, v in headers.items()
        if k.lower() not in ignored and not k.lower().startswith("x-devstack-")
    )
    if ("content-type", "application/json") in kept:
        document = json.loads(body)
        document.pop("headers", None)
        return status, kept, document
    return status, kept, body


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "items/42?x=1&x=2", b""),
        ("GET", f"items/{GUID}", b""),
        ("POST", "echo/a%2Fb/caf%C3%A9?q=%C3%A9&e=", b"\x00\x01"),
        ("GET", "c/int/abc", b""),
        ("DELETE", "m/get", b""),
        ("GET", "r/custom", b""),
        ("GET", "r/str", b""),
        ("GET", "r/out-unset", b""),
        ("GET", "fail/sync", b""),
        ("GET", "fail/async", b""),
        ("GET", "sleep/async?s=0", b""),
    ],
)
def test_in_process_dispatch_answers_as_http_does(
    host: Host, client: requests.Session, method: str, path: str, body: bytes
) -> None:
    url = host(path)
    over_http = client.request(method, url, data=body)
    in_process = host.app.router.dispatch(func.HttpRequest(method, url, body=body))
    assert _comparable(
        over_http.status_code, over_http.raw.headers, over_http.content
    ) == _comparable(in_process.status_code, in_process.headers, in_process.get_body())


def test_in_process_dispatch_fills_in_route_and_query_parameters(host: Host) -> None:
    router = host.app.router
    seen = router.dispatch(func.HttpRequest("GET", "/svc/v1/echo/x?a=1&a=2", body=b""))
    assert seen.status_code == 200
    document = json.loads(seen.get_body())
    assert (document["route_params"], document["params"]) == ({"rest": "x"}, {"a": "1,2"})
    given = router.dispatch(
        func.HttpRequest("GET", "/svc/v1/echo/y?a=1", params={"b": "2"}, body=b"")
    )
    assert json.loads(given.get_body())["params"] == {"b": "2"}
