"""`POST $batch` over real HTTPS, as learn.microsoft.com's "Execute batch operations using the Web
API" describes it: parts in order, change sets all-or-nothing with `Content-ID` references, the
first failure ending the batch unless `Prefer: odata.continue-on-error`."""

from __future__ import annotations

import email.policy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.tenant import Tenant
from tests.devstack.dataverse_helpers import Api, Tokens, assert_error

API = "/api/data/v9.2"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    content_id: str | None
    in_change_set: bool


def request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> str:
    lines = [f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append("")
    if body is not None:
        lines.append(json.dumps(body))
    return "\r\n".join(lines)


def part(text: str, content_id: int | None = None) -> str:
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        head.append(f"Content-ID: {content_id}")
    return "\r\n".join(head) + "\r\n\r\n" + text + "\r\n"


def multipart(boundary: str, items: list[str]) -> str:
    return "".join(f"--{boundary}\r\n{item}" for item in items) + f"--{boundary}--\r\n"


def change_set(*items: str) -> str:
    boundary = f"changeset_{uuid.uuid4().hex}"
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n" + multipart(
        boundary, list(items)
    )


def send(api: Api, *items: str, prefer: str | None = None) -> requests.Response:
    boundary = f"batch_{uuid.uuid4().hex}"
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    if prefer:
        headers["Prefer"] = prefer
    body = multipart(boundary, list(items)).encode()
    return api.request("POST", "$batch", headers=headers, data=body)


def answers(response: requests.Response) -> list[Answer]:
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/mixed; boundary=batchresponse_"), content_type
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + response.content
    message = BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    found: list[Answer] = []

    def one(item: Message, in_change_set: bool) -> None:
        payload = item.get_payload(decode=True)
        assert isinstance(payload, bytes)
        head, _, body = payload.replace(b"\r\n", b"\n").partition(b"\n\n")
        status_line, *header_lines = head.decode().split("\n")
        headers = dict(line.split(": ", 1) for line in header_lines)
        text = body.decode().strip()
        found.append(
            Answer(
                int(status_line.split()[1]),
                headers,
                json.loads(text) if text else None,
                item.get("Content-ID"),
                in_change_set,
            )
        )

    for item in message.iter_parts():
        if item.get_content_type() == "multipart/mixed":
            for inner in item.iter_parts():
                one(inner, True)
        else:
            one(item, False)
    return found


@pytest.fixture(scope="module")
def alice(entra: Any, tenant: Tenant, dataverse: Any, ca_bundle: Path) -> Iterator[Api]:
    tokens = Tokens(entra.app.state.entra, tenant, dataverse.url)
    api = Api(dataverse.url, ca_bundle, tokens.user("alice"))
    yield api
    api.close()


@pytest.fixture
def tag() -> str:
    return f"Zt{uuid.uuid4().hex[:10]}"


def contacts_named(api: Api, tag: str) -> list[dict[str, Any]]:
    return api.values(f"contacts?$select=firstname,jobtitle&$filter=lastname eq '{tag}'")


def test_parts_run_in_order_with_absolute_and_relative_urls(
    alice: Api, dataverse: Any, tag: str
) -> None:
    response = send(
        alice,
        part(
            request("POST", f"{dataverse.url}{API}/contacts", {"firstname": "A", "lastname": tag})
        ),
        part(request("POST", f"{API}/%63ontacts", {"firstname": "B", "lastname": tag})),
        part(request("GET", f"contacts?$select=firstname&$filter=lastname eq '{tag}'&$count=true")),
    )
    assert response.status_code == 200, response.text
    assert response.headers["OData-Version"] == "4.0"
    first, second, listed = answers(response)
    assert (first.status, second.status, listed.status) == (204, 204, 200)
    assert first.headers["OData-EntityId"].startswith(f"{dataverse.url}{API}/contacts(")
    assert first.headers["OData-Version"] == "4.0"
    assert listed.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    assert sorted(r["firstname"] for r in listed.body["value"]) == ["A", "B"]
    assert listed.body["@odata.count"] == 2


def test_change_set_content_id_references_in_url_and_bind(alice: Api, tag: str) -> None:
    response = send(
        alice,
        change_set(
            part(request("POST", "contacts", {"firstname": "Parent", "lastname": tag}), 1),
            part(request("PATCH", "$1", {"jobtitle": "Patched"}, {"If-Match": "*"}), 2),
            part(
                request(
                    "POST",
                    "contacts",
                    {
                        "firstname": "Child",
                        "lastname": tag,
                        "parentcustomerid_contact@odata.bind": "$1",
                    },
                ),
                3,
            ),
        ),
    )
    assert response.status_code == 200, response.text
    found = answers(response)
    assert [(a.status, a.content_id, a.in_change_set) for a in found] == [
        (204, "1", True),
        (204, "2", True),
        (204, "3", True),
    ]
    parent_id = found[0].headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    rows = {r["firstname"]: r for r in contacts_named(alice, tag)}
    assert rows["Parent"]["jobtitle"] == "Patched"
    child = alice.get(f"contacts({rows['Child']['contactid']})?$select=_parentcustomerid_value")
    assert child.json()["_parentcustomerid_value"] == parent_id


def test_a_failing_change_set_rolls_back_and_ends_the_batch(alice: Api, tag: str) -> None:
    response = send(
        alice,
        change_set(
            part(request("POST", "contacts", {"firstname": "Rolled", "lastname": tag}), 1),
            part(request("POST", "contacts", {"firstname": "x" * 51, "lastname": tag}), 2),
        ),
        part(request("POST", "contacts", {"firstname": "Never", "lastname": tag})),
    )
    assert response.status_code == 400  # the failure's status, as Dataverse answers
    [failure] = answers(response)
    assert (failure.status, failure.content_id) == (400, "2")
    assert failure.body["error"]["code"] == "0x80044331"
    assert contacts_named(alice, tag) == []


def test_continue_on_error_runs_every_part(alice: Api, tag: str) -> None:
    response = send(
        alice,
        part(request("POST", "incidents", {"title": "not allowed"})),  # salesperson: no create
        part(request("POST", "contacts", {"firstname": "After", "lastname": tag})),
        prefer="odata.continue-on-error",
    )
    assert response.status_code == 200
    denied, created = answers(response)
    assert denied.status == 403
    assert denied.body["error"]["code"] == "0x80040220"
    assert created.status == 204
    assert [r["firstname"] for r in contacts_named(alice, tag)] == ["After"]


def test_without_continue_on_error_the_first_failure_stops_the_batch(alice: Api, tag: str) -> None:
    response = send(
        alice,
        part(request("POST", "contacts", {"firstname": "Before", "lastname": tag})),
        part(request("GET", f"contacts({uuid.uuid4()})")),
        part(request("POST", "contacts", {"firstname": "Never", "lastname": tag})),
    )
    assert response.status_code == 404
    assert [a.status for a in answers(response)] == [204, 404]
    assert [r["firstname"] for r in contacts_named(alice, tag)] == ["Before"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            [change_set(part(request("PATCH", "$7", {"jobtitle": "x"}), 1))],
            "Content-ID Reference: '$7' does not exist in the batch context.",
        ),
        (
            [
                change_set(
                    part(
                        request("POST", "contacts", {"parentcustomerid_contact@odata.bind": "$1"}),
                        2,
                    )
                )
            ],
            "Content-ID Reference: '$1' does not exist in the batch context.",
        ),
        ([change_set(part(request("GET", "contacts"), 1))], "GET requests are not allowed"),
        ([part(request("POST", "$batch", {}))], "cannot contain another $batch"),
        ([part("not a request line")], "request line"),
    ],
)
def test_bad_parts_are_400(alice: Api, items: list[str], message: str) -> None:
    response = send(alice, *items)
    assert response.status_code == 400
    [failure] = answers(response)
    assert failure.status == 400
    assert message in failure.body["error"]["message"]


def test_malformed_batches_are_rejected_whole(alice: Api) -> None:
    response = alice.request(
        "POST", "$batch", headers={"Content-Type": "application/json"}, data=b"{}"
    )
    assert_error(response, 400, "0x80060888", "multipart/mixed")
    too_many = [part(request("GET", "WhoAmI"))] * 1001
    assert_error(send(alice, *too_many), 400, "0x80060888", "at most 1000")
    assert_error(alice.get("$batch"), 405, "0x80060888", "'GET'")


def test_a_batch_counts_once_against_the_limits(alice: Api, dataverse: Any) -> None:
    dv = dataverse.app.state.dataverse
    caller = dv.principal("alice").systemuserid
    dv.limits.reset()  # counters cleared: older requests must not slide out of the window here
    response = send(alice, *[part(request("GET", "WhoAmI"))] * 5)
    assert response.status_code == 200
    assert [a.status for a in answers(response)] == [200] * 5
    assert dv.limits.snapshot()["callers"][caller]["requests"] == 1
