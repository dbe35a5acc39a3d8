"""What real Dataverse does and the emulator does not: a 501 in Dataverse's error shape naming
the feature, never a silent success (a `?fetchXml=` answered as a plain list) nor a 404 that reads
as "Dataverse has no such thing"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from devstack.tenant import Tenant
from tests.devstack.dataverse_helpers import Api, Tokens, assert_error

UNEXPECTED = "0x80040216"
SOME_ID = "00000000-0000-0000-0000-000000000001"
FETCH = '<fetch top="2"><entity name="contact"><attribute name="fullname"/></entity></fetch>'


@pytest.fixture(scope="module")
def app(entra: Any, tenant: Tenant, dataverse: Any, ca_bundle: Path) -> Iterator[Api]:
    api = Api(dataverse.url, ca_bundle, Tokens(entra.app.state.entra, tenant, dataverse.url).app())
    yield api
    api.close()


@pytest.mark.parametrize(
    ("method", "path", "feature"),
    [
        ("GET", f"contacts?fetchXml={quote(FETCH)}", "FetchXML queries (?fetchXml=)"),
        ("GET", f"contacts?sql={quote('SELECT TOP 2 fullname FROM contact')}", "SQL queries"),
        ("GET", f"contacts?savedQuery={SOME_ID}", "saved queries"),
        ("POST", "BulkDelete", "the function or action 'BulkDelete'"),
        ("POST", "Microsoft.Dynamics.CRM.BulkDelete", "'BulkDelete'"),
        ("GET", "RetrieveVersion()", "'RetrieveVersion'"),
        (
            "POST",
            "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
            "bound function or action 'CreateMultiple'",
        ),
        ("POST", "contacts/Microsoft.Dynamics.CRM.UpdateMultiple", "'UpdateMultiple'"),
        ("POST", f"contacts({SOME_ID})/Microsoft.Dynamics.CRM.Merge", "'Merge'"),
        ("GET", "GlobalOptionSetDefinitions", "GlobalOptionSetDefinitions"),
    ],
)
def test_answered_501_naming_the_feature(app: Api, method: str, path: str, feature: str) -> None:
    response = app.request(method, path, json={} if method == "POST" else None)
    assert_error(response, 501, UNEXPECTED, feature)
    assert response.json()["error"]["message"].startswith(
        "The Dataverse emulator does not implement"
    )


def test_an_undeclared_table_is_still_a_404(app: Api) -> None:
    assert_error(app.get("Contacts"), 404, "0x8006088a", "'Contacts'")
    assert_error(app.get("leads"), 404, "0x8006088a", "'leads'")
