"""The tenant as Entra sees it at run time: the registrations from `tenant.toml` plus what the
control plane changed since (consents granted or revoked, access-token versions switched,
optional claims added or removed, federated identity credentials replaced).

Everything that answers "who is this, and what may it have" is here, so grants never read
`tenant.toml` structures directly.
"""

from __future__ import annotations

import threading

from devstack.entra.errors import ControlError, InvalidTenant
from devstack.tenant import (
    App,
    ConditionalAccessPolicy,
    Consent,
    FederatedCredential,
    Tenant,
    User,
)

# Path segments Entra accepts in place of a tenant id for an organisational tenant.
MULTI_TENANT_ALIASES = ("common", "organizations")
# The optional access-token claims the token minter knows how to add.
OPTIONAL_CLAIMS = ("idtyp",)


class Directory:
    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self._lock = threading.Lock()
        self._consents: dict[tuple[str, str], tuple[str, ...]] = {}
        self._versions: dict[str, int] = {}
        self._optional_claims: dict[str, tuple[str, ...]] = {}
        self._federated: dict[str, tuple[FederatedCredential, ...]] = {}
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._consents = {(c.client, c.resource): c.scopes for c in self.tenant.consents}
            self._versions = {a.name: a.access_token_version for a in self.tenant.apps.values()}
            self._optional_claims = {a.name: a.optional_claims for a in self.tenant.apps.values()}
            self._federated = {
                a.name: tuple(f for f in self.tenant.federated_credentials if f.app == a.name)
                for a in self.tenant.apps.values()
            }

    # --- the tenant in the URL ----------------------------------------------------------------

    def check_tenant(self, segment: str) -> str:
        """The segment as given when it names this tenant (GUID, domain or alias); else 90002."""
        lowered = segment.lower()
        if lowered in (self.tenant.id, self.tenant.domain.lower(), *MULTI_TENANT_ALIASES):
            return lowered
        raise InvalidTenant(
            90002,
            f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and "
            "are signing into the correct cloud. Check with your subscription administrator, "
            "this may happen if there are no active subscriptions for the tenant.",
        )

    # --- applications -------------------------------------------------------------------------

    def app_by_client_id(self, client_id: str) -> App | None:
        return self.tenant.app_by_client_id(client_id)

    def resource_by_identifier(self, identifier: str) -> App | None:
        """An API named by its App ID URI, its client id, or (Dataverse) its URL."""
        wanted = identifier.rstrip("/").lower()
        for app in self.tenant.apps.values():
            names = {app.client_id, *(u.rstrip("/") for u in app.identifier_uris)}
            if wanted in {n.lower() for n in names}:
                return app
        return None

    def app_id_uri(self, app: App) -> str:
        """The `aud` of v1 tokens: the first identifier URI, or the client id when there is none."""
        return app.identifier_uris[0] if app.identifier_uris else app.client_id

    def names_of(self, app: App) -> set[str]:
        """Every string that identifies `app` as an audience."""
        return {app.client_id.lower(), *(u.rstrip("/").lower() for u in app.identifier_uris)}

    def version(self, resource: App) -> int:
        with self._lock:
            return self._versions.get(resource.name, resource.access_token_version)

    def optional_claims(self, resource: App) -> tuple[str, ...]:
        """The optional claims the resource's registration asks for in its access tokens."""
        with self._lock:
            return self._optional_claims.get(resource.name, resource.optional_claims)

    def configure(
        self,
        name: str,
        *,
        version: int | None = None,
        optional_claims: list[str] | None = None,
    ) -> App:
        """Changes an app's token configuration; all of it or, on a bad value, none."""
        app = self._app_named(name)
        if version is not None and version not in (1, 2):
            raise ControlError("access_token_version must be 1 or 2")
        unknown = sorted(set(optional_claims or ()) - set(OPTIONAL_CLAIMS))
        if unknown:
            raise ControlError(f"unknown optional claims {unknown}; known: {list(OPTIONAL_CLAIMS)}")
        with self._lock:
            if version is not None:
                self._versions[name] = version
            if optional_claims is not None:
                self._optional_claims[name] = tuple(dict.fromkeys(optional_claims))
        return app

    def federated_credentials(self, app: App) -> tuple[FederatedCredential, ...]:
        """The app's federated identity credentials (`{issuer}` not yet filled in)."""
        with self._lock:
            return self._federated.get(app.name, ())

    def set_federated_credentials(
        self, name: str, credentials: list[FederatedCredential]
    ) -> tuple[FederatedCredential, ...]:
        """Replaces an app's federated identity credentials (none: the app has no FIC)."""
        self._app_named(name)
        if any(f.app != name for f in credentials):
            raise ControlError("a federated credential belongs to the app it is set on")
        with self._lock:
            self._federated[name] = tuple(credentials)
            return self._federated[name]

    # --- permissions --------------------------------------------------------------------------

    def consented_scopes(self, client: App, resource: App) -> tuple[str, ...]:
        with self._lock:
            return self._consents.get((client.name, resource.name), ())

    def consents(self) -> list[Consent]:
        with self._lock:
            return [Consent(c, r, s) for (c, r), s in sorted(self._consents.items()) if s]

    def grant(self, client: str, resource: str, scopes: list[str]) -> Consent:
        self._app_named(client)
        api = self._app_named(resource)
        unknown = sorted(set(scopes) - set(api.scopes))
        if unknown:
            raise ControlError(f"{resource} exposes no scopes named {unknown}")
        with self._lock:
            held = self._consents.get((client, resource), ())
            merged = held + tuple(s for s in scopes if s not in held)
            self._consents[(client, resource)] = merged
            return Consent(client, resource, merged)

    def revoke(self, client: str, resource: str, scopes: list[str] | None) -> Consent:
        self._app_named(client)
        self._app_named(resource)
        with self._lock:
            held = self._consents.get((client, resource), ())
            kept = () if scopes is None else tuple(s for s in held if s not in scopes)
            self._consents[(client, resource)] = kept
            return Consent(client, resource, kept)

    def app_roles(self, client: App, resource: App) -> tuple[str, ...]:
        roles: list[str] = []
        for assignment in self.tenant.role_assignments:
            if assignment.client == client.name and assignment.resource == resource.name:
                roles.extend(r for r in assignment.roles if r not in roles)
        return tuple(roles)

    def policy_for(self, user: User, resource: App) -> ConditionalAccessPolicy | None:
        return next(
            (
                p
                for p in self.tenant.conditional_access
                if user.name in p.users and p.resource == resource.name
            ),
            None,
        )

    # --- users --------------------------------------------------------------------------------

    def user_by_upn(self, upn: str) -> User | None:
        return self.tenant.user_by_upn(upn)

    def user_by_oid(self, oid: str) -> User | None:
        return self.tenant.user_by_oid(oid)

    def app_named(self, name: str) -> App:
        """The app of that name; ControlError when there is none."""
        return self._app_named(name)

    def _app_named(self, name: str) -> App:
        app = self.tenant.apps.get(name)
        if app is None:
            raise ControlError(f"no app named {name!r} in the demo tenant")
        return app
