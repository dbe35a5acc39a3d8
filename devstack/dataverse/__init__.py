"""The Dataverse Web API emulator: `/api/data/v9.2/` over SQLite for `contacts`, `accounts`,
`incidents`, `bos_vehicles` (and `systemusers`), with OData queries, paging, conditional writes,
security roles, service protection limits, Dataverse's error shapes, and a control plane.

Public surface:
    create_app(tenant, material, *, base_url, entra_url, db_path, ca_bundle, seed=True,
               clock=time.time) -> Starlette
    Dataverse   the in-process handle at `app.state.dataverse`
                (`.control`, `.store`, `.limits`, `.directory`, `.keys`, `.reads`, `.writes`,
                `.principal(name)`, `.seed()`, `.reseed()`)
    TABLES      the table declarations (`devstack.dataverse.tables`)

Modules: `tables` (declarations) on `schema` (how to declare); `store` (SQLite) with
`sqlserver` (LIKE and collation); `filters` ($filter), `options` (query options), `paging`;
`payload` (request bodies); `render` (records); `security` (principals, privileges); `auth`
(tokens); `limits` (service protection); `reads` and `writes` (the operations) with `replies`;
`definitions` (EntityDefinitions shapes) and `definition_reads` (their paths and query options);
`operations` (one request to one of those); `batch` (`$batch`); `http` (pipeline, errors);
`resources` (paths); `metadata` (service document, CSDL); `errors` (the exception tree).
"""

from devstack.dataverse.app import Dataverse, create_app
from devstack.dataverse.tables import TABLES

__all__ = ["TABLES", "Dataverse", "create_app"]
