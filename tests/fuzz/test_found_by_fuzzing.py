"""What fuzzing the API found, kept as plain regression tests (end to end through the host).

Each was a 500 (or a refusal of input the OpenAPI document allows); each is now a 400 that names
the field, sent nowhere downstream, or accepted as documented.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from shared.domains.model import parse_guid
from shared.http.errors import BadInput
from tests.api.conftest import Api

ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def _bad_input_and_nothing_sent(api: Api, field: str, method: str, path: str, **kw: Any) -> None:
    _, mark = api.marks()
    response = api.call(method, path, **kw)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"Bad request. {field}: ")
    assert api.dataverse_requests(mark) == []


@pytest.mark.parametrize(
    ("field", "path", "who"),
    [
        ("id", f"/api/customers/{ID}%0A", {"user": "alice"}),
        ("customerId", f"/api/cases?customerId={ID}%0A", {"user": "bob"}),
        ("ownerId", f"/api/vehicles?ownerId={ID}%0A", {"app": "dealer-sync"}),
    ],
)
def test_a_guid_with_a_trailing_line_break_is_bad_input(
    api: Api, field: str, path: str, who: dict[str, str]
) -> None:
    # `$` matches before a final "\n": the regex let it through and uuid.UUID raised (500).
    _bad_input_and_nothing_sent(api, field, "GET", path, **who)


def test_a_guid_in_a_body_with_a_trailing_line_break_is_bad_input(api: Api) -> None:
    body = {"title": "Trailing line break", "customerId": f"{ID}\n"}
    _bad_input_and_nothing_sent(api, "customerId", "POST", "/api/cases", user="bob", json_body=body)


def test_parse_guid_wants_exactly_the_canonical_form() -> None:
    assert parse_guid(ID.upper(), "id") == ID
    for value in (f"{ID}\n", f"\n{ID}", f"{ID} ", f"{{{ID}}}"):
        with pytest.raises(BadInput):
            parse_guid(value, "id")


def test_a_lone_surrogate_in_a_body_is_bad_input(api: Api) -> None:
    # Valid JSON, but not text: encoding it for Dataverse raised UnicodeEncodeError (500).
    _bad_input_and_nothing_sent(
        api,
        "lastName",
        "POST",
        "/api/customers",
        user="alice",
        data=b'{"lastName": "x\\ud800y"}',
        headers={"Content-Type": "application/json"},
    )


def test_a_deeply_nested_page_token_is_bad_input(api: Api) -> None:
    # A page token is base64 of JSON; nesting past the recursion limit raised RecursionError.
    token = base64.urlsafe_b64encode(b"[" * 3000).decode("ascii").rstrip("=")
    _bad_input_and_nothing_sent(
        api, "pageToken", "GET", f"/api/customers?pageToken={token}", user="alice"
    )


def test_an_integral_number_with_a_decimal_point_is_an_integer(api: Api) -> None:
    # JSON has one number type and the document says `integer`: 2021.0 is 2021.
    vin = "YV1" + uuid.uuid4().hex[:14].upper()
    response = api.call(
        "POST",
        "/api/vehicles",
        app="dealer-sync",
        json_body={"name": "Decimal point", "vin": vin, "modelYear": 2021.0},
    )
    assert response.status_code == 201, response.text
    assert response.json()["modelYear"] == 2021
    fraction = api.call(
        "POST", "/api/vehicles", app="dealer-sync", json_body={"name": "x", "modelYear": 2021.5}
    )
    assert fraction.status_code == 400
