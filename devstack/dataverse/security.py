"""Who is calling, as Dataverse sees it, and what their security roles let them do.

A validated token names a person (`oid`) or an application (`appid`/`azp`); `Directory` maps it to
a system user or application user from the tenant. A `Principal` holds the union of its roles'
privileges: per table and privilege (create, read, write, delete) the deepest depth any role
grants ("user": rows the caller owns; "organization": every row). Tables that are not
user-owned (systemusers) treat "user" as "organization".

Denials carry Dataverse's codes and messages, told apart as Dataverse does: a missing privilege
is 403 `0x80040220` (-2147220960) naming `prv<Privilege><SchemaName>`, the same for every row of
the table; a privilege whose depth does not reach this row is SecLib's access-check failure,
403 `0x80048306` (-2147187962), naming the row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from devstack.dataverse.errors import AccessDenied, Forbidden, NotMember
from devstack.dataverse.schema import Table
from devstack.tenant import DEPTHS, PRIVILEGES, Tenant

Privilege = Literal["create", "read", "write", "delete"]
Depth = str

_NAMESPACE = uuid.UUID("6f4d5f9e-3b7a-4c1e-9a57-2f0b8a1d9c42")
_ACCESS_RIGHTS = {
    "read": "ReadAccess",
    "write": "WriteAccess",
    "delete": "DeleteAccess",
    "create": "CreateAccess",
}


def stable_id(*parts: str) -> str:
    """A GUID derived from names, so ids in messages and WhoAmI stay the same across runs."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


@dataclass(frozen=True)
class Identity:
    """The caller, as the validated token states it."""

    kind: Literal["user", "application"]
    oid: str | None = None
    appid: str | None = None


@dataclass(frozen=True)
class Principal:
    systemuserid: str
    kind: Literal["user", "application"]
    name: str  # the tenant's handle: "alice", "central-api"
    display_name: str
    oid: str | None
    appid: str | None
    roles: tuple[str, ...]
    privileges: dict[str, dict[str, Depth]]  # table entity set -> privilege -> depth

    def depth(self, table: Table, privilege: Privilege) -> Depth:
        granted = self.privileges.get(table.entity_set, {}).get(privilege, "none")
        baseline = table.baseline_privileges.get(privilege, "none")
        deepest = max(granted, baseline, key=DEPTHS.index)
        if deepest == "user" and table.ownership != "user":
            return "organization"
        return deepest

    def require(self, table: Table, privilege: Privilege) -> Depth:
        """The depth held, or 403 with Dataverse's missing-privilege message."""
        depth = self.depth(table, privilege)
        if depth == "none":
            raise self.missing(table, privilege)
        return depth

    def may(self, table: Table, privilege: Privilege, owner: str | None) -> bool:
        depth = self.depth(table, privilege)
        return depth == "organization" or (depth == "user" and owner == self.systemuserid)

    def check_row(self, table: Table, privilege: Privilege, key: str, owner: str | None) -> None:
        self.require(table, privilege)
        if not self.may(table, privilege, owner):
            raise self.denied(table, privilege, key, owner)

    @property
    def access_mode(self) -> int:
        return 4 if self.kind == "application" else 0  # Non-interactive vs Read-Write

    @property
    def privilege_count(self) -> int:
        return sum(1 for privs in self.privileges.values() for d in privs.values() if d != "none")

    def missing(self, table: Table, privilege: Privilege) -> Forbidden:
        name = f"prv{privilege.capitalize()}{table.schema_name}"
        return Forbidden(
            f"Principal user (Id={self.systemuserid}, type=8, roleCount={len(self.roles)}, "
            f"privilegeCount={self.privilege_count}, accessMode={self.access_mode}), is missing "
            f"{name} privilege (Id={stable_id('privilege', name)}) on "
            f"OTC={table.object_type_code} for entity '{table.logical_name}'. "
            f"context.Caller={self.systemuserid}"
        )

    def denied(
        self, table: Table, privilege: Privilege, key: str, owner: str | None
    ) -> AccessDenied:
        return AccessDenied(
            "SecLib::AccessCheckEx failed. Returned hr = -2147187962, "
            f"ObjectID: {key}, OwnerId: {owner}, OwnerIdType: 8 and CallingUser: "
            f"{self.systemuserid}. ObjectTypeCode: {table.object_type_code}, "
            f"objectBusinessUnitId: {ROOT_BUSINESS_UNIT}, "
            f"AccessRights: {_ACCESS_RIGHTS[privilege]} "
        )


ROOT_BUSINESS_UNIT = stable_id("businessunit", "root")


class Directory:
    """System users and application users of the organisation, from the tenant."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.organization_id = stable_id("organization", tenant.id)
        self.business_unit_id = ROOT_BUSINESS_UNIT
        self._principals = [self._principal(u.systemuserid) for u in tenant.dataverse_users]

    def _principal(self, systemuserid: str) -> Principal:
        entry = next(u for u in self.tenant.dataverse_users if u.systemuserid == systemuserid)
        privileges: dict[str, dict[str, Depth]] = {}
        for role_name in entry.roles:
            role = self.tenant.security_roles[role_name]
            for table, privs in role.privileges.items():
                held = privileges.setdefault(table, {})
                for privilege in PRIVILEGES:
                    depth = privs.get(privilege, "none")
                    held[privilege] = max(held.get(privilege, "none"), depth, key=DEPTHS.index)
        if entry.user is not None:
            user = self.tenant.user(entry.user)
            return Principal(
                systemuserid=entry.systemuserid.lower(),
                kind="user",
                name=user.name,
                display_name=user.display_name,
                oid=user.oid,
                appid=None,
                roles=entry.roles,
                privileges=privileges,
            )
        assert entry.app is not None
        app = self.tenant.app(entry.app)
        return Principal(
            systemuserid=entry.systemuserid.lower(),
            kind="application",
            name=app.name,
            display_name=f"# {app.name}",
            oid=None,
            appid=app.client_id,
            roles=entry.roles,
            privileges=privileges,
        )

    @property
    def principals(self) -> list[Principal]:
        return list(self._principals)

    def by_name(self, name: str) -> Principal:
        found = next((p for p in self._principals if p.name == name), None)
        if found is None:
            raise KeyError(f"no Dataverse user named {name!r}")
        return found

    def resolve(self, identity: Identity) -> Principal:
        """The system user behind a token, or 403 "not a member of the organization"."""
        for p in self._principals:
            if identity.kind == "user" and p.kind == "user" and p.oid == identity.oid:
                return p
            if (
                identity.kind == "application"
                and p.kind == "application"
                and p.appid is not None
                and identity.appid is not None
                and p.appid.lower() == identity.appid.lower()
            ):
                return p
        raise NotMember()
