"""Contract, "Domains", vehicle row (the custom `bos_vehicles` table): application tokens only;
filters `vin`, `registrationNumber`, `ownerId`; create, read, update with etags. `dealer-sync`
holds vehicle.readwrite. The application-only 403 is in test_contract_pipeline.py."""

from __future__ import annotations

import random
import uuid
from typing import Any

from tests.api.conftest import Api
from tests.api.contract_helpers import (
    assert_error,
    assert_no_dataverse_names,
    create,
    downstream,
    new_customer,
    store_rows,
    unique,
)

_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def vin() -> str:
    return "".join(random.choice(_VIN_CHARS) for _ in range(17))


def plate() -> str:
    return "T" + uuid.uuid4().hex[:8].upper()


def new_vehicle(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"name": unique("Car"), "vin": vin(), "registrationNumber": plate(), **fields}
    return create(api, "vehicles", body, app="dealer-sync")


def test_create_read_back_update_with_etag_and_a_stale_etag_is_412(api: Api) -> None:
    owner = new_customer(api)
    number = vin()
    car = new_vehicle(
        api, vin=number.lower(), make="Volvo", model="XC40", modelYear=2024, ownerId=owner["id"]
    )
    assert car["vin"] == number  # stored upper case
    assert (car["make"], car["modelYear"], car["ownerId"]) == ("Volvo", 2024, owner["id"])

    read = api.call("GET", f"/api/vehicles/{car['id']}", app="dealer-sync")
    assert read.status_code == 200
    assert read.json() == car
    assert_no_dataverse_names(read)

    updated = api.call(
        "PATCH", f"/api/vehicles/{car['id']}", app="dealer-sync",
        json_body={"modelYear": 2025, "ownerId": None}, headers={"If-Match": car["etag"]},
    )  # fmt: skip
    assert updated.status_code == 200, updated.text
    assert updated.json()["modelYear"] == 2025
    assert updated.json()["ownerId"] is None
    stale = api.call(
        "PATCH", f"/api/vehicles/{car['id']}", app="dealer-sync",
        json_body={"modelYear": 2020}, headers={"If-Match": car["etag"]},
    )  # fmt: skip
    assert_error(stale, 412, "precondition_failed")

    missing = str(uuid.uuid4())
    with downstream(api) as seen:
        ghost = api.call(
            "PATCH", f"/api/vehicles/{missing}", app="dealer-sync", json_body={"make": "Saab"}
        )
    assert_error(ghost, 404, "not_found")
    assert [c["status"] for c in seen.to_table("bos_vehicles")] == [404]
    assert store_rows(api, 'SELECT 1 FROM "bos_vehicles" WHERE bos_vehicleid = ?', (missing,)) == []


def test_filters_by_vin_registration_number_and_owner(api: Api) -> None:
    owner = new_customer(api)
    first = new_vehicle(api, ownerId=owner["id"])
    second = new_vehicle(api, ownerId=owner["id"])
    new_vehicle(api)

    def ids(query: str) -> set[str]:
        response = api.call("GET", f"/api/vehicles?{query}", app="dealer-sync")
        assert response.status_code == 200, response.text
        assert_no_dataverse_names(response)
        return {v["id"] for v in response.json()["items"]}

    assert ids(f"vin={first['vin']}") == {first["id"]}
    assert ids(f"vin={first['vin'].lower()}") == {first["id"]}
    assert ids(f"registrationNumber={second['registrationNumber']}") == {second["id"]}
    assert ids(f"ownerId={owner['id']}") == {first["id"], second["id"]}
    assert ids(f"ownerId={owner['id']}&vin={second['vin']}") == {second["id"]}
    assert ids(f"vin={vin()}") == set()


def test_vehicle_fields_are_validated(api: Api) -> None:
    car = new_vehicle(api)
    with downstream(api) as seen:
        for body, field in (
            ({"vin": "TOO-SHORT"}, "vin"),
            ({"vin": "IOQ" + vin()[3:]}, "vin"),  # I, O and Q never appear in a VIN
            ({"modelYear": 1800}, "modelYear"),
            ({"modelYear": "2020"}, "modelYear"),
            ({"modelYear": 2020.5}, "modelYear"),
            ({"modelYear": True}, "modelYear"),
            ({"registrationNumber": "AB_12"}, "registrationNumber"),
            ({"ownerId": "not-a-guid"}, "ownerId"),
            ({"name": None}, "name"),
            ({"createdOn": "2020-01-01T00:00:00Z"}, "createdOn"),
        ):
            response = api.call(
                "PATCH", f"/api/vehicles/{car['id']}", app="dealer-sync", json_body=body
            )
            assert_error(response, 400, "invalid_input", mentions=(field,))
    assert seen.dataverse == []


def test_an_owner_that_does_not_exist_is_a_400_naming_owner_id(api: Api) -> None:
    response = api.call(
        "POST", "/api/vehicles", app="dealer-sync",
        json_body={"name": unique("Car"), "ownerId": str(uuid.uuid4())},
    )  # fmt: skip
    assert_error(response, 400, "invalid_input", mentions=("ownerId",))
