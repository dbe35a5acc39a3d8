"""shared.http.pipeline in process: its parsing helpers on their own, and the whole pipeline
through the dev host's router (`create_app().router.dispatch`, no socket) against the emulators
the `stack` fixture runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from devstack.client import DevClient
from devstack.host import HostApp, create_app
from devstack.stack import RunningStack
from shared import runtime
from shared.auth.errors import InvalidToken
from shared.http.errors import BadInput
from shared.http.pipeline import bearer_token, correlation_id, query_params

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJ4IjoxfQ.c2ln"


def request(url: str = "/api/x", headers: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest("GET", url, headers=headers or {}, body=b"")


# --- helpers ------------------------------------------------------------------------------


def test_correlation_id_keeps_a_sane_client_value_and_replaces_anything_else() -> None:
    assert correlation_id(request(headers={"x-correlation-id": "abc-123_4.5"})) == "abc-123_4.5"
    for given in ("short", "x" * 65, "has space", "semi;colon", "ünïcode-value", ""):
        made = correlation_id(request(headers={"x-correlation-id": given}))
        assert made != given
        assert len(made) == 36
    assert correlation_id(request()) != correlation_id(request())


@pytest.mark.parametrize(
    ("header", "token"),
    [(f"Bearer {TOKEN}", TOKEN), (f"bearer {TOKEN}", TOKEN), (f"BEARER {TOKEN}", TOKEN),
     ("Bearer abc==", "abc==")],
)  # fmt: skip
def test_bearer_token(header: str, token: str) -> None:
    assert bearer_token(request(headers={"Authorization": header})) == token


def test_no_authorization_header_is_an_invalid_token_not_sent() -> None:
    with pytest.raises(InvalidToken) as caught:
        bearer_token(request())
    assert caught.value.token_sent is False


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", f"Bearer  {TOKEN}", f"Bearer {TOKEN} ", f"Basic {TOKEN}",
     f"Bearer {TOKEN},x", f"Bearer {TOKEN} {TOKEN}", f"Bearer\t{TOKEN}", TOKEN,
     "Bearer a=b", "Bearer tök"],
)  # fmt: skip
def test_anything_but_one_bearer_token_is_an_invalid_token_sent(header: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        bearer_token(request(headers={"Authorization": header}))
    assert caught.value.token_sent is True


ALLOWED = frozenset({"q", "pageSize", "pageToken"})


def test_query_params_allowlist() -> None:
    url = "/api/x?q=a%20b%26c&pageSize=5&subscription-key=k"
    assert query_params(request(url), ALLOWED) == {"q": "a b&c", "pageSize": "5"}
    assert query_params(request("/api/x"), ALLOWED) == {}
    assert query_params(request("/api/x?q="), ALLOWED) == {"q": ""}


@pytest.mark.parametrize(
    ("url", "field", "why"),
    [
        ("/api/x?top=1", "top", "is not a parameter of this endpoint"),
        ("/api/x?$top=1&$filter=x&q=1", "$top, $filter", "are not parameters of this endpoint"),
        ("/api/x?a=1&b=2&a=3", "a, b", "are not parameters of this endpoint"),
        ("/api/x?Q=1", "Q", "is not a parameter of this endpoint"),
        ("/api/x?q%00=1", "query", "is not a parameter of this endpoint"),
        ("/api/x?" + "n" * 50 + "=1", "query", "is not a parameter of this endpoint"),
        ("/api/x?q=1&q=2", "q", "must be given at most once"),
        ("/api/x?q=%FF", "query", "is not a valid query string"),
        ("/api/x?" + "&".join(f"q{i}=1" for i in range(25)), "query",
         "is not a valid query string"),
    ],
)  # fmt: skip
def test_query_params_refusals(url: str, field: str, why: str) -> None:
    with pytest.raises(BadInput) as caught:
        query_params(request(url), ALLOWED)
    assert (caught.value.field, caught.value.why) == (field, why)


# --- the pipeline through the host's router, in process -----------------------------------


@pytest.fixture(scope="module")
def host(stack: RunningStack) -> Iterator[HostApp]:
    app = create_app()
    yield app
    runtime.runtime().dataverse.close()  # its async client for this host's loop, first
    app.router.close()


@pytest.fixture(scope="module")
def alice(stack: RunningStack) -> str:
    return DevClient.from_stack(stack.material.folder).user_token("alice")


def dispatch(
    host: HostApp, method: str, url: str, headers: dict[str, str], body: bytes = b""
) -> tuple[func.HttpResponse, dict[str, Any]]:
    response = host.router.dispatch(func.HttpRequest(method, url, headers=headers, body=body))
    return response, json.loads(response.get_body())


def test_in_process_missing_key(host: HostApp, alice: str) -> None:
    response, body = dispatch(host, "GET", "/api/customers", {"Authorization": f"Bearer {alice}"})
    assert response.status_code == 401
    assert body["message"].startswith("Access denied due to missing subscription key.")
    assert body["correlationId"] == response.headers["x-correlation-id"]


def test_in_process_invalid_token(host: HostApp, stack: RunningStack) -> None:
    key = stack.settings["DEVSTACK_SUBSCRIPTION_KEY"]
    response, body = dispatch(
        host, "GET", "/api/customers",
        {"Ocp-Apim-Subscription-Key": key, "Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    assert response.status_code == 401
    assert body["message"] == "Unauthorized. Access token is missing or invalid."
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_in_process_list_and_bad_input(host: HostApp, stack: RunningStack, alice: str) -> None:
    headers = {
        "Ocp-Apim-Subscription-Key": stack.settings["DEVSTACK_SUBSCRIPTION_KEY"],
        "Authorization": f"Bearer {alice}",
        "x-correlation-id": "in-process-0001",
    }
    response, body = dispatch(host, "GET", "/api/customers?pageSize=2", headers)
    assert response.status_code == 200
    assert len(body["items"]) == 2
    assert body["nextPageToken"]
    assert response.headers["x-correlation-id"] == "in-process-0001"

    response, body = dispatch(host, "GET", "/api/customers?pageSize=2&top=1&skip=1", headers)
    assert response.status_code == 400
    assert body["message"] == "Bad request. top, skip: are not parameters of this endpoint."

    response, body = dispatch(
        host, "POST", "/api/customers", {**headers, "Content-Type": "application/json"},
        json.dumps({"lastName": "x", "contactid": "y"}).encode(),
    )  # fmt: skip
    assert response.status_code == 400
    assert body["message"] == "Bad request. contactid: is not a field of Customer."
