"""`GET /api/openapi.json`: a valid OpenAPI 3.1 document that describes exactly what the app
serves, with the scopes each policy accepts, and real responses that match it."""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import jsonschema
import pytest
import requests
from openapi_spec_validator import validate

import function_app
from devstack.host._functions import index_functions
from shared import openapi
from shared.domains.routes import operations, registered
from shared.settings import get_settings
from tests.api.conftest import Api

ROOT = Path(__file__).resolve().parents[2]
ERRORS = {"400", "401", "403", "429", "500", "502", "503", "504"}  # 429: rate limit, caller cap


@pytest.fixture(scope="module")
def doc(api: Api) -> dict[str, Any]:
    response = api.call("GET", "/api/openapi.json", key=None, token=None)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield method.upper(), path, operation


# --- the document -------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": "/api", "description": "This API, wherever it is hosted."}]


def test_the_version_is_the_projects(doc: dict[str, Any]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert doc["info"]["version"] == project["version"]


def test_every_registered_function_is_described_and_nothing_else() -> None:
    document = openapi.document()
    served = {
        (method, "/" + f.route): f.name
        for f in index_functions(function_app.app, "")
        for method in (f.methods or {"*"})
    }
    described = {(method, path): op["operationId"] for method, path, op in _operations(document)}
    assert described == served
    assert ("GET", "/openapi.json") in served


def test_security_schemes_name_the_tenant_and_every_scope(doc: dict[str, Any]) -> None:
    settings = get_settings()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["subscriptionKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Ocp-Apim-Subscription-Key",
        "description": schemes["subscriptionKey"]["description"],
    }
    flows = schemes["entraId"]["flows"]
    authority = f"{settings.authority_host}/{settings.tenant_id}/oauth2/v2.0"
    assert flows["authorizationCode"]["authorizationUrl"] == f"{authority}/authorize"
    assert flows["authorizationCode"]["tokenUrl"] == f"{authority}/token"
    assert flows["clientCredentials"]["tokenUrl"] == f"{authority}/token"
    every = {
        f"api://{settings.api_client_id}/{d.name}.{level}"
        for d in registered()
        for level in ("read", "readwrite")
    }
    assert set(flows["authorizationCode"]["scopes"]) == every
    # Client credentials take `/.default` only: Entra refuses a named scope (AADSTS1002012).
    assert set(flows["clientCredentials"]["scopes"]) == {f"api://{settings.api_client_id}/.default"}


def test_each_operation_names_the_scopes_its_policy_accepts(doc: dict[str, Any]) -> None:
    client_id = get_settings().api_client_id
    for domain in registered():
        for op in operations(domain):
            described = doc["paths"]["/" + op.route][op.method.lower()]
            # The contract, independently of `Policy`: reads take either scope, writes one.
            levels = ("read", "readwrite") if op.method == "GET" else ("readwrite",)
            names = [f"{domain.name}.{level}" for level in levels]
            assert list(op.policy.required) == names
            assert described["security"] == [
                {"subscriptionKey": [], "entraId": [f"api://{client_id}/{name}"]} for name in names
            ]
            assert described["x-required-permissions"] == names
            assert described["x-user-delegated"] is domain.delegated
    for path in ("/health", "/openapi.json"):
        assert doc["paths"][path]["get"]["security"] == []


def test_each_operation_lists_every_error_it_can_answer(doc: dict[str, Any]) -> None:
    expected = {
        ("GET", "/customers"): ERRORS,
        ("GET", "/customers/{id}"): ERRORS | {"404"},
        ("POST", "/customers"): ERRORS | {"413", "415"},
        ("PATCH", "/customers/{id}"): ERRORS | {"404", "412", "413", "415"},
    }
    for method, path, op in _operations(doc):
        statuses = {s for s in op["responses"] if int(s) >= 400}
        if path in ("/health", "/openapi.json"):
            continue
        generic = path.replace(path.split("/")[1], "customers")
        assert statuses == expected[(method, generic)], (method, path)
        too_many = doc["components"]["responses"]["TooManyRequests"]
        assert op["responses"]["429"] == {"$ref": "#/components/responses/TooManyRequests"}
        assert "RetryAfter" in too_many["headers"]["Retry-After"]["$ref"]


def test_bodies_list_the_writable_fields(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    create, update = schemas["CustomerCreate"], schemas["CustomerUpdate"]
    assert create["required"] == ["lastName"]
    assert create["additionalProperties"] is False
    assert update["additionalProperties"] is False
    assert update["minProperties"] == 1
    assert "fullName" not in update["properties"]
    assert "createdOn" not in create["properties"]
    assert set(schemas["Case"]["required"]) >= {"id", "etag", "customerId", "status"}
    vin = schemas["VehicleCreate"]["properties"]["vin"]["anyOf"][0]
    assert vin["maxLength"] == 17


def test_without_settings_the_document_has_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_CLIENT_ID")
    get_settings.cache_clear()
    try:
        request = func.HttpRequest("GET", "/api/openapi.json", body=b"")
        response = openapi.openapi(request)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert response.status_code == 200
    text = response.get_body().decode("utf-8")
    assert f"api://{openapi.PLACEHOLDER_CLIENT_ID}/customer.read" in text
    assert f"{openapi.PLACEHOLDER_AUTHORITY}/oauth2/v2.0/token" in text


# --- real responses against the document --------------------------------------------------


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _check_schema(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    root = {"components": doc["components"], **schema}
    validator = jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(value)


def conforms(doc: dict[str, Any], method: str, template: str, response: requests.Response) -> None:
    """`response` is one the document promises for `method template`: a documented status,
    the documented body schema and every required header (with its schema)."""
    operation = doc["paths"][template][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], (method, template, status, response.text)
    promised = _resolve(doc, operation["responses"][status])
    for name, header in promised.get("headers", {}).items():
        header = _resolve(doc, header)
        value = response.headers.get(name)
        if value is None:
            assert not header.get("required"), f"{name} missing on {status}"
            continue
        schema = header["schema"]
        _check_schema(doc, schema, int(value) if schema.get("type") == "integer" else value)
    content = promised["content"]["application/json"]
    assert response.headers["Content-Type"].split(";")[0] == "application/json"
    _check_schema(doc, content["schema"], response.json())


def test_anonymous_endpoints_match(api: Api, doc: dict[str, Any]) -> None:
    conforms(doc, "GET", "/health", api.call("GET", "/api/health", key=None, token=None))
    conforms(doc, "GET", "/openapi.json", api.call("GET", "/api/openapi.json", key=None))


def test_customer_round_trip_matches(api: Api, doc: dict[str, Any]) -> None:
    listed = api.call("GET", "/api/customers?pageSize=2", user="alice")
    conforms(doc, "GET", "/customers", listed)
    assert listed.json()["nextPageToken"]
    created = api.call(
        "POST",
        "/api/customers",
        user="alice",
        json_body={"firstName": "Openapi", "lastName": "Conformance", "email": "o@example.com"},
    )
    conforms(doc, "POST", "/customers", created)
    assert created.status_code == 201
    record = created.json()
    assert created.headers["Location"] == f"/api/customers/{record['id']}"
    item = f"/api/customers/{record['id']}"
    conforms(doc, "GET", "/customers/{id}", api.call("GET", item, user="alice"))
    updated = api.call(
        "PATCH",
        item,
        user="alice",
        json_body={"jobTitle": "Tester", "phone": None},
        headers={"If-Match": record["etag"]},
    )
    conforms(doc, "PATCH", "/customers/{id}", updated)
    assert updated.status_code == 200
    stale = api.call(
        "PATCH",
        item,
        user="alice",
        json_body={"jobTitle": "x"},
        headers={"If-Match": record["etag"]},
    )
    assert stale.status_code == 412
    conforms(doc, "PATCH", "/customers/{id}", stale)


def test_error_responses_match(api: Api, doc: dict[str, Any]) -> None:
    missing = f"/api/customers/{uuid.uuid4()}"
    cases: list[tuple[str, str, int, requests.Response]] = [
        ("GET", "/customers/{id}", 404, api.call("GET", missing, user="alice")),
        ("GET", "/customers/{id}", 400, api.call("GET", "/api/customers/nope", user="alice")),
        ("GET", "/customers", 401, api.call("GET", "/api/customers", key=None, user="alice")),
        ("GET", "/customers", 401, api.call("GET", "/api/customers", token="not.a.token")),
        (
            "POST",
            "/customers",
            403,
            api.call("POST", "/api/customers", user="alice", client="reporting", json_body={}),
        ),
        ("GET", "/vehicles", 403, api.call("GET", "/api/vehicles", user="alice")),
        ("GET", "/cases", 403, api.call("GET", "/api/cases", app="dealer-sync")),
        (
            "POST",
            "/customers",
            415,
            api.call("POST", "/api/customers", user="alice", data="lastName=x"),
        ),
        (
            "PATCH",
            "/customers/{id}",
            413,
            api.call(
                "PATCH",
                missing,
                user="alice",
                data=b"{" + b" " * 70_000 + b"}",
                headers={"Content-Type": "application/json"},
            ),
        ),
        (
            "PATCH",
            "/customers/{id}",
            404,
            api.call("PATCH", missing, user="alice", json_body={"jobTitle": "x"}),
        ),
    ]
    for method, template, status, response in cases:
        assert response.status_code == status, (method, template, response.text)
        conforms(doc, method, template, response)


def test_backend_failures_match(faults: Api, doc: dict[str, Any]) -> None:
    contacts = "/api/data/v9.2/contacts*"
    faults.dataverse_control(
        "POST", "faults", json={"path": contacts, "status": 429, "retry_after": 600, "count": 1}
    )
    throttled = faults.call("GET", "/api/customers", user="alice")
    assert throttled.status_code == 503
    assert throttled.headers["Retry-After"] == "600"
    conforms(doc, "GET", "/customers", throttled)
    faults.dataverse_control("POST", "faults", json={"path": contacts, "status": 500, "count": 1})
    failed = faults.call("GET", "/api/customers", user="alice")
    assert failed.status_code == 502
    conforms(doc, "GET", "/customers", failed)


def test_other_domains_match(api: Api, doc: dict[str, Any]) -> None:
    vehicles = api.call("GET", "/api/vehicles?pageSize=3", app="dealer-sync")
    conforms(doc, "GET", "/vehicles", vehicles)
    vin = "1HGCM" + uuid.uuid4().hex[:12].upper()  # hex has no I, O or Q
    created = api.call(
        "POST",
        "/api/vehicles",
        app="dealer-sync",
        json_body={"name": "Conformance car", "vin": vin, "modelYear": 2020},
    )
    conforms(doc, "POST", "/vehicles", created)
    assert created.status_code == 201, created.text
    cases = api.call("GET", "/api/cases?pageSize=3&status=active", user="bob")
    conforms(doc, "GET", "/cases", cases)
    first = cases.json()["items"][0]
    conforms(doc, "GET", "/cases/{id}", api.call("GET", f"/api/cases/{first['id']}", user="bob"))
    searched = api.call("GET", "/api/customers?q=a&pageSize=5", app="dealer-sync")
    conforms(doc, "GET", "/customers", searched)
