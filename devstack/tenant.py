"""The demo tenant: `tenant.toml` read into typed, immutable objects.

Both emulators, the seeder and the client CLI read the tenant from here, so that an app, a user
or a consent is described once. Secrets are not part of the tenant; see `devstack.pki`.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TENANT_FILE = Path(__file__).with_name("tenant.toml")

Depth = str  # "none" | "user" | "organization"
PRIVILEGES = ("create", "read", "write", "delete")
DEPTHS = ("none", "user", "organization")


# The platforms of an app registration's redirect URIs (the manifest's `spa`, `web` and
# `publicClient`; the portal calls the last "Mobile and desktop applications").
PLATFORMS = ("spa", "web", "public_client")


@dataclass(frozen=True)
class RedirectUri:
    uri: str
    platform: str  # one of PLATFORMS


@dataclass(frozen=True)
class App:
    name: str
    client_id: str
    confidential: bool
    identifier_uris: tuple[str, ...] = ()
    access_token_version: int = 1
    optional_claims: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    app_roles: tuple[str, ...] = ()
    redirect_uris: tuple[RedirectUri, ...] = ()


@dataclass(frozen=True)
class ManagedIdentity:
    """A user-assigned managed identity: what the managed-identity endpoint issues tokens for."""

    name: str
    client_id: str
    principal_id: str  # the object id: `oid` and `sub` of its tokens


@dataclass(frozen=True)
class FederatedCredential:
    """A federated identity credential on an app registration: the app accepts, as its client
    assertion, a token with this issuer, this subject and one of these audiences."""

    app: str
    name: str
    issuer: str  # "{issuer}" stands for this tenant's v2.0 issuer (the emulator's URL)
    subject: str
    audiences: tuple[str, ...]


@dataclass(frozen=True)
class User:
    name: str  # the short handle used on the command line ("alice")
    oid: str
    display_name: str
    upn: str


@dataclass(frozen=True)
class Consent:
    client: str
    resource: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class RoleAssignment:
    client: str
    resource: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class ConditionalAccessPolicy:
    id: str
    users: tuple[str, ...]
    resource: str
    require: str


@dataclass(frozen=True)
class SecurityRole:
    name: str
    # table -> privilege -> depth
    privileges: dict[str, dict[str, Depth]]

    def depth(self, table: str, privilege: str) -> Depth:
        return self.privileges.get(table, {}).get(privilege, "none")


@dataclass(frozen=True)
class DataverseUser:
    systemuserid: str
    roles: tuple[str, ...]
    user: str | None = None  # a person, matched on `oid`
    app: str | None = None  # an application user, matched on `appid`/`azp`


@dataclass(frozen=True)
class Seed:
    random_seed: int
    counts: dict[str, int]
    owners: tuple[str, ...]


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    domain: str
    apps: dict[str, App]
    users: dict[str, User]
    consents: tuple[Consent, ...]
    role_assignments: tuple[RoleAssignment, ...]
    conditional_access: tuple[ConditionalAccessPolicy, ...]
    security_roles: dict[str, SecurityRole]
    dataverse_users: tuple[DataverseUser, ...]
    seed: Seed
    source: dict[str, Any] = field(repr=False, default_factory=dict)
    managed_identities: dict[str, ManagedIdentity] = field(default_factory=dict)
    federated_credentials: tuple[FederatedCredential, ...] = ()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the tenant's content (not of the file's layout or comments): what a cache
        of tokens the tenant issued is valid for."""
        canonical = json.dumps(self.source, sort_keys=True, default=str).encode()
        return hashlib.sha256(canonical).hexdigest()

    def app(self, name: str) -> App:
        try:
            return self.apps[name]
        except KeyError:
            raise KeyError(f"no app named {name!r} in the demo tenant") from None

    def user(self, name: str) -> User:
        try:
            return self.users[name]
        except KeyError:
            raise KeyError(f"no user named {name!r} in the demo tenant") from None

    def app_by_client_id(self, client_id: str) -> App | None:
        return next((a for a in self.apps.values() if a.client_id == client_id), None)

    def managed_identity(self, name: str) -> ManagedIdentity:
        try:
            return self.managed_identities[name]
        except KeyError:
            raise KeyError(f"no managed identity named {name!r} in the demo tenant") from None

    def user_by_oid(self, oid: str) -> User | None:
        return next((u for u in self.users.values() if u.oid == oid), None)

    def user_by_upn(self, upn: str) -> User | None:
        upn = upn.lower()
        return next((u for u in self.users.values() if u.upn.lower() == upn), None)

    def with_dataverse_url(self, url: str) -> Tenant:
        """Dataverse's identifier URI is its URL, known only once a port is chosen."""
        apps = dict(self.apps)
        dv = apps["dataverse"]
        uris = tuple(u.replace("{dataverse_url}", url.rstrip("/")) for u in dv.identifier_uris)
        apps["dataverse"] = App(**{**dv.__dict__, "identifier_uris": uris})
        return Tenant(**{**self.__dict__, "apps": apps})


def load_tenant(path: Path = DEFAULT_TENANT_FILE, *, dataverse_url: str | None = None) -> Tenant:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    apps = {
        name: App(
            name=name,
            client_id=a["client_id"],
            confidential=a["confidential"],
            identifier_uris=tuple(a.get("identifier_uris", ())),
            access_token_version=a.get("access_token_version", 1),
            optional_claims=tuple(a.get("optional_claims", ())),
            scopes=tuple(a.get("scopes", ())),
            app_roles=tuple(a.get("app_roles", ())),
            redirect_uris=_redirect_uris(name, a.get("redirect_uris", {})),
        )
        for name, a in raw["apps"].items()
    }
    users = {
        name: User(name=name, oid=u["oid"], display_name=u["name"], upn=u["upn"])
        for name, u in raw["users"].items()
    }
    dv = raw["dataverse"]
    roles = {
        name: SecurityRole(name=name, privileges={t: dict(p) for t, p in tables.items()})
        for name, tables in dv["roles"].items()
    }
    for role in roles.values():
        for table, privs in role.privileges.items():
            for priv, depth in privs.items():
                if priv not in PRIVILEGES or depth not in DEPTHS:
                    raise ValueError(f"role {role.name}: bad privilege {table}.{priv}={depth}")
    dv_users = tuple(
        DataverseUser(systemuserid=u["systemuserid"], roles=tuple(u["roles"]), user=u["user"])
        for u in dv.get("users", ())
    ) + tuple(
        DataverseUser(systemuserid=u["systemuserid"], roles=tuple(u["roles"]), app=u["app"])
        for u in dv.get("application_users", ())
    )
    seed_raw = dict(dv["seed"])
    tenant = Tenant(
        id=raw["tenant"]["id"],
        name=raw["tenant"]["name"],
        domain=raw["tenant"]["domain"],
        apps=apps,
        users=users,
        consents=tuple(
            Consent(c["client"], c["resource"], tuple(c["scopes"])) for c in raw["consents"]
        ),
        role_assignments=tuple(
            RoleAssignment(r["client"], r["resource"], tuple(r["roles"]))
            for r in raw.get("app_role_assignments", ())
        ),
        conditional_access=tuple(
            ConditionalAccessPolicy(p["id"], tuple(p["users"]), p["resource"], p["require"])
            for p in raw.get("conditional_access", ())
        ),
        security_roles=roles,
        dataverse_users=dv_users,
        seed=Seed(
            random_seed=seed_raw.pop("random_seed"),
            owners=tuple(seed_raw.pop("owners")),
            counts={k: int(v) for k, v in seed_raw.items()},
        ),
        source=raw,
        managed_identities={
            name: ManagedIdentity(name, m["client_id"], m["principal_id"])
            for name, m in raw.get("managed_identities", {}).items()
        },
        federated_credentials=tuple(
            FederatedCredential(
                f["app"], f["name"], f["issuer"], f["subject"], tuple(f["audiences"])
            )
            for f in raw.get("federated_credentials", ())
        ),
    )
    return tenant.with_dataverse_url(dataverse_url) if dataverse_url else tenant


def _redirect_uris(app: str, raw: dict[str, list[str]]) -> tuple[RedirectUri, ...]:
    unknown = sorted(set(raw) - set(PLATFORMS))
    if unknown:
        raise ValueError(f"app {app}: unknown redirect URI platforms {unknown}; known: {PLATFORMS}")
    return tuple(
        RedirectUri(uri, platform) for platform in PLATFORMS for uri in raw.get(platform, ())
    )
