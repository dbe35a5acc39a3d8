"""Counts (learn.microsoft.com, "Count rows using OData"): `@odata.count` up to 5000 on every
page, and with `Prefer: odata.include-annotations` the `totalrecordcount` and
`totalrecordcountlimitexceeded` annotations that tell "exactly 5000" from "more"."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import Headers

from devstack.dataverse import Dataverse
from devstack.dataverse.operations import Operation, handle
from devstack.dataverse.tables import TABLES
from devstack.tenant import Tenant, load_tenant
from tests.devstack.dataverse_helpers import Api, Tokens

TOTAL = "@Microsoft.Dynamics.CRM.totalrecordcount"
EXCEEDED = "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"
ANNOTATIONS = 'odata.include-annotations="Microsoft.Dynamics.CRM.*"'


@pytest.fixture(scope="module")
def bob(entra: Any, tenant: Tenant, dataverse: Any, ca_bundle: Path) -> Iterator[Api]:
    api = Api(
        dataverse.url, ca_bundle, Tokens(entra.app.state.entra, tenant, dataverse.url).user("bob")
    )
    yield api
    api.close()


def test_count_on_every_page_and_the_total_annotations(bob: Api) -> None:
    prefer = {"Prefer": f"odata.maxpagesize=15,{ANNOTATIONS}"}
    first = bob.get("accounts?$select=name&$count=true", headers=prefer)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["@odata.count"], body[TOTAL], body[EXCEEDED]) == (40, 40, False)
    assert len(body["value"]) == 15
    second = bob.get(body["@odata.nextLink"], headers=prefer).json()
    assert (second["@odata.count"], second[TOTAL]) == (40, 40)
    assert (
        'odata.include-annotations="Microsoft.Dynamics.CRM.*"'
        in first.headers["Preference-Applied"]
    )


def test_without_count_the_total_is_minus_one(bob: Api) -> None:
    body = bob.get("accounts?$select=name&$top=1", headers={"Prefer": ANNOTATIONS}).json()
    assert "@odata.count" not in body
    assert (body[TOTAL], body[EXCEEDED]) == (-1, False)
    plain = bob.get("accounts?$select=name&$top=1&$count=true").json()
    assert TOTAL not in plain
    assert EXCEEDED not in plain


def test_more_than_5000_rows(tmp_path: Path) -> None:
    tenant = load_tenant(dataverse_url="https://localhost:1")
    dv = Dataverse(
        tenant,
        base_url="https://localhost:1",
        entra_url="https://localhost:2",
        db_path=tmp_path / "many.sqlite",
        ca_bundle=tmp_path / "none.pem",
        seed=False,
    )
    accounts = TABLES["accounts"]
    owner = dv.principal("central-api").systemuserid
    with dv.store.transaction():
        for n in range(5001):
            dv.store.insert(
                accounts,
                {"accountid": str(uuid.uuid4()), "name": f"A{n}", "_ownerid_value": owner},
            )

    def get(query: list[tuple[str, str]]) -> dict[str, Any]:
        op = Operation(
            "GET", "accounts", [("$select", "name"), *query], Headers({"prefer": ANNOTATIONS})
        )
        reply = handle(dv, dv.principal("central-api"), op)
        assert reply.status == 200
        body: dict[str, Any] = reply.body
        return body

    body = get([("$count", "true"), ("$top", "1")])
    assert (body["@odata.count"], body[TOTAL], body[EXCEEDED]) == (5000, 5000, True)
    with dv.store.transaction():
        dv.store.delete(
            accounts, dv.store.query("SELECT accountid FROM accounts LIMIT 1")[0]["accountid"]
        )
    body = get([("$count", "true"), ("$top", "1")])
    assert (body["@odata.count"], body[TOTAL], body[EXCEEDED]) == (5000, 5000, False)
    dv.store.close()
