"""`EntityDefinitions` over real HTTPS: the paths, query options and shapes Dataverse's metadata
endpoint has (names and types from learn.microsoft.com, "Query table definitions using the Web
API"), generated from devstack/dataverse/tables.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.dataverse.tables import TABLES
from devstack.tenant import Tenant
from tests.devstack.dataverse_helpers import Api, Tokens, assert_error

PICKLIST = "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
NOT_FOUND = "0x80041102"


@pytest.fixture(scope="module")
def bob(entra: Any, tenant: Tenant, dataverse: Any, ca_bundle: Path) -> Iterator[Api]:
    api = Api(
        dataverse.url, ca_bundle, Tokens(entra.app.state.entra, tenant, dataverse.url).user("bob")
    )
    yield api
    api.close()


def test_every_declared_table_is_listed_with_its_names(bob: Api, dataverse: Any) -> None:
    response = bob.get("EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["@odata.context"] == (
        f"{dataverse.url}/api/data/v9.2/$metadata#EntityDefinitions"
        "(LogicalName,EntitySetName,PrimaryIdAttribute)"
    )
    by_name = {item["LogicalName"]: item for item in body["value"]}
    assert set(by_name) == {t.logical_name for t in TABLES.values()}
    for table in TABLES.values():
        item = by_name[table.logical_name]
        assert set(item) == {"LogicalName", "EntitySetName", "PrimaryIdAttribute", "MetadataId"}
        assert item["EntitySetName"] == table.entity_set
        assert item["PrimaryIdAttribute"] == table.key
        assert uuid.UUID(item["MetadataId"])


def test_one_table_by_logical_name_and_by_metadata_id(bob: Api) -> None:
    response = bob.get("EntityDefinitions(LogicalName='incident')")
    assert response.status_code == 200, response.text
    incident = response.json()
    assert incident["@odata.context"].endswith("$metadata#EntityDefinitions/$entity")
    assert incident["SchemaName"] == "Incident"
    assert incident["EntitySetName"] == "incidents"
    assert incident["PrimaryNameAttribute"] == "title"
    assert incident["ObjectTypeCode"] == 112
    assert incident["OwnershipType"] == "UserOwned"
    assert incident["IsCustomEntity"] is False
    label = incident["DisplayName"]["LocalizedLabels"][0]
    assert (label["Label"], label["LanguageCode"]) == ("Case", 1033)
    assert incident["DisplayName"]["UserLocalizedLabel"]["Label"] == "Case"

    again = bob.get(f"EntityDefinitions({incident['MetadataId']})?$select=LogicalName").json()
    assert (again["LogicalName"], again["MetadataId"]) == ("incident", incident["MetadataId"])


def test_filter_on_names_enums_and_complex_values(bob: Api) -> None:
    def names(query: str) -> set[str]:
        return {
            i["LogicalName"] for i in bob.values(f"EntityDefinitions?$select=LogicalName&{query}")
        }

    assert names("$filter=LogicalName eq 'contact'") == {"contact"}
    assert names("$filter=EntitySetName eq 'bos_vehicles' or SchemaName eq 'Account'") == {
        "bos_vehicle",
        "account",
    }
    org_owned = "$filter=OwnershipType eq Microsoft.Dynamics.CRM.OwnershipTypes'OrganizationOwned'"
    assert names(org_owned) == {"systemuser"}
    assert names("$filter=IsPrivate eq false and (IsCustomEntity eq true)") == {"bos_vehicle"}
    assert names("$filter=CanCreateAttributes/Value eq true") == {
        t.logical_name for t in TABLES.values()
    }
    assert names("$filter=LogicalName eq 'nosuch'") == set()


def test_expand_attributes_with_their_own_select_and_filter(bob: Api) -> None:
    response = bob.get(
        "EntityDefinitions(LogicalName='incident')?$select=LogicalName&$expand=Attributes("
        "$select=LogicalName;$filter=AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode"
        "'Picklist')"
    )
    assert response.status_code == 200, response.text
    attributes = response.json()["Attributes"]
    assert {a["LogicalName"] for a in attributes} == {
        "prioritycode",
        "caseorigincode",
        "casetypecode",
    }
    assert all(a["@odata.type"] == f"#{PICKLIST}" for a in attributes)


def test_attributes_have_their_derived_types(bob: Api) -> None:
    attributes = {
        a["LogicalName"]: a
        for a in bob.values("EntityDefinitions(LogicalName='contact')/Attributes")
    }
    expected = {
        "contactid": (
            "UniqueIdentifierAttributeMetadata",
            "Uniqueidentifier",
            "UniqueidentifierType",
        ),
        "firstname": ("StringAttributeMetadata", "String", "StringType"),
        "description": ("MemoAttributeMetadata", "Memo", "MemoType"),
        "createdon": ("DateTimeAttributeMetadata", "DateTime", "DateTimeType"),
        "versionnumber": ("BigIntAttributeMetadata", "BigInt", "BigIntType"),
        "statecode": ("StateAttributeMetadata", "State", "StateType"),
        "statuscode": ("StatusAttributeMetadata", "Status", "StatusType"),
        "parentcustomerid": ("LookupAttributeMetadata", "Customer", "CustomerType"),
        "ownerid": ("LookupAttributeMetadata", "Owner", "OwnerType"),
        "createdby": ("LookupAttributeMetadata", "Lookup", "LookupType"),
    }
    for name, (odata_type, attribute_type, type_name) in expected.items():
        item = attributes[name]
        assert item["@odata.type"] == f"#Microsoft.Dynamics.CRM.{odata_type}", name
        assert item["AttributeType"] == attribute_type, name
        assert item["AttributeTypeName"] == {"Value": type_name}, name
        assert item["EntityLogicalName"] == "contact"
        assert item["SchemaName"].lower() == name
    assert attributes["firstname"]["SchemaName"] == "FirstName"
    assert attributes["firstname"]["MaxLength"] == 50
    assert attributes["contactid"]["IsPrimaryId"] is True
    assert attributes["fullname"]["IsPrimaryName"] is True
    assert attributes["fullname"]["IsValidForCreate"] is False
    assert attributes["statecode"]["RequiredLevel"]["Value"] == "SystemRequired"
    assert attributes["fullname"]["RequiredLevel"]["Value"] == "None"  # computed
    customer = bob.get(
        "EntityDefinitions(LogicalName='incident')/Attributes(LogicalName='customerid')"
        "?$select=RequiredLevel"
    ).json()
    assert customer["RequiredLevel"]["Value"] == "ApplicationRequired"
    assert attributes["ownerid"]["Targets"] == ["systemuser"]
    vehicle = bob.values(
        "EntityDefinitions(LogicalName='bos_vehicle')/Attributes?$select=SchemaName"
    )
    assert "bos_OwnerContactId" in {a["SchemaName"] for a in vehicle}


def test_every_column_has_its_dataverse_schema_name() -> None:
    for table in TABLES.values():
        names = [c.name for c in table.columns] + [lk.name for lk in table.lookups]
        for name in names:
            schema = table.attribute_schema_name(name)
            assert schema.lower() == name, (table.logical_name, name)
            assert schema != name, (table.logical_name, name)  # declared, not the fallback


def test_picklist_cast_with_option_set(bob: Api) -> None:
    """The request Microsoft's Python SDK makes before a create that names a choice label."""
    response = bob.get(
        f"EntityDefinitions(LogicalName='incident')/Attributes/{PICKLIST}"
        "?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet"
    )
    assert response.status_code == 200, response.text
    items = {i["LogicalName"]: i for i in response.json()["value"]}
    assert set(items) == {"prioritycode", "caseorigincode", "casetypecode"}
    priority = items["prioritycode"]
    assert "@odata.type" not in priority  # the cast names the type
    assert priority["GlobalOptionSet"] is None
    options = {
        o["Value"]: o["Label"]["LocalizedLabels"][0]["Label"]
        for o in priority["OptionSet"]["Options"]
    }
    assert options == {1: "High", 2: "Normal", 3: "Low"}
    assert set(priority["OptionSet"]) == {"Options", "MetadataId"}


def test_one_attribute_by_name_with_its_option_set(bob: Api) -> None:
    base = "EntityDefinitions(LogicalName='incident')/Attributes(LogicalName='statuscode')"
    status = bob.get(f"{base}/Microsoft.Dynamics.CRM.StatusAttributeMetadata?$expand=OptionSet")
    assert status.status_code == 200, status.text
    option_set = status.json()["OptionSet"]
    assert option_set["OptionSetType"] == "Status"
    assert option_set["Name"] == "incident_statuscode"
    solved = next(o for o in option_set["Options"] if o["Value"] == 5)
    assert solved["State"] == 1
    assert solved["@odata.type"] == "#Microsoft.Dynamics.CRM.StatusOptionMetadata"

    only = bob.get(
        f"{base}/Microsoft.Dynamics.CRM.StatusAttributeMetadata/OptionSet?$select=Options"
    )
    assert only.status_code == 200, only.text
    assert set(only.json()) == {"@odata.context", "Options", "MetadataId"}

    plain = bob.get(f"{base}?$select=LogicalName,AttributeType").json()
    assert (plain["LogicalName"], plain["AttributeType"]) == ("statuscode", "Status")

    disabled = bob.get(
        "EntityDefinitions(LogicalName='systemuser')/Attributes(LogicalName='isdisabled')"
        "/Microsoft.Dynamics.CRM.BooleanAttributeMetadata?$expand=OptionSet"
    ).json()["OptionSet"]
    assert (disabled["TrueOption"]["Value"], disabled["FalseOption"]["Value"]) == (1, 0)


@pytest.mark.parametrize(
    ("path", "status", "code", "message"),
    [
        ("EntityDefinitions(LogicalName='nosuch')", 404, NOT_FOUND, "'nosuch'"),
        (f"EntityDefinitions({uuid.UUID(int=7)})", 404, NOT_FOUND, "Could not find"),
        (
            "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='nosuch')",
            404,
            NOT_FOUND,
            "nosuch",
        ),
        (
            "EntityDefinitions?$select=NoSuch",
            400,
            "0x80060888",
            "'NoSuch' on type 'Microsoft.Dynamics.CRM.EntityMetadata'",
        ),
        ("EntityDefinitions?$filter=NoSuch eq 'x'", 400, "0x80060888", "'NoSuch'"),
        (
            "EntityDefinitions(LogicalName='contact')/Attributes?$filter=NoSuch eq 1",
            400,
            "0x80060888",
            "'NoSuch' on type 'Microsoft.Dynamics.CRM.AttributeMetadata'",
        ),
        # derived properties and navigation need a cast, as in Dataverse
        (
            "EntityDefinitions(LogicalName='contact')/Attributes?$select=MaxLength",
            400,
            "0x80060888",
            "'MaxLength'",
        ),
        (
            "EntityDefinitions(LogicalName='incident')/Attributes?$expand=OptionSet",
            400,
            "0x80060888",
            "'OptionSet'",
        ),
        ("EntityDefinitions?$top=1", 501, "0x80040216", "'$top'"),
        ("EntityDefinitions(LogicalName='contact')/Keys", 501, "0x80040216", "Keys"),
        (
            "EntityDefinitions(LogicalName='contact')?$expand=OneToManyRelationships",
            501,
            "0x80040216",
            "OneToManyRelationships",
        ),
        ("EntityDefinitions(LogicalName=contact)", 400, "0x80060888", "syntax"),
        ("RelationshipDefinitions", 501, "0x80040216", "RelationshipDefinitions"),
    ],
)
def test_definition_errors(bob: Api, path: str, status: int, code: str, message: str) -> None:
    assert_error(bob.get(path), status, code, message)


def test_definitions_are_read_only(bob: Api) -> None:
    response = bob.post("EntityDefinitions", {"SchemaName": "new_Thing"})
    assert_error(response, 501, "0x80040216", "EntityDefinitions is read-only")
    response = bob.delete(f"EntityDefinitions({uuid.UUID(int=7)})", headers={"If-Match": "*"})
    assert_error(response, 501, "0x80040216", "read-only")
