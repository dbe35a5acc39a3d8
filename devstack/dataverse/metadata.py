"""The service document (`GET /api/data/v9.2/`) and a CSDL `$metadata` built from the
declarations: entity types with keys, properties, single-valued navigation properties, and the
entity sets with their navigation bindings. Far smaller than Dataverse's, same shape.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from devstack.dataverse.schema import Table

NAMESPACE = "Microsoft.Dynamics.CRM"


def service_document(api_root: str, tables: Mapping[str, Table]) -> dict[str, Any]:
    return {
        "@odata.context": f"{api_root}/$metadata",
        "value": [{"name": name, "kind": "EntitySet", "url": name} for name in sorted(tables)],
    }


def csdl(tables: Mapping[str, Table]) -> str:
    edmx = ET.Element(
        "edmx:Edmx", {"Version": "4.0", "xmlns:edmx": "http://docs.oasis-open.org/odata/ns/edmx"}
    )
    services = ET.SubElement(edmx, "edmx:DataServices")
    schema = ET.SubElement(
        services,
        "Schema",
        {
            "Namespace": NAMESPACE,
            "Alias": "mscrm",
            "xmlns": "http://docs.oasis-open.org/odata/ns/edm",
        },
    )
    for table in tables.values():
        entity = ET.SubElement(schema, "EntityType", {"Name": table.logical_name})
        key = ET.SubElement(entity, "Key")
        ET.SubElement(key, "PropertyRef", {"Name": table.key})
        for column in table.columns:
            attrs = {"Name": column.name, "Type": column.edm_type}
            if column.max_length:
                attrs["MaxLength"] = str(column.max_length)
            ET.SubElement(entity, "Property", attrs)
        for lookup in table.lookups:
            ET.SubElement(entity, "Property", {"Name": lookup.column, "Type": "Edm.Guid"})
            for navigation, target_set in lookup.targets.items():
                ET.SubElement(
                    entity,
                    "NavigationProperty",
                    {"Name": navigation, "Type": f"mscrm.{tables[target_set].logical_name}"},
                )
    container = ET.SubElement(schema, "EntityContainer", {"Name": "System"})
    for table in tables.values():
        entity_set = ET.SubElement(
            container,
            "EntitySet",
            {"Name": table.entity_set, "EntityType": f"{NAMESPACE}.{table.logical_name}"},
        )
        for lookup in table.lookups:
            for navigation, target_set in lookup.targets.items():
                ET.SubElement(
                    entity_set,
                    "NavigationPropertyBinding",
                    {"Path": navigation, "Target": target_set},
                )
    ET.SubElement(
        container, "FunctionImport", {"Name": "WhoAmI", "Function": f"{NAMESPACE}.WhoAmI"}
    )
    ET.SubElement(
        container, "ActionImport", {"Name": "CloseIncident", "Action": f"{NAMESPACE}.CloseIncident"}
    )
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(edmx, encoding="unicode")
