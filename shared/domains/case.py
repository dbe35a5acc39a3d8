"""Cases: Dataverse incidents (customer service cases). Delegated and application access."""

from shared.domains.model import Choice, Domain, Field, Filter, Reference, Text, Timestamp
from shared.domains.routes import blueprint

CASE = Domain(
    name="case",
    route="cases",
    entity_set="incidents",
    key="incidentid",
    title="Cases",
    description="Customer service cases (Dataverse incidents), each about one customer.",
    fields=(
        Field("title", "title", Text(200), "What the case is about.", required=True,
              nullable=False),
        Field("ticketNumber", "ticketnumber", Text(100), "Number assigned by the backend.",
              writable=False),
        Field("description", "description", Text(2000, multiline=True), "Details."),
        Field("customerId", "_customerid_value", Reference("customerid_contact", "contacts"),
              "The customer (see /customers) the case is about.", required=True,
              nullable=False),
        Field("priority", "prioritycode", Choice({"high": 1, "normal": 2, "low": 3}),
              "Priority."),
        Field("origin", "caseorigincode",
              Choice({"phone": 1, "email": 2, "web": 3, "facebook": 2483, "twitter": 3986}),
              "How the case reached us."),
        Field("type", "casetypecode", Choice({"question": 1, "problem": 2, "request": 3}),
              "Kind of case."),
        Field("status", "statecode", Choice({"active": 0, "resolved": 1, "canceled": 2}),
              "Active, resolved or canceled.", writable=False),
        Field("createdOn", "createdon", Timestamp(), "When the case was opened.",
              writable=False),
        Field("modifiedOn", "modifiedon", Timestamp(), "When the case last changed.",
              writable=False),
    ),
    search=("title", "ticketNumber"),
    filters=(
        Filter("customerId", "customerId", "Only cases about this customer."),
        Filter("status", "status", "Only cases in this state."),
    ),
    order_by=("createdon",),
)  # fmt: skip

bp = blueprint(CASE)
