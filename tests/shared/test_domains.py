"""shared.domains in process: field kinds, the declarations, page tokens, and how client JSON
becomes a Dataverse payload (and Dataverse rows become client JSON)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared.domains import service
from shared.domains.case import CASE
from shared.domains.customer import CUSTOMER
from shared.domains.model import (
    Choice,
    Domain,
    Field,
    Filter,
    Integer,
    Reference,
    Text,
    Timestamp,
    check_text,
    parse_guid,
)
from shared.domains.routes import operations
from shared.domains.vehicle import VEHICLE
from shared.http.errors import BadInput
from tests.declared import domains

DOMAINS = list(domains())  # every registered domain, a new one included
GUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
CAMEL = re.compile(r"^[a-z][A-Za-z0-9]*$")


def refused(field: str) -> Any:
    """pytest.raises for a BadInput naming `field`."""
    return pytest.raises(BadInput, match=rf"^{re.escape(field)}: ")


# --- GUIDs and text -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [GUID, GUID.upper()])
def test_canonical_guids_are_accepted_and_lower_cased(value: str) -> None:
    assert parse_guid(value, "id") == GUID


@pytest.mark.parametrize(
    "value",
    [GUID.replace("-", ""), f"{{{GUID}}}", f"urn:uuid:{GUID}", GUID[:-1], GUID + "0",
     f" {GUID}", f"{GUID}\n", GUID.replace("a", "g"), "", None, 42, ["x"],
     "٣fa85f64-5717-4562-b3fc-2c963f66afa6"],
)  # fmt: skip
def test_anything_else_is_not_a_guid(value: object) -> None:
    with refused("id"):
        parse_guid(value, "id")


def test_check_text() -> None:
    assert check_text("Åse\u00a0Ødegård", "x", max_length=20) == "Åse\u00a0Ødegård"
    assert check_text("a\r\nb\tc", "x", max_length=20, multiline=True) == "a\r\nb\tc"
    for value in ("a\nb", "a\tb", "a\rb"):
        with refused("x"):
            check_text(value, "x", max_length=20)
    for value in ("\x00", "a\x1bb", "\x7f", "\x0b", "\x0c", "a\x85b", "\x9f"):
        with refused("x"):
            check_text(value, "x", max_length=20, multiline=True)
    with refused("x"):
        check_text("x" * 21, "x", max_length=20)
    assert check_text("x" * 20, "x", max_length=20)
    with refused("x"):
        check_text(5, "x", max_length=20)


# --- kinds --------------------------------------------------------------------------------


def test_text_kind() -> None:
    kind = Text(5)
    assert kind.parse("abc", "f") == "abc"
    for value in ("", "  ", "abcdef", None, 1, True, ["a"]):
        with refused("f"):
            kind.parse(value, "f")
    vin = Text(17, pattern="[A-HJ-NPR-Z0-9]{17}", upper=True, pattern_hint="bad vin")
    assert vin.parse("1hgcm82633a004352", "vin") == "1HGCM82633A004352"
    with pytest.raises(BadInput, match="vin: bad vin"):
        vin.parse("1HGCM82633A00435O", "vin")
    assert vin.schema()["maxLength"] == 17


def test_integer_kind() -> None:
    kind = Integer(1900, 2100)
    assert kind.parse(2024, "year") == 2024
    assert kind.parse(2024.0, "year") == 2024  # JSON has one number type
    for value in (1899, 2101, "2024", 2024.5, True, None, [2024], float("nan")):
        with refused("year"):
            kind.parse(value, "year")


def test_choice_kind_speaks_names_and_stores_codes() -> None:
    kind = Choice({"high": 1, "normal": 2})
    assert kind.parse("high", "priority") == 1
    for value in ("High", 1, "", None, "urgent"):
        with pytest.raises(BadInput, match="priority: must be one of high, normal"):
            kind.parse(value, "priority")
    assert kind.render(2) == "normal"
    assert kind.render(99) is None
    assert kind.render(None) is None


def test_reference_kind_and_how_it_is_written() -> None:
    field = Field("customerId", "_customerid_value", Reference("customerid_contact", "contacts"),
                  "The customer.")  # fmt: skip
    assert field.kind.parse(GUID.upper(), "customerId") == GUID
    with refused("customerId"):
        field.kind.parse("nope", "customerId")
    assert field.to_dataverse(GUID) == ("customerid_contact@odata.bind", f"/contacts({GUID})")
    assert field.to_dataverse(None) == ("customerid_contact@odata.bind", None)
    plain = Field("city", "address1_city", Text(80), "City.")
    assert plain.to_dataverse("Oslo") == ("address1_city", "Oslo")


def test_timestamp_kind_renders_utc_iso() -> None:
    kind = Timestamp()
    assert kind.render("2025-01-10T15:15:32Z") == "2025-01-10T15:15:32+00:00"
    assert kind.render("2025-01-10T16:15:32+01:00") == "2025-01-10T15:15:32+00:00"
    assert kind.render("garbage") is None
    assert kind.render(None) is None
    assert kind.render(5) is None


def test_a_declaration_naming_an_unknown_field_is_refused() -> None:
    fields = (Field("name", "x_name", Text(10), "Name."),)
    with pytest.raises(ValueError, match="unknown fields"):
        Domain("thing", "things", "x_things", "x_thingid", "T", "d", fields, search=("nope",))
    with pytest.raises(ValueError, match="unknown fields"):
        Domain("thing", "things", "x_things", "x_thingid", "T", "d", fields,
               filters=(Filter("owner", "ownerId", "d"),))  # fmt: skip


# --- the declared domains -----------------------------------------------------------------


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_declarations_speak_the_apis_names_only(domain: Domain) -> None:
    names = [f.name for f in domain.fields]
    assert len(set(names)) == len(names)
    assert all(CAMEL.match(n) for n in names)
    assert not {"id", "etag"} & set(names)
    # Lookup columns, the key and annotations are Dataverse's names, never the API's.
    assert domain.key not in names
    assert not [n for n in names if n.startswith("_") or "@" in n or n.endswith("id")]
    assert domain.select.split(",")[0] == domain.key
    assert service.list_params(domain) == frozenset(
        {"pageSize", "pageToken", *(["q"] if domain.search else []),
         *(f.param for f in domain.filters)}
    )  # fmt: skip


def test_the_contracts_search_and_filters() -> None:
    assert set(CUSTOMER.search) == {"fullName", "email", "phone"}
    assert {f.param for f in CASE.filters} == {"customerId", "status"}
    assert CASE.search
    assert {f.param for f in VEHICLE.filters} == {"vin", "registrationNumber", "ownerId"}
    assert not VEHICLE.search
    assert (CUSTOMER.delegated, CASE.delegated, VEHICLE.delegated) == (True, True, False)


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_each_domain_has_the_four_operations_with_its_policy(domain: Domain) -> None:
    ops = {op.kind: op for op in operations(domain)}
    assert set(ops) == {"list", "get", "create", "update"}
    assert (ops["list"].method, ops["get"].method, ops["create"].method, ops["update"].method) == (
        "GET", "GET", "POST", "PATCH",
    )  # fmt: skip
    assert ops["list"].route == ops["create"].route == domain.route
    assert ops["get"].route == ops["update"].route == f"{domain.route}/{{id}}"
    assert ops["list"].policy.required == (f"{domain.name}.read", f"{domain.name}.readwrite")
    assert (
        ops["create"].policy.required
        == ops["update"].policy.required
        == (f"{domain.name}.readwrite",)
    )
    assert all(op.policy.delegated is domain.delegated for op in ops.values())
    assert ops["get"].params == ops["create"].params == ops["update"].params == frozenset()


# --- rows and payloads --------------------------------------------------------------------


def test_render_maps_columns_to_fields_and_drops_everything_else() -> None:
    row = {
        "@odata.etag": 'W/"7"',
        "incidentid": GUID,
        "title": "Brakes",
        "_customerid_value": GUID,
        "_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "contact",
        "prioritycode": 1,
        "statecode": 0,
        "createdon": "2025-01-10T15:15:32Z",
        "ownerid": "secret",
    }
    record = service.render(CASE, row)
    assert record["id"] == GUID
    assert record["etag"] == 'W/"7"'
    assert record["customerId"] == GUID
    assert record["priority"] == "high"
    assert record["status"] == "active"
    assert record["createdOn"] == "2025-01-10T15:15:32+00:00"
    assert record["description"] is None
    assert set(record) == {"id", "etag", *(f.name for f in CASE.fields)}
    assert "secret" not in json.dumps(record)
    assert "@" not in json.dumps(record)


def test_changes_for_create_and_update() -> None:
    body = {"title": "Brakes", "customerId": GUID.upper(), "priority": "low"}
    assert service._changes(CASE, body, creating=True) == {
        "title": "Brakes",
        "customerid_contact@odata.bind": f"/contacts({GUID})",
        "prioritycode": 3,
    }
    assert service._changes(CASE, {"description": None}, creating=False) == {"description": None}
    with refused("customerId"):
        service._changes(CASE, {"title": "x"}, creating=True)
    with refused("title"):
        service._changes(CASE, {"title": None}, creating=False)
    with refused("body"):
        service._changes(CASE, {}, creating=False)


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        ({"id": GUID}, "id", "is read-only"),
        ({"etag": "x"}, "etag", "is read-only"),
        ({"status": "active"}, "status", "is read-only"),
        ({"ticketNumber": "x"}, "ticketNumber", "is read-only"),
        ({"nope": 1}, "nope", "is not a field of Case"),
        ({"incidentid": GUID}, "incidentid", "is not a field of Case"),
        ({"customerid_contact@odata.bind": "x"}, "body", "is not a field of Case"),
        ({"a" * 41: 1}, "body", "is not a field of Case"),
        ({"title": 5}, "title", "must be a string"),
    ],
)
def test_changes_refuse_what_a_client_may_not_write(
    body: dict[str, Any], field: str, why: str
) -> None:
    with pytest.raises(BadInput) as caught:
        service._changes(CASE, body, creating=False)
    assert (caught.value.field, caught.value.why) == (field, why)


# --- paging -------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "size"), [(None, 50), ("1", 1), ("200", 200), ("050", 50)])
def test_page_size(raw: str | None, size: int) -> None:
    assert service._page_size({} if raw is None else {"pageSize": raw}) == size


@pytest.mark.parametrize("raw", ["0", "201", "abc", "-1", "1.5", "", " 5", "+5", "٣", "1e2"])
def test_bad_page_sizes(raw: str) -> None:
    with refused("pageSize"):
        service._page_size({"pageSize": raw})
