"""Vehicles: the custom `bos_vehicles` table. Application tokens only (no On-Behalf-Of)."""

from shared.domains.model import Domain, Field, Filter, Integer, Reference, Text, Timestamp
from shared.domains.routes import blueprint

VEHICLE = Domain(
    name="vehicle",
    route="vehicles",
    entity_set="bos_vehicles",
    key="bos_vehicleid",
    title="Vehicles",
    description="Vehicles sold and serviced, with their owner. Application access only.",
    fields=(
        Field("name", "bos_name", Text(100), "Display name.", required=True, nullable=False),
        Field("vin", "bos_vin", Text(17, pattern="[A-HJ-NPR-Z0-9]{17}", upper=True,
              pattern_hint="must be 17 characters, letters (not I, O, Q) and digits"),
              "Vehicle identification number."),
        Field("registrationNumber", "bos_registrationnumber",
              Text(20, pattern="[A-Z0-9 -]{2,20}", upper=True,
                   pattern_hint="must be letters, digits, spaces or dashes"),
              "Registration (licence plate) number."),
        Field("make", "bos_make", Text(100), "Manufacturer."),
        Field("model", "bos_model", Text(100), "Model."),
        Field("modelYear", "bos_modelyear", Integer(1900, 2100), "Model year."),
        Field("ownerId", "_bos_ownercontactid_value",
              Reference("bos_OwnerContactId", "contacts"), "The owning customer."),
        Field("createdOn", "createdon", Timestamp(), "When the record was created.",
              writable=False),
        Field("modifiedOn", "modifiedon", Timestamp(), "When the record last changed.",
              writable=False),
    ),
    filters=(
        Filter("vin", "vin", "Only the vehicle with this VIN."),
        Filter("registrationNumber", "registrationNumber",
               "Only vehicles with this registration number."),
        Filter("ownerId", "ownerId", "Only vehicles owned by this customer."),
    ),
    order_by=("bos_name",),
    delegated=False,
)  # fmt: skip

bp = blueprint(VEHICLE)
