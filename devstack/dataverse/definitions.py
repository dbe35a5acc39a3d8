"""Table definitions (`EntityDefinitions`) built from the declarations, in Dataverse's shapes.

`entity(table)` is an `EntityMetadata`, `attributes(table, tables)` its `AttributeMetadata`
items, each of the derived type Dataverse uses for that kind of column (`StringAttributeMetadata`,
`PicklistAttributeMetadata`, `LookupAttributeMetadata`, ...) with that type's own properties, and
`option_set(...)` the `OptionSet` navigation property of the choice, state, status and boolean
columns. Property names, enumeration values (`AttributeType`, `OwnershipType`) and complex types
(`Label`, `AttributeTypeName`, `RequiredLevel`) are Dataverse's; the set of properties is a
subset of Dataverse's hundred-odd (those SDKs and tools read).

MetadataIds are UUIDv5 of the names, so they are stable across restarts and databases, as
Dataverse's are across an organisation's life (they are not the ids of a real organisation).
Column labels are not declared: a column's `DisplayName` is its schema name.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devstack.dataverse.schema import Column, ColumnType, Lookup, Table

NAMESPACE = "Microsoft.Dynamics.CRM"
LANGUAGE = 1033
_IDS = uuid.UUID("5d3c2f9e-6a57-4b8e-9a0c-0d7f4a1e2b63")


def metadata_id(*names: str) -> str:
    return str(uuid.uuid5(_IDS, "/".join(names)))


def label(text: str, *names: str) -> dict[str, Any]:
    """Dataverse's `Label` complex type, in one language (1033)."""
    if not text:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    localized = {
        "Label": text,
        "LanguageCode": LANGUAGE,
        "IsManaged": True,
        "MetadataId": metadata_id("label", *names),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": dict(localized)}


def _managed(value: bool, logical_name: str) -> dict[str, Any]:
    return {"Value": value, "CanBeChanged": False, "ManagedPropertyLogicalName": logical_name}


# --- tables --------------------------------------------------------------------------------------


def entity(table: Table) -> dict[str, Any]:
    """The `EntityMetadata` of a table, without its `Attributes` (a navigation property)."""
    name = table.logical_name
    return {
        "MetadataId": metadata_id(name),
        "LogicalName": name,
        "SchemaName": table.schema_name,
        "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set,
        "CollectionSchemaName": f"{table.schema_name}s",
        "ObjectTypeCode": table.object_type_code,
        "PrimaryIdAttribute": table.key,
        "PrimaryNameAttribute": table.primary_name,
        "PrimaryImageAttribute": None,
        "OwnershipType": "UserOwned" if table.ownership == "user" else "OrganizationOwned",
        "TableType": "Standard",
        "DisplayName": label(table.display_name, name, "displayname"),
        "DisplayCollectionName": label(table.display_collection_name, name, "collection"),
        "Description": label("", name, "description"),
        "IsCustomEntity": table.is_custom,
        "IsManaged": not table.is_custom,
        "IsPrivate": False,
        "IsActivity": False,
        "IsActivityParty": False,
        "IsIntersect": False,
        "IsLogicalEntity": False,
        "IsValidForAdvancedFind": True,
        "IsAuditEnabled": _managed(False, "canmodifyauditsettings"),
        "IsCustomizable": _managed(True, "iscustomizable"),
        "CanCreateAttributes": _managed(True, "cancreateattributes"),
        "HasActivities": False,
        "HasNotes": False,
        "ChangeTrackingEnabled": False,
        "IntroducedVersion": "1.0",
        "HasChanged": None,
    }


# --- columns -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeKind:
    """One derived `AttributeMetadata` type: its name, `AttributeType` and `AttributeTypeName`."""

    odata_type: str  # e.g. "PicklistAttributeMetadata"
    attribute_type: str  # AttributeTypeCode, e.g. "Picklist"
    type_name: str  # AttributeTypeDisplayName, e.g. "PicklistType"
    has_option_set: bool = False

    @property
    def qualified(self) -> str:
        return f"{NAMESPACE}.{self.odata_type}"


KINDS: dict[str, AttributeKind] = {
    k.odata_type: k
    for k in (
        AttributeKind(
            "UniqueIdentifierAttributeMetadata", "Uniqueidentifier", "UniqueidentifierType"
        ),
        AttributeKind("StringAttributeMetadata", "String", "StringType"),
        AttributeKind("MemoAttributeMetadata", "Memo", "MemoType"),
        AttributeKind("IntegerAttributeMetadata", "Integer", "IntegerType"),
        AttributeKind("BigIntAttributeMetadata", "BigInt", "BigIntType"),
        AttributeKind("DecimalAttributeMetadata", "Decimal", "DecimalType"),
        AttributeKind("MoneyAttributeMetadata", "Money", "MoneyType"),
        AttributeKind("BooleanAttributeMetadata", "Boolean", "BooleanType", has_option_set=True),
        AttributeKind("DateTimeAttributeMetadata", "DateTime", "DateTimeType"),
        AttributeKind("PicklistAttributeMetadata", "Picklist", "PicklistType", has_option_set=True),
        AttributeKind("StateAttributeMetadata", "State", "StateType", has_option_set=True),
        AttributeKind("StatusAttributeMetadata", "Status", "StatusType", has_option_set=True),
        AttributeKind("LookupAttributeMetadata", "Lookup", "LookupType"),
    )
}
_BY_COLUMN_TYPE: dict[ColumnType, str] = {
    "guid": "UniqueIdentifierAttributeMetadata",
    "string": "StringAttributeMetadata",
    "memo": "MemoAttributeMetadata",
    "int": "IntegerAttributeMetadata",
    "bigint": "BigIntAttributeMetadata",
    "decimal": "DecimalAttributeMetadata",
    "money": "MoneyAttributeMetadata",
    "bool": "BooleanAttributeMetadata",
    "datetime": "DateTimeAttributeMetadata",
    "choice": "PicklistAttributeMetadata",
}
# Properties of the base `AttributeMetadata`: the only ones an uncast `Attributes` query may
# `$select` or `$filter` on.
BASE_PROPERTIES = frozenset(
    {
        "MetadataId", "HasChanged", "LogicalName", "SchemaName", "EntityLogicalName",
        "AttributeType", "AttributeTypeName", "AttributeOf", "ColumnNumber", "DisplayName",
        "Description", "IsPrimaryId", "IsPrimaryName", "IsCustomAttribute", "IsManaged",
        "IsLogical", "IsValidForCreate", "IsValidForUpdate", "IsValidForRead",
        "IsValidODataAttribute", "IsFilterable", "IsSearchable", "IsRetrievable", "IsSecured",
        "RequiredLevel", "SourceType", "IntroducedVersion",
    }
)  # fmt: skip
# The navigation properties an `$expand` may name, per derived type
NAVIGATION = ("OptionSet", "GlobalOptionSet")


def kind_of(table: Table, name: str) -> AttributeKind:
    column = table.column(name)
    if column is None:
        return KINDS["LookupAttributeMetadata"]
    if name == "statecode" and table.state is not None:
        return KINDS["StateAttributeMetadata"]
    if name == "statuscode" and table.state is not None:
        return KINDS["StatusAttributeMetadata"]
    return KINDS[_BY_COLUMN_TYPE[column.type]]


def attributes(table: Table, tables: Mapping[str, Table]) -> list[dict[str, Any]]:
    """Every column of the table as its derived `AttributeMetadata`, in declaration order.

    Lookups appear under their logical name (`parentcustomerid`), as in Dataverse; the Web API
    serves their values as `_parentcustomerid_value`.
    """
    names = [c.name for c in table.columns] + [lk.name for lk in table.lookups]
    return [attribute(table, tables, name, number) for number, name in enumerate(names, 1)]


def attribute(
    table: Table, tables: Mapping[str, Table], name: str, number: int = 0
) -> dict[str, Any]:
    kind = kind_of(table, name)
    column = table.column(name)
    lookup = next((lk for lk in table.lookups if lk.name == name), None)
    schema = table.attribute_schema_name(name)
    writable = not (column.read_only if column else lookup is not None and lookup.read_only)
    required = (
        "SystemRequired"
        if name in (table.key, "statecode", "statuscode") or (lookup and lookup.name == "ownerid")
        else "ApplicationRequired"
        if (name == table.primary_name and writable) or name in table.required_lookups
        else "None"
    )
    item: dict[str, Any] = {
        "@odata.type": f"#{kind.qualified}",
        "MetadataId": metadata_id(table.logical_name, name),
        "HasChanged": None,
        "LogicalName": name,
        "SchemaName": schema,
        "EntityLogicalName": table.logical_name,
        "AttributeType": kind.attribute_type,
        "AttributeTypeName": {"Value": kind.type_name},
        "AttributeOf": None,
        "ColumnNumber": number,
        "DisplayName": label(schema, table.logical_name, name),
        "Description": label("", table.logical_name, name, "description"),
        "IsPrimaryId": name == table.key,
        "IsPrimaryName": name == table.primary_name,
        "IsCustomAttribute": name.startswith("bos_"),
        "IsManaged": not name.startswith("bos_"),
        "IsLogical": False,
        "IsValidForCreate": writable or bool(column and column.create_only),
        "IsValidForUpdate": writable and not (column and column.create_only),
        "IsValidForRead": True,
        "IsValidODataAttribute": True,
        "IsFilterable": True,
        "IsSearchable": True,
        "IsRetrievable": True,
        "IsSecured": False,
        "RequiredLevel": {
            "Value": required,
            "CanBeChanged": required != "SystemRequired",
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
        "SourceType": 0,
        "IntroducedVersion": "1.0",
    }
    if lookup is not None:
        item.update(_lookup(lookup, tables))
    elif column is not None:
        item.update(_typed(kind, column))
    return item


def _lookup(lookup: Lookup, tables: Mapping[str, Table]) -> dict[str, Any]:
    targets = [tables[t].logical_name for t in lookup.targets.values()]
    if lookup.name == "ownerid":
        attribute_type, type_name = "Owner", "OwnerType"
    elif len(targets) > 1:
        attribute_type, type_name = "Customer", "CustomerType"
    else:
        attribute_type, type_name = "Lookup", "LookupType"
    return {
        "AttributeType": attribute_type,
        "AttributeTypeName": {"Value": type_name},
        "Targets": targets,
        "Format": "None",
    }


def _typed(kind: AttributeKind, column: Column) -> dict[str, Any]:
    """The properties of the derived type (`MaxLength`, `MinValue`, `Precision`, ...)."""
    t = kind.odata_type
    if t == "StringAttributeMetadata":
        length = column.max_length or 100
        return {
            "MaxLength": length,
            "DatabaseLength": length * 2,
            "Format": "Text",
            "FormatName": {"Value": "Text"},
            "IsLocalizable": False,
        }
    if t == "MemoAttributeMetadata":
        return {"MaxLength": column.max_length or 2000, "Format": "TextArea"}
    if t == "IntegerAttributeMetadata":
        return {"MinValue": -(2**31), "MaxValue": 2**31 - 1, "Format": "None"}
    if t == "BigIntAttributeMetadata":
        return {"MinValue": -(2**63), "MaxValue": 2**63 - 1}
    if t == "DecimalAttributeMetadata":
        return {"MinValue": -100000000000.0, "MaxValue": 100000000000.0, "Precision": 2}
    if t == "MoneyAttributeMetadata":
        return {
            "MinValue": -922337203685477.0,
            "MaxValue": 922337203685477.0,
            "Precision": 2,
            "PrecisionSource": 2,
            "IsBaseCurrency": False,
        }
    if t == "DateTimeAttributeMetadata":
        return {
            "Format": "DateAndTime",
            "DateTimeBehavior": {"Value": "UserLocal"},
            "CanChangeDateTimeBehavior": _managed(False, "canchangedatetimebehavior"),
        }
    if t == "BooleanAttributeMetadata":
        return {"DefaultValue": False}
    if t in ("PicklistAttributeMetadata", "StateAttributeMetadata", "StatusAttributeMetadata"):
        return {"DefaultFormValue": next(iter(column.options), -1)}
    return {}


# --- option sets ---------------------------------------------------------------------------------


def option_set(table: Table, name: str) -> dict[str, Any] | None:
    """The `OptionSet` of a choice, state, status or boolean column (None for other columns)."""
    kind = kind_of(table, name)
    column = table.column(name)
    if not kind.has_option_set or column is None:
        return None
    set_name = f"{table.logical_name}_{name}"
    base: dict[str, Any] = {
        "MetadataId": metadata_id(table.logical_name, name, "optionset"),
        "HasChanged": None,
        "Name": set_name,
        "DisplayName": label(table.attribute_schema_name(name), set_name),
        "Description": label("", set_name, "description"),
        "IsCustomOptionSet": name.startswith("bos_"),
        "IsGlobal": False,
        "IsManaged": True,
        "IsCustomizable": _managed(True, "iscustomizable"),
        "IntroducedVersion": "1.0",
    }
    if kind.odata_type == "BooleanAttributeMetadata":
        return {
            **base,
            "OptionSetType": "Boolean",
            "TrueOption": _option(set_name, 1, "Yes"),
            "FalseOption": _option(set_name, 0, "No"),
        }
    options = []
    for value, text in column.options.items():
        option = _option(set_name, value, text)
        if kind.odata_type == "StateAttributeMetadata" and table.state is not None:
            option = {
                "@odata.type": f"#{NAMESPACE}.StateOptionMetadata",
                **option,
                "InvariantName": text,
                "DefaultStatus": table.state.default_status(value),
            }
        elif kind.odata_type == "StatusAttributeMetadata" and table.state is not None:
            option = {
                "@odata.type": f"#{NAMESPACE}.StatusOptionMetadata",
                **option,
                "State": table.state.state_of(value),
                "TransitionData": None,
            }
        options.append(option)
    return {**base, "OptionSetType": kind.attribute_type, "Options": options}


def _option(set_name: str, value: int, text: str) -> dict[str, Any]:
    return {
        "Value": value,
        "Color": None,
        "IsManaged": True,
        "ExternalValue": None,
        "ParentValues": [],
        "MetadataId": None,
        "HasChanged": None,
        "Label": label(text, set_name, str(value)),
        "Description": label("", set_name, str(value), "description"),
    }
