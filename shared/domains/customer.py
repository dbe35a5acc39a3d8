"""Customers: Dataverse contacts. Delegated (On-Behalf-Of) and application access."""

from shared.domains.model import Domain, Field, Text, Timestamp
from shared.domains.routes import blueprint

CUSTOMER = Domain(
    name="customer",
    route="customers",
    entity_set="contacts",
    key="contactid",
    title="Customers",
    description="People the company does business with (Dataverse contacts).",
    fields=(
        Field("firstName", "firstname", Text(50), "Given name."),
        Field("lastName", "lastname", Text(50), "Family name.", required=True, nullable=False),
        Field("fullName", "fullname", Text(160), "First and last name.", writable=False),
        Field("email", "emailaddress1", Text(100, pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+",
              pattern_hint="must be an e-mail address"), "Primary e-mail address."),
        Field("phone", "telephone1", Text(50), "Main phone number."),
        Field("mobilePhone", "mobilephone", Text(50), "Mobile phone number."),
        Field("jobTitle", "jobtitle", Text(100), "Job title."),
        Field("addressLine1", "address1_line1", Text(250), "Street address."),
        Field("postalCode", "address1_postalcode", Text(20), "Postal code."),
        Field("city", "address1_city", Text(80), "City."),
        Field("country", "address1_country", Text(80), "Country."),
        Field("createdOn", "createdon", Timestamp(), "When the record was created.",
              writable=False),
        Field("modifiedOn", "modifiedon", Timestamp(), "When the record last changed.",
              writable=False),
    ),
    search=("fullName", "email", "phone"),
    order_by=("fullname",),
)  # fmt: skip

bp = blueprint(CUSTOMER)
