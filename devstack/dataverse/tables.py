"""The tables the emulator serves, declared as data (see `devstack.dataverse.schema`).

Names follow Dataverse exactly: entity sets, logical names, `_x_value` lookup columns and their
navigation properties (`parentcustomerid_account`, `customerid_contact`; a custom lookup's
navigation property is its schema name, `bos_OwnerContactId`, case and all).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devstack.dataverse.schema import (
    AutoNumber,
    Column,
    Lookup,
    StateModel,
    Table,
    schema_names,
    table,
)

# Dataverse's schema names of the columns below (shared: `telephone1` is `Telephone1` in every
# table); EntityDefinitions answers them as `SchemaName`.
SCHEMA_NAMES = schema_names(
    "FullName DomainName InternalEMailAddress AzureActiveDirectoryObjectId ApplicationId "
    "IsDisabled AccessMode Name AccountNumber Telephone1 EMailAddress1 WebSiteURL "
    "Address1_Line1 Address1_PostalCode Address1_City Address1_Country NumberOfEmployees "
    "Revenue Description PrimaryContactId ParentAccountId FirstName LastName JobTitle "
    "MobilePhone ParentCustomerId Title TicketNumber PriorityCode CaseOriginCode CaseTypeCode "
    "CustomerId bos_Name bos_VIN bos_RegistrationNumber bos_Make bos_Model bos_ModelYear "
    "bos_OwnerContactId"
)


def _full_name(row: Mapping[str, Any]) -> str | None:
    parts = [str(row[p]).strip() for p in ("firstname", "lastname") if row.get(p)]
    return " ".join(p for p in parts if p) or None


def _address() -> tuple[Column, ...]:
    return (
        Column("address1_line1", "string", 250),
        Column("address1_postalcode", "string", 20),
        Column("address1_city", "string", 80),
        Column("address1_country", "string", 80),
    )


SYSTEMUSERS = table(
    entity_set="systemusers",
    logical_name="systemuser",
    display_name="User",
    display_collection_name="Users",
    column_schema_names=SCHEMA_NAMES,
    schema_name="SystemUser",
    object_type_code=8,
    primary_name="fullname",
    ownership="organization",
    state=None,
    columns=(
        Column("fullname", "string", 200),
        Column("domainname", "string", 1024),
        Column("internalemailaddress", "string", 100),
        Column("azureactivedirectoryobjectid", "guid"),
        Column("applicationid", "guid"),
        Column("isdisabled", "bool"),
        Column("accessmode", "choice", options={0: "Read-Write", 4: "Non-interactive"}),
    ),
    # Every user can read users (the Basic User role); nobody writes them through this API.
    baseline_privileges={"read": "organization"},
)

ACCOUNTS = table(
    entity_set="accounts",
    logical_name="account",
    display_name="Account",
    display_collection_name="Accounts",
    column_schema_names=SCHEMA_NAMES,
    schema_name="Account",
    object_type_code=1,
    primary_name="name",
    columns=(
        Column("name", "string", 160),
        Column("accountnumber", "string", 20),
        Column("telephone1", "string", 50),
        Column("emailaddress1", "string", 100),
        Column("websiteurl", "string", 200),
        *_address(),
        Column("numberofemployees", "int"),
        Column("revenue", "money"),
        Column("description", "memo", 2000),
    ),
    lookups=(
        Lookup("primarycontactid", {"primarycontactid": "contacts"}),
        Lookup("parentaccountid", {"parentaccountid": "accounts"}),
    ),
)

CONTACTS = table(
    entity_set="contacts",
    logical_name="contact",
    display_name="Contact",
    display_collection_name="Contacts",
    column_schema_names=SCHEMA_NAMES,
    schema_name="Contact",
    object_type_code=2,
    primary_name="fullname",
    columns=(
        Column("firstname", "string", 50),
        Column("lastname", "string", 50),
        Column("fullname", "string", 160, read_only=True),
        Column("jobtitle", "string", 100),
        Column("emailaddress1", "string", 100),
        Column("telephone1", "string", 50),
        Column("mobilephone", "string", 50),
        *_address(),
        Column("description", "memo", 2000),
    ),
    lookups=(
        Lookup(
            "parentcustomerid",
            {"parentcustomerid_account": "accounts", "parentcustomerid_contact": "contacts"},
        ),
    ),
    computed={"fullname": _full_name},
)

INCIDENTS = table(
    entity_set="incidents",
    logical_name="incident",
    display_name="Case",
    display_collection_name="Cases",
    column_schema_names=SCHEMA_NAMES,
    schema_name="Incident",
    object_type_code=112,
    primary_name="title",
    columns=(
        Column("title", "string", 200),
        Column("ticketnumber", "string", 100, create_only=True),
        Column("description", "memo", 2000),
        Column("prioritycode", "choice", options={1: "High", 2: "Normal", 3: "Low"}),
        Column(
            "caseorigincode",
            "choice",
            options={1: "Phone", 2: "Email", 3: "Web", 2483: "Facebook", 3986: "Twitter"},
        ),
        Column("casetypecode", "choice", options={1: "Question", 2: "Problem", 3: "Request"}),
    ),
    lookups=(
        Lookup("customerid", {"customerid_account": "accounts", "customerid_contact": "contacts"}),
        Lookup("primarycontactid", {"primarycontactid": "contacts"}),
    ),
    state=StateModel(
        states={
            0: (
                "Active",
                {1: "In Progress", 2: "On Hold", 3: "Waiting for Details", 4: "Researching"},
            ),
            1: ("Resolved", {5: "Problem Solved", 1000: "Information Provided"}),
            2: ("Canceled", {6: "Canceled", 2000: "Merged"}),
        },
        not_settable={
            1: "This message can not be used to set the state of Case to Resolved. In order to "
            "set state of Case to Resolved, use the CloseIncidentRequest message instead.",
        },
    ),
    autonumber=AutoNumber("ticketnumber", "CAS"),
    required_lookups={"customerid": "You should specify a parent contact or account."},
)

BOS_VEHICLES = table(
    entity_set="bos_vehicles",
    logical_name="bos_vehicle",
    display_name="Vehicle",
    display_collection_name="Vehicles",
    column_schema_names=SCHEMA_NAMES,
    schema_name="bos_Vehicle",
    object_type_code=10118,
    primary_name="bos_name",
    columns=(
        Column("bos_name", "string", 100),
        Column("bos_vin", "string", 17),
        Column("bos_registrationnumber", "string", 20),
        Column("bos_make", "string", 100),
        Column("bos_model", "string", 100),
        Column("bos_modelyear", "int"),
    ),
    lookups=(Lookup("bos_ownercontactid", {"bos_OwnerContactId": "contacts"}),),
)

TABLES: dict[str, Table] = {
    t.entity_set: t for t in (SYSTEMUSERS, ACCOUNTS, CONTACTS, INCIDENTS, BOS_VEHICLES)
}
BY_LOGICAL_NAME: dict[str, Table] = {t.logical_name: t for t in TABLES.values()}
