"""`GET /api/openapi.json`: the OpenAPI 3.1 description of this API, generated from the same
declarations the code serves.

Paths, parameters, bodies and record schemas come from each `Domain` and from
`shared.domains.routes.operations`; the scopes an operation names come from its `Policy`. Only
the tenant's authority and the API's client id come from settings, read per request; without
settings the document still renders, with placeholders. It is built on first request (per
tenant and client id) and kept, so importing this package builds nothing.

Every domain whose blueprint was built (`shared.domains.routes.blueprint`, which `function_app.py`
registers) is described, so adding a domain needs nothing here; a test compares this document
with the functions the app registers.

Modules, from the leaves up:
    names       the security schemes' and extensions' names
    schemas     record schemas from a domain's fields; the error and health schemas
    components  shared parameters, headers and error responses
    paths       one operation per route of a domain, and the anonymous endpoints
    document    the assembly: info, security schemes, tags, paths, components
    endpoint    the Functions blueprint `bp` serving it

Public surface: `bp`, `openapi` (the function), `document(...)`, `PLACEHOLDER_AUTHORITY`,
`PLACEHOLDER_CLIENT_ID`.
"""

from shared.openapi.document import PLACEHOLDER_AUTHORITY, PLACEHOLDER_CLIENT_ID, document
from shared.openapi.endpoint import bp, openapi

__all__ = ["PLACEHOLDER_AUTHORITY", "PLACEHOLDER_CLIENT_ID", "bp", "document", "openapi"]
