"""Contract, "Bad input": every input is checked before anything goes downstream. Each bad
request here is a 400 (413, 415) naming the field and why, and costs neither an On-Behalf-Of
exchange nor a Dataverse request: every test sends a token the API has never seen, so a token
exchange would show in the Entra emulator's log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.contract_helpers import Traffic, assert_error, downstream, fresh_token

GUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
NON_CANONICAL_GUIDS = [
    "3fa85f6457174562b3fc2c963f66afa6",  # no hyphens
    "{3fa85f64-5717-4562-b3fc-2c963f66afa6}",
    "(3fa85f64-5717-4562-b3fc-2c963f66afa6)",
    "urn:uuid:3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "3fa85f64-5717-4562-b3fc-2c963f66afa",  # short
    "3fa85f64-5717-4562-b3fc-2c963f66afa6a",  # long
    "3fa85f64-5717-4562-b3fc-2c963f66afg6",  # not hex
    "3fa85f64-5717-4562-b3fc-2c963f66afa6 ",
    "3fa85f64_5717_4562_b3fc_2c963f66afa6",
    "０fa85f64-5717-4562-b3fc-2c963f66afa6",  # a full-width digit
]


@pytest.fixture
def quiet(api: Api) -> Iterator[tuple[str, str, Traffic]]:
    """Fresh delegated and application tokens, and the downstream traffic the test caused."""
    user, app = fresh_token(api, "alice"), fresh_token(api, None, "dealer-sync")
    with downstream(api) as seen:
        yield user, app, seen
    assert seen.token_requests == [], "bad input cost a token request"
    assert seen.dataverse == [], "bad input reached Dataverse"


def bad(response: Any, *fields: str, status: int = 400) -> None:
    code = {400: "invalid_input", 413: "payload_too_large", 415: "unsupported_media_type"}
    assert_error(response, status, code[status], mentions=fields)


# --- query parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("size", ["0", "201", "abc", "-1", "1.5", "", " 5", "1e2", "٣", "+5"])
def test_page_size_outside_1_to_200_is_refused(
    api: Api, quiet: tuple[str, str, Traffic], size: str
) -> None:
    for path in ("customers", "cases"):
        bad(api.call("GET", f"/api/{path}?pageSize={size}", token=quiet[0]), "pageSize")
    bad(api.call("GET", f"/api/vehicles?pageSize={size}", token=quiet[1]), "pageSize")


def test_unknown_query_parameters_are_named(api: Api, quiet: tuple[str, str, Traffic]) -> None:
    user, app, _ = quiet
    bad(api.call("GET", "/api/customers?top=5", token=user), "top")
    response = api.call("GET", "/api/customers?$filter=x&$top=5&pageSize=5", token=user)
    bad(response, "$filter", "$top")
    bad(api.call("GET", "/api/customers?PageSize=5", token=user), "PageSize")
    bad(api.call("GET", "/api/customers?status=active", token=user), "status")  # a case filter
    bad(api.call("GET", f"/api/cases?ownerId={GUID}", token=user), "ownerId")
    bad(api.call("GET", "/api/vehicles?q=volvo", token=app), "q")  # vehicles have no search
    bad(api.call("GET", f"/api/customers/{GUID}?pageSize=5", token=user), "pageSize")
    bad(api.call("POST", "/api/customers?dryRun=1", token=user, json_body={"lastName": "x"}),
        "dryRun")  # fmt: skip


def test_a_parameter_given_twice_is_refused(api: Api, quiet: tuple[str, str, Traffic]) -> None:
    bad(api.call("GET", "/api/customers?q=a&q=b", token=quiet[0]), "q")
    bad(api.call("GET", "/api/customers?pageSize=1&pageSize=2", token=quiet[0]), "pageSize")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("q=" + "a" * 101, "q"),
        ("q=", "q"),
        ("q=%20%20", "q"),
        ("q=a%00b", "q"),
        ("q=a%0Ab", "q"),
        ("q=a%1Bb", "q"),
        ("q=%FF", "query"),
        ("status=open", "status"),
        ("status=", "status"),
        ("customerId=", "customerId"),
    ],
)
def test_bad_search_and_filter_values(
    api: Api, quiet: tuple[str, str, Traffic], query: str, field: str
) -> None:
    bad(api.call("GET", f"/api/cases?{query}", token=quiet[0]), field)


def test_bad_vehicle_filters(api: Api, quiet: tuple[str, str, Traffic]) -> None:
    app = quiet[1]
    bad(api.call("GET", "/api/vehicles?vin=SHORT", token=app), "vin")
    bad(api.call("GET", "/api/vehicles?registrationNumber=a%27b", token=app), "registrationNumber")
    bad(api.call("GET", "/api/vehicles?ownerId=me", token=app), "ownerId")


@pytest.mark.parametrize("guid", NON_CANONICAL_GUIDS)
def test_non_canonical_guids_are_refused_in_paths_and_filters(
    api: Api, quiet: tuple[str, str, Traffic], guid: str
) -> None:
    user, app, _ = quiet
    from urllib.parse import quote

    encoded = quote(guid, safe="")
    bad(api.call("GET", f"/api/customers/{encoded}", token=user), "id")
    bad(api.call("PATCH", f"/api/cases/{encoded}", token=user, json_body={"title": "x"}), "id")
    bad(api.call("GET", f"/api/cases?customerId={encoded}", token=user), "customerId")
    bad(api.call("GET", f"/api/vehicles?ownerId={encoded}", token=app), "ownerId")
    bad(api.call("POST", "/api/cases", token=user, json_body={"title": "x", "customerId": guid}),
        "customerId")  # fmt: skip


# --- bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lastName": "x", "nickname": "y"}, "nickname"),
        ({"lastName": "x", "lastname": "y"}, "lastname"),  # a Dataverse column is not a field
        ({"lastName": "x", "parentcustomerid_account@odata.bind": "/accounts(1)"}, "body"),
        ({"lastName": "x", "id": GUID}, "id"),
        ({"lastName": "x", "etag": 'W/"1"'}, "etag"),
        ({"lastName": "x", "fullName": "A B"}, "fullName"),
        ({"lastName": "x", "createdOn": "2020-01-01T00:00:00Z"}, "createdOn"),
        ({"lastName": 5}, "lastName"),
        ({"lastName": ["x"]}, "lastName"),
        ({"lastName": {"x": 1}}, "lastName"),
        ({"lastName": True}, "lastName"),
        ({"lastName": None}, "lastName"),
        ({"lastName": ""}, "lastName"),
        ({"lastName": "   "}, "lastName"),
        ({"lastName": "x" * 51}, "lastName"),
        ({"lastName": "a\u0000b"}, "lastName"),
        ({"lastName": "a\nb"}, "lastName"),
        ({"lastName": "a\u007fb"}, "lastName"),
        ({"lastName": "x", "email": "not-an-address"}, "email"),
        ({"lastName": "x", "city": "y" * 81}, "city"),
        ({"firstName": "only"}, "lastName"),  # required
    ],
)
def test_bad_customer_bodies_name_the_field(
    api: Api, quiet: tuple[str, str, Traffic], body: dict[str, Any], field: str
) -> None:
    bad(api.call("POST", "/api/customers", token=quiet[0], json_body=body), field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customerId": GUID}, "title"),
        ({"title": "x"}, "customerId"),
        ({"title": "x", "customerId": None}, "customerId"),
        ({"title": "x", "customerId": 12}, "customerId"),
        ({"title": "x", "customerId": GUID, "status": "active"}, "status"),
        ({"title": "x", "customerId": GUID, "priority": "urgent"}, "priority"),
        ({"title": "x", "customerId": GUID, "priority": 1}, "priority"),
        ({"title": "x", "customerId": GUID, "description": "d" * 2001}, "description"),
        ({"title": "x", "customerId": GUID, "description": "a\u0007b"}, "description"),
        ({"title": "x", "customerId": GUID, "customerid_contact@odata.bind": "x"}, "body"),
    ],
)
def test_bad_case_bodies_name_the_field(
    api: Api, quiet: tuple[str, str, Traffic], body: dict[str, Any], field: str
) -> None:
    bad(api.call("POST", "/api/cases", token=quiet[0], json_body=body), field)


def test_bodies_that_are_not_a_json_object(api: Api, quiet: tuple[str, str, Traffic]) -> None:
    user = quiet[0]
    json_type = {"Content-Type": "application/json"}
    for data in (b"", b"{", b"[1]", b'"text"', b"null", b"NaN", b'{"lastName": NaN}',
                 b"\xff\xfe", b'{"lastName": "x"} trailing'):  # fmt: skip
        bad(api.call("POST", "/api/customers", token=user, data=data, headers=json_type), "body")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = api.call(
            "POST", "/api/customers", token=user, data=b'{"lastName": "x"}',
            headers={"Content-Type": content_type},
        )  # fmt: skip
        bad(response, status=415)
    big = b'{"lastName": "' + b"x" * 70_000 + b'"}'
    bad(api.call("POST", "/api/customers", token=user, data=big, headers=json_type), status=413)


def test_bad_updates(api: Api, quiet: tuple[str, str, Traffic]) -> None:
    user = quiet[0]
    bad(api.call("PATCH", f"/api/customers/{GUID}", token=user, json_body={}), "body")
    bad(api.call("PATCH", f"/api/customers/{GUID}", token=user, json_body={"lastName": None}),
        "lastName")  # fmt: skip
    for if_match in ("123", "W/123", 'W/"a b"', '"x" , "y"', "W/" + '"' + "1" * 80 + '"'):
        response = api.call(
            "PATCH", f"/api/customers/{GUID}", token=user, json_body={"city": "x"},
            headers={"If-Match": if_match},
        )  # fmt: skip
        bad(response, "If-Match")
