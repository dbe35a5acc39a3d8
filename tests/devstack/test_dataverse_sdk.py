"""The Dataverse emulator driven by Microsoft's own Python SDK (`powerplatform-dataverse-client`,
`PowerPlatform.Dataverse`), as a new user would drive it: every operation the emulator claims,
through the SDK's public API, with no cache filled by hand.

The application user (central-api) signs in with a real client-credentials flow against the Entra
emulator (azure-identity's `ClientSecretCredential`); people (alice, bob) hold tokens minted the
way Entra mints them for Dataverse, handed to the SDK through a `TokenCredential`. The SDK's
quirks the tests meet are listed in devstack/dataverse/README.md ("Microsoft's Python SDK").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from azure.core.credentials import AccessToken, TokenCredential
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError

from devstack.pki import Material
from devstack.tenant import Tenant
from tests.devstack.dataverse_helpers import Tokens, logged

Client = Callable[[str], DataverseClient]


class StaticToken(TokenCredential):
    """A token the test already holds, as a `TokenCredential` (azure-core's protocol)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        del scopes, kwargs
        return AccessToken(self._token, 2**31 - 1)


@pytest.fixture(scope="module")
def tokens(entra: Any, tenant: Tenant, dataverse: Any) -> Tokens:
    return Tokens(entra.app.state.entra, tenant, dataverse.url)


@pytest.fixture(scope="module")
def client(
    entra: Any, dataverse: Any, tenant: Tenant, material: Material, ca_bundle: Path, tokens: Tokens
) -> Iterator[Client]:
    """`client(name)`: an SDK client for a person or for the central-api application user."""
    made: list[DataverseClient] = []

    def make(name: str) -> DataverseClient:
        credential: TokenCredential
        if name == "central-api":
            credential = ClientSecretCredential(
                tenant.id,
                tenant.app(name).client_id,
                material.client_secret(name),
                authority=entra.url,
                disable_instance_discovery=True,
                connection_verify=str(ca_bundle),
            )
        else:
            credential = StaticToken(tokens.user(name))
        sdk = DataverseClient(dataverse.url, credential)
        made.append(sdk)
        return sdk

    yield make
    for sdk in made:
        sdk.close()


@pytest.fixture(scope="module")
def app(client: Client) -> DataverseClient:
    return client("central-api")


@pytest.fixture
def dv(dataverse: Any) -> Any:
    return dataverse.app.state.dataverse


def last_seq(dv: Any) -> int:
    entries = dv.control.requests()
    return int(entries[-1]["seq"]) if entries else 0


def a_contact(sdk: DataverseClient) -> dict[str, Any]:
    rows = sdk.records.list("contact", select=["fullname"], orderby=["fullname asc"], top=1)
    return dict(rows[0].data)


# --- metadata: what every SDK call reads first --------------------------------------------------


def test_table_metadata_comes_from_entity_definitions(app: DataverseClient) -> None:
    info = app.tables.get("contact")
    assert info is not None
    assert info.entity_set_name == "contacts"
    assert info.schema_name == "Contact"
    assert info.logical_name == "contact"
    assert info.primary_id_attribute == "contactid"
    assert info.primary_name_attribute == "fullname"
    assert uuid.UUID(info.metadata_id)
    assert app.tables.get("nosuchtable") is None


def test_tables_list_and_columns(app: DataverseClient) -> None:
    tables = {t["LogicalName"]: t for t in app.tables.list()}
    assert {"contact", "account", "incident", "bos_vehicle", "systemuser"} <= set(tables)
    assert tables["incident"]["DisplayName"]["UserLocalizedLabel"]["Label"] == "Case"
    assert tables["bos_vehicle"]["IsCustomEntity"] is True
    assert tables["contact"]["OwnershipType"] == "UserOwned"

    only = app.tables.list(filter="SchemaName eq 'Account'", select=["LogicalName"])
    assert [t["LogicalName"] for t in only] == ["account"]

    columns = {c["LogicalName"]: c for c in app.tables.list_columns("contact")}
    assert columns["firstname"]["@odata.type"] == "#Microsoft.Dynamics.CRM.StringAttributeMetadata"
    assert columns["firstname"]["SchemaName"] == "FirstName"
    assert columns["firstname"]["MaxLength"] == 50
    assert columns["parentcustomerid"]["AttributeType"] == "Customer"
    assert columns["parentcustomerid"]["Targets"] == ["account", "contact"]
    assert columns["statecode"]["AttributeTypeName"] == {"Value": "StateType"}
    assert columns["contactid"]["IsPrimaryId"] is True

    strings = app.tables.list_columns(
        "contact", select=["LogicalName"], filter="AttributeType eq 'String'"
    )
    assert "firstname" in {c["LogicalName"] for c in strings}
    assert "createdon" not in {c["LogicalName"] for c in strings}

    column = app.tables.get_column("incident", "prioritycode")
    assert column is not None
    assert column["AttributeType"] == "Picklist"
    assert app.tables.get_column("incident", "nosuchcolumn") is None


# --- reads ---------------------------------------------------------------------------------------


def test_retrieve_a_record_and_a_missing_one(app: DataverseClient) -> None:
    contact = a_contact(app)
    record = app.records.retrieve("contact", contact["contactid"], select=["fullname"])
    assert record is not None
    assert record["fullname"] == contact["fullname"]
    assert str(record.etag).startswith('W/"')
    assert app.records.retrieve("contact", str(uuid.uuid4())) is None


def test_query_select_filter_orderby_top(app: DataverseClient) -> None:
    rows = app.records.list(
        "contact",
        select=["lastname", "firstname"],
        filter="startswith(lastname,'A') and statecode eq 0",
        orderby=["lastname desc", "firstname asc"],
        top=5,
    )
    names = [r["lastname"] for r in rows]
    assert 0 < len(names) <= 5
    assert all(n.lower().startswith("a") for n in names)
    assert names == sorted(names, key=str.lower, reverse=True)
    assert set(rows[0].data) == {"lastname", "firstname", "contactid"}


def test_query_expand_a_lookup(app: DataverseClient) -> None:
    rows = app.records.list(
        "account",
        select=["name"],
        filter="_primarycontactid_value ne null",
        expand=["primarycontactid($select=fullname)"],
        top=3,
    )
    assert rows
    for row in rows:
        assert set(row["primarycontactid"]) >= {"fullname", "contactid"}


def test_query_builder(app: DataverseClient) -> None:
    from PowerPlatform.Dataverse.models.filters import col

    result = (
        app.query.builder("account")
        .select("name", "numberofemployees")
        .where(col("numberofemployees") > 0)
        .order_by("numberofemployees", descending=True)
        .top(3)
        .execute()
    )
    sizes = [r["numberofemployees"] for r in result]
    assert 0 < len(sizes) <= 3
    assert sizes == sorted(sizes, reverse=True)


def test_paging_follows_next_links(app: DataverseClient, dv: Any) -> None:
    total = dv.store.count(dv.tables["contacts"])  # central-api reads every contact
    pages = list(app.records.list_pages("contact", select=["fullname"], page_size=50))
    assert [len(p) for p in pages[:-1]] == [50] * (len(pages) - 1)
    ids = [r["contactid"] for page in pages for r in page]
    assert len(ids) == len(set(ids)) == total
    assert len(pages) == -(-total // 50)


def test_counts_come_back_with_the_page(app: DataverseClient) -> None:
    # records.list(count=True) sends $count=true but drops @odata.count (README: SDK quirks);
    # a batch hands back the whole body.
    batch = app.batch.new()
    batch.records.list("account", select=["name"], count=True, top=1)
    [answer] = batch.execute().responses
    assert answer.status_code == 200
    assert answer.data is not None
    assert answer.data["@odata.count"] == 40
    assert len(answer.data["value"]) == 1


# --- writes --------------------------------------------------------------------------------------


def test_create_update_delete(client: Client) -> None:
    alice = client("alice")
    tag = f"Zs{uuid.uuid4().hex[:10]}"
    contact_id = alice.records.create("contact", {"firstname": "Sdk", "lastname": tag})
    assert uuid.UUID(contact_id)
    alice.records.update("contact", contact_id, {"jobtitle": "Tester"})
    record = alice.records.retrieve("contact", contact_id, select=["fullname", "jobtitle"])
    assert record is not None
    assert (record["fullname"], record["jobtitle"]) == (f"Sdk {tag}", "Tester")
    alice.records.delete("contact", contact_id)
    assert alice.records.retrieve("contact", contact_id) is None


def test_create_with_a_choice_label_reads_the_option_set(client: Client) -> None:
    bob = client("bob")
    customer = a_contact(bob)
    case_id = bob.records.create(
        "incident",
        {
            "title": f"Sdk case {uuid.uuid4().hex[:6]}",
            "prioritycode": "High",  # the SDK turns the label into 1 through OptionSet metadata
            "customerid_contact@odata.bind": f"/contacts({customer['contactid']})",
        },
    )
    record = bob.records.retrieve("incident", case_id, select=["prioritycode"])
    assert record is not None
    assert record["prioritycode"] == 1


def test_update_of_a_missing_record_is_404_not_an_upsert(app: DataverseClient) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(HttpError) as caught:
        app.records.update("bos_vehicle", missing, {"bos_name": "ghost"})  # If-Match: *
    assert caught.value.status_code == 404
    assert caught.value.details["service_error_code"] == "0x80040217"
    assert app.records.retrieve("bos_vehicle", missing) is None


# --- $batch --------------------------------------------------------------------------------------


def test_change_set_creates_and_references_content_ids(client: Client) -> None:
    alice = client("alice")
    tag = f"Zb{uuid.uuid4().hex[:10]}"
    batch = alice.batch.new()
    with batch.changeset() as changes:
        ref = changes.records.create("contact", {"firstname": "One", "lastname": tag})
        changes.records.update("contact", ref, {"jobtitle": "Referenced"})
        changes.records.create("contact", {"firstname": "Two", "lastname": tag})
    batch.records.list("contact", select=["jobtitle"], filter=f"lastname eq '{tag}'")
    result = batch.execute()
    assert not result.has_errors, result.failed
    assert [r.status_code for r in result.responses] == [204, 204, 204, 200]
    assert [r.content_id for r in result.responses[:3]] == ["1", "2", "3"]
    assert len(result.entity_ids) >= 2
    listed = result.responses[3].data
    assert listed is not None
    assert sorted(str(r.get("jobtitle")) for r in listed["value"]) == ["None", "Referenced"]


def test_failed_change_set_rolls_back(client: Client) -> None:
    alice = client("alice")
    tag = f"Zr{uuid.uuid4().hex[:10]}"
    batch = alice.batch.new()
    with batch.changeset() as changes:
        changes.records.create("contact", {"firstname": "Kept?", "lastname": tag})
        changes.records.create("contact", {"lastname": tag, "firstname": "x" * 51})  # too long
    result = batch.execute(continue_on_error=True)
    [failure] = result.responses
    assert failure.status_code == 400
    assert failure.error_code == "0x80044331"
    assert alice.records.list("contact", filter=f"lastname eq '{tag}'").records == []


def test_a_failed_batch_without_continue_on_error_raises(app: DataverseClient) -> None:
    """Dataverse answers the batch with the failure's status (404 here); the SDK only parses
    200, 202, 207 and 400 answers, so it raises instead of returning a BatchResult."""
    batch = app.batch.new()
    batch.records.retrieve("bos_vehicle", str(uuid.uuid4()))
    with pytest.raises(HttpError) as caught:
        batch.execute()
    assert caught.value.status_code == 404
    assert caught.value.details["body_excerpt"].startswith("--batchresponse_")


# --- errors --------------------------------------------------------------------------------------


def test_missing_privilege_is_403(app: DataverseClient) -> None:
    vehicle = app.records.list("bos_vehicle", select=["bos_name"], top=1)[0]
    with pytest.raises(HttpError) as caught:
        app.records.delete("bos_vehicle", vehicle["bos_vehicleid"])  # integration: no delete
    assert caught.value.status_code == 403
    assert caught.value.details["service_error_code"] == "0x80040220"


def _selects_name(entry: dict[str, Any]) -> bool:
    return "accounts" in entry["path"] and "select=name" in unquote(entry["query"])


def test_throttled_is_429_and_the_sdk_does_not_retry(client: Client, dv: Any) -> None:
    bob = client("bob")
    bob.records.list("account", top=1)  # fills the SDK's metadata cache: later calls are 1 request
    dv.limits.reset()  # counters cleared
    dv.limits.configure({"requests": 1, "window_seconds": 300})
    try:
        seen = last_seq(dv)
        bob.records.list("account", select=["name"], top=1)
        with pytest.raises(HttpError) as caught:
            bob.records.list("account", select=["name"], top=1)
        assert caught.value.status_code == 429
        assert caught.value.is_transient
        assert caught.value.details["retry_after"] >= 1
        assert caught.value.details["service_error_code"] == "0x80072322"
        # one admitted, one refused, no retry. Only the two selecting `name`: the entry of the
        # list above may be logged after `seen` (an entry is appended once its answer is out).
        entries = logged(dv.control, seen, _selects_name, count=2)
        assert [r["status"] for r in entries] == [200, 429]
    finally:
        dv.limits.reset()


# --- honest 501s ---------------------------------------------------------------------------------


_FETCH = '<fetch top="2"><entity name="contact"><attribute name="fullname"/></entity></fetch>'
_IDS = ["00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"]
UNIMPLEMENTED: dict[str, Callable[[DataverseClient], Any]] = {
    "SQL queries": lambda sdk: sdk.query.sql("SELECT TOP 2 fullname FROM contact"),
    "FetchXML queries": lambda sdk: sdk.query.fetchxml(_FETCH).execute(),
    "'CreateMultiple'": lambda sdk: sdk.records.create("bos_vehicle", [{"bos_name": "a"}] * 2),
    "'UpdateMultiple'": lambda sdk: sdk.records.update("bos_vehicle", _IDS, {"bos_name": "c"}),
    "'BulkDelete'": lambda sdk: sdk.records.delete("bos_vehicle", _IDS),
    "'RetrieveMetadataChanges'": lambda sdk: sdk.tables.list_columns("contact", typed=True),
    "'CreateEntities'": lambda sdk: sdk.tables.create("new_Thing", {"new_a": "string"}),
    "changes to table definitions": lambda sdk: sdk.tables.add_columns("contact", {"new_b": "int"}),
}


@pytest.mark.parametrize("feature", UNIMPLEMENTED)
def test_unimplemented_operations_answer_501(app: DataverseClient, feature: str) -> None:
    call = UNIMPLEMENTED[feature]
    with pytest.raises(HttpError) as caught:
        call(app)
    assert caught.value.status_code == 501, caught.value
    assert caught.value.message.startswith("The Dataverse emulator does not implement")
    assert feature in caught.value.message


# --- request ids ---------------------------------------------------------------------------------


def test_client_request_id_is_logged_and_errors_carry_the_service_id(
    app: DataverseClient, dv: Any
) -> None:
    seen = last_seq(dv)
    with pytest.raises(HttpError) as caught:
        app.records.update("bos_vehicle", str(uuid.uuid4()), {"bos_name": "ghost"})
    sent = caught.value.details["client_request_id"]
    entries = logged(dv.control, seen, lambda r: r["client_request_id"] == sent)
    assert len(entries) == 1
    assert entries[0]["status"] == 404
    assert entries[0]["correlation_id"] == caught.value.details["correlation_id"]
    assert uuid.UUID(caught.value.details["service_request_id"])
