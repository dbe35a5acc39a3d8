"""Issue 16: the OpenAPI document says what the API does, and so does the client guide
(docs/clients.md).

- A record the caller may not see is 404 `not_found` (settled by issue 10): the API answers
  it, the document's 404 and 403 responses say so, and so does the client guide's errors table.
- `upper` text fields (VIN, registration number) take lower case: a body the document's schema
  accepts is accepted, and stored upper case.
"""

from __future__ import annotations

import uuid
from typing import Any

import jsonschema
import pytest

from devstack.config import ROOT
from tests.api.conftest import Api
from tests.api.contract_helpers import store_rows, systemuserid
from tests.api.test_openapi import conforms


@pytest.fixture(scope="module")
def doc(api: Api) -> dict[str, Any]:
    response = api.call("GET", "/api/openapi.json", key=None, token=None)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _readme_row(code: str) -> str:
    lines = (ROOT / "docs" / "clients.md").read_text(encoding="utf-8").splitlines()
    return next(line for line in lines if line.startswith("| ") and f"| `{code}` |" in line)


def test_a_record_the_caller_may_not_see_is_404_in_api_document_and_readme(
    api: Api, doc: dict[str, Any]
) -> None:
    rows = store_rows(
        api,
        'SELECT contactid FROM "contacts" WHERE _ownerid_value = ? LIMIT 1',
        (systemuserid(api, user="bob"),),
    )
    hidden = api.call("GET", f"/api/customers/{rows[0]['contactid']}", user="alice")
    assert (hidden.status_code, hidden.json()["code"]) == (404, "not_found")
    conforms(doc, "GET", "/customers/{id}", hidden)
    responses = doc["components"]["responses"]
    assert "may not see it" in responses["NotFound"]["description"]
    assert "may not see at all is a 404, never this 403" in responses["Forbidden"]["description"]
    assert _readme_row("not_found").startswith("| 404 |")
    assert "not visible to the caller" in _readme_row("not_found")
    assert "404 `not_found` instead, never this 403" in _readme_row("backend_forbidden")


def test_lower_case_vin_and_registration_number_match_the_document(
    api: Api, doc: dict[str, Any]
) -> None:
    vin = ("1hgcm" + uuid.uuid4().hex[:12]).lower()  # hex has no i, o or q
    body = {"name": "Lower-case car", "vin": vin, "registrationNumber": "ab 12-cd"}
    schema = {"components": doc["components"], "$ref": "#/components/schemas/VehicleCreate"}
    jsonschema.Draft202012Validator(schema).validate(body)
    created = api.call("POST", "/api/vehicles", app="dealer-sync", json_body=body)
    assert created.status_code == 201, created.text
    conforms(doc, "POST", "/vehicles", created)
    record = created.json()
    assert (record["vin"], record["registrationNumber"]) == (vin.upper(), "AB 12-CD")
    found = api.call("GET", f"/api/vehicles?vin={vin}", app="dealer-sync")
    assert [item["id"] for item in found.json()["items"]] == [record["id"]]
