"""The operations every domain has, as data: served by `blueprint` and described by
`shared.openapi` from the same list, so the document cannot drift from the code.

The functions are `async def` (`ASYNC_HANDLERS`): the Python worker runs them on its event loop,
so a request waiting on Dataverse holds no thread, and an instance serves as many at once as its
per-instance HTTP concurrency lets in. Chosen by measurement against sync functions on the
worker's threads (bench/README.md, "Sync or async handlers"); `blueprint(domain,
asynchronous=False)` still builds the sync ones, from the same handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import azure.functions as func

from shared.auth.policy import Access, Policy
from shared.domains import service
from shared.domains.model import Domain
from shared.http.pipeline import Handler, endpoint

ASYNC_HANDLERS = True


@dataclass(frozen=True)
class Operation:
    kind: str  # list | get | create | update
    method: str
    route: str  # Functions route template, without the /api prefix
    name: str  # Functions function name, and the OpenAPI operationId
    summary: str
    policy: Policy
    params: frozenset[str]
    handler: Handler


def operations(domain: Domain) -> list[Operation]:
    read = Policy(domain.name, Access.READ, delegated=domain.delegated)
    write = Policy(domain.name, Access.WRITE, delegated=domain.delegated)
    collection, item = domain.route, f"{domain.route}/{{id}}"
    plural = domain.route
    return [
        Operation(
            "list", "GET", collection, f"{plural}_list",
            f"List or search {plural}", read, service.list_params(domain),
            partial(service.list_records, domain),
        ),
        Operation(
            "get", "GET", item, f"{plural}_get",
            f"Get one {domain.name}", read, frozenset(), partial(service.get_record, domain),
        ),
        Operation(
            "create", "POST", collection, f"{plural}_create",
            f"Create a {domain.name}", write, frozenset(), partial(service.create_record, domain),
        ),
        Operation(
            "update", "PATCH", item, f"{plural}_update",
            f"Update a {domain.name}", write, frozenset(), partial(service.update_record, domain),
        ),
    ]  # fmt: skip


_registered: dict[str, Domain] = {}


def registered() -> tuple[Domain, ...]:
    """The domains whose blueprints were built, in the order they were (what the app serves)."""
    return tuple(_registered.values())


def blueprint(domain: Domain, *, asynchronous: bool = ASYNC_HANDLERS) -> func.Blueprint:
    """The Functions blueprint serving `domain`'s operations; also records the domain for
    `shared.openapi`. `asynchronous`: async or sync functions (the same handlers)."""
    if _registered.setdefault(domain.name, domain) is not domain:
        raise ValueError(f"two domains are named {domain.name!r}")
    bp = func.Blueprint()
    for op in operations(domain):
        function = endpoint(
            op.policy,
            op.handler,
            name=op.name,
            route=op.route,
            params=op.params,
            asynchronous=asynchronous,
        )
        bp.route(route=op.route, methods=[op.method], auth_level=func.AuthLevel.ANONYMOUS)(function)
    return bp
