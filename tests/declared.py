"""What tests may know about the API and the demo tenant, derived rather than written down.

Tests that cover every domain, or a scope or role the demo tenant grants, ask here instead of
listing `("customer", "case", "vehicle")` or `["customer.read", "vehicle.readwrite"]`: a fourth
domain, or a consent added to tenant.toml, then changes what these return and breaks no test.

- `domains()`: every domain function_app.py registers (`shared.domains.routes.registered`).
- `consented(tenant, client)`, `app_roles(tenant, client)`: what a client app holds for the API.
- `permissions(domain)`: `<name>.read`, `<name>.readwrite`.
- `writer(tenant, domain)`: a caller who may create the domain's records end to end: a demo
  user signed in to `portal` whose Dataverse roles allow it (delegated domains), else a client
  app with the domain's `readwrite` role (the API's application user's roles then decide).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import function_app  # noqa: F401  (registers every domain's blueprint)
from devstack.tenant import Tenant
from shared.domains.model import Choice, Domain, Integer, Reference, Text
from shared.domains.routes import registered

API = "central-api"
USER_CLIENT = "portal"  # the client app tests/api/conftest.py signs users in to by default


def domains() -> tuple[Domain, ...]:
    return registered()


def permissions(domain: Domain) -> tuple[str, str]:
    return f"{domain.name}.read", f"{domain.name}.readwrite"


def every_permission() -> set[str]:
    return {p for d in domains() for p in permissions(d)}


def consented(tenant: Tenant, client: str, resource: str = API) -> list[str]:
    """The delegated scopes `client` was granted on `resource`, in tenant.toml's order (the
    order `scp` lists them in)."""
    found = [s for c in tenant.consents if (c.client, c.resource) == (client, resource)
             for s in c.scopes]  # fmt: skip
    return list(dict.fromkeys(found))


def app_roles(tenant: Tenant, client: str, resource: str = API) -> list[str]:
    """The app roles `client` was assigned on `resource`, in tenant.toml's order."""
    found = [r for a in tenant.role_assignments if (a.client, a.resource) == (client, resource)
             for r in a.roles]  # fmt: skip
    return list(dict.fromkeys(found))


def may(tenant: Tenant, privilege: str, table: str, *, user: str = "", app: str = "") -> bool:
    """Whether a Dataverse user (a person, or an application user) holds `privilege` on
    `table` at any depth through its security roles."""
    for entry in tenant.dataverse_users:
        if (user and entry.user == user) or (app and entry.app == app):
            roles = [tenant.security_roles[name] for name in entry.roles]
            return any(role.depth(table, privilege) != "none" for role in roles)
    return False


@dataclass(frozen=True)
class Caller:
    user: str | None = None
    app: str | None = None

    @property
    def label(self) -> str:
        return f"user:{self.user}" if self.user else f"app:{self.app}"


def writer(tenant: Tenant, domain: Domain) -> Caller:
    _, readwrite = permissions(domain)
    table = domain.entity_set
    if domain.delegated and readwrite in consented(tenant, USER_CLIENT):
        for name in tenant.users:
            if may(tenant, "create", table, user=name) and may(tenant, "write", table, user=name):
                return Caller(user=name)
    if may(tenant, "create", table, app=API):
        for app in tenant.apps:
            if readwrite in app_roles(tenant, app):
                return Caller(app=app)
    raise LookupError(f"nobody in the demo tenant may create {domain.route}")


def creatable_blind(domain: Domain) -> bool:
    """Whether a create needs no existing record (no required reference): what a fuzzer that
    cannot know ids can create."""
    return not any(isinstance(f.kind, Reference) and f.required for f in domain.fields)


def minimal_body(domain: Domain, reference: str) -> dict[str, Any]:
    """A create body with the required fields only, each the simplest value its kind takes
    (`reference`, a GUID, for references: whether it exists is the test's business)."""
    body: dict[str, Any] = {}
    for field in domain.fields:
        if not (field.writable and field.required):
            continue
        kind = field.kind
        if isinstance(kind, Reference):
            body[field.name] = reference
        elif isinstance(kind, Choice):
            body[field.name] = next(iter(kind.options))
        elif isinstance(kind, Integer):
            body[field.name] = kind.minimum
        elif isinstance(kind, Text) and not kind.pattern:
            body[field.name] = "x"
        else:
            raise NotImplementedError(f"{domain.name}.{field.name}: no simple value for its kind")
    return body
