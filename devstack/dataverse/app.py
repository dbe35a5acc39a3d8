"""`create_app`: the Dataverse emulator as a Starlette app, wrapped in the shared control plane,
and `Dataverse`, its in-process handle at `app.state.dataverse`."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from devstack import seed as demo_data
from devstack.control import ControlPlane, emulator_app
from devstack.dataverse import control_routes, http, paging
from devstack.dataverse.auth import KeyCache, TokenValidator, https_jwks
from devstack.dataverse.definition_reads import DefinitionReads
from devstack.dataverse.limits import ServiceProtection
from devstack.dataverse.reads import Reads
from devstack.dataverse.schema import Table
from devstack.dataverse.security import Directory, Principal
from devstack.dataverse.store import Store
from devstack.dataverse.tables import TABLES
from devstack.dataverse.writes import Writes
from devstack.latency import Latency, LatencySetting
from devstack.pki import Material
from devstack.tenant import Tenant

Clock = Callable[[], float]
JWKS_REFRESH_SECONDS = 10.0

# Endpoint classes of the latency profiles (devstack/latency.py).
LATENCY_CLASSES = ("read", "write", "other")
_WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def latency_class(method: str, path: str) -> str:
    """Under the Web API's root, a read (GET, HEAD) or a write (POST, PATCH, PUT, DELETE:
    creates, updates, deletes and actions); anything else (OPTIONS, paths outside it)."""
    if path != http.API_PREFIX and not path.startswith(http.API_PREFIX + "/"):
        return "other"
    if method in ("GET", "HEAD"):
        return "read"
    return "write" if method in _WRITES else "other"


class Dataverse:
    """Everything the emulator holds: `.store`, `.directory`, `.validator`, `.keys`, `.limits`,
    `.reads`, `.writes`, `.definitions` (EntityDefinitions), `.control`; `seed()`/`reseed()`
    fill the tables with the demo data."""

    def __init__(
        self,
        tenant: Tenant,
        *,
        base_url: str,
        entra_url: str,
        db_path: Path,
        ca_bundle: Path,
        seed: bool = True,
        clock: Clock = time.time,
        latency: LatencySetting | None = None,
    ) -> None:
        self.tenant = tenant
        self.base_url = base_url.rstrip("/")
        self.api_root = f"{self.base_url}{http.API_PREFIX}"
        self.entra_url = entra_url.rstrip("/")
        self.tables: Mapping[str, Table] = TABLES
        self.store = Store(db_path, TABLES)
        self.directory = Directory(tenant)
        self.keys = KeyCache(
            https_jwks(f"{self.entra_url}/{tenant.id}/discovery/v2.0/keys", ca_bundle),
            refresh_interval=JWKS_REFRESH_SECONDS,
            clock=time.monotonic,
        )
        self.validator = TokenValidator(
            tenant_id=tenant.id,
            entra_url=self.entra_url,
            audiences=[self.base_url, f"{self.base_url}/"],
            keys=self.keys,
            clock=clock,
        )
        self.limits = ServiceProtection()
        self.reads = Reads(
            store=self.store,
            tables=TABLES,
            directory=self.directory,
            api_root=self.api_root,
            skiptokens=paging.SkipTokens(secrets.token_bytes(32)),
        )
        self.definitions = DefinitionReads(TABLES, self.api_root)
        self.writes = Writes(
            store=self.store, tables=TABLES, reads=self.reads, api_root=self.api_root, clock=clock
        )
        self.control = ControlPlane(
            "dataverse",
            on_reset=self.reset,
            latency=Latency(
                "dataverse", classes=LATENCY_CLASSES, classify=latency_class, setting=latency
            ),
        )
        self._clock = clock
        self.sync_system_users()
        if seed and self.store.is_empty(ignore=["systemusers"]):
            self.seed()

    def principal(self, name: str) -> Principal:
        """The system user of a tenant user or app name ("alice", "central-api")."""
        return self.directory.by_name(name)

    def reset(self) -> None:
        """Control-plane reset: limits back to defaults, counters cleared. Data is kept."""
        self.limits.reset()

    def reseed(self) -> dict[str, int]:
        self.store.clear()
        self.sync_system_users()
        return self.seed()

    def seed(self) -> dict[str, int]:
        rows = demo_data.generate(self.tenant)
        with self.store.transaction():
            for entity_set, items in rows.items():
                table = self.tables[entity_set]
                for item in items:
                    self._load(table, item)
                if table.autonumber:
                    self.store.set_number(
                        f"{entity_set}.{table.autonumber.column}",
                        table.autonumber.start + len(items),
                    )
        return {name: len(items) for name, items in rows.items()}

    def sync_system_users(self) -> None:
        """The systemusers table mirrors the tenant's Dataverse users on every start."""
        table = self.tables["systemusers"]
        with self.store.transaction():
            known = set()
            for p in self.directory.principals:
                known.add(p.systemuserid)
                user = self.tenant.users.get(p.name) if p.kind == "user" else None
                row = {
                    "systemuserid": p.systemuserid,
                    "fullname": p.display_name,
                    "domainname": user.upn if user else "",
                    "internalemailaddress": user.upn if user else None,
                    "azureactivedirectoryobjectid": p.oid,
                    "applicationid": p.appid,
                    "isdisabled": 0,
                    "accessmode": p.access_mode,
                }
                current = self.store.get(table, p.systemuserid)
                if current is None:
                    self._load(table, {**row, "createdon": "2024-01-01T00:00:00Z"})
                elif any(current.get(k) != v for k, v in row.items()):
                    self.store.update(
                        table, p.systemuserid, {**row, "versionnumber": self.store.next_version()}
                    )
            for row in self.store.query('SELECT systemuserid FROM "systemusers"'):
                if row["systemuserid"] not in known:
                    self.store.delete(table, str(row["systemuserid"]))

    def _load(self, table: Table, item: Mapping[str, Any]) -> None:
        row: dict[str, Any] = {}
        for name, value in item.items():
            lookup = table.lookup_by_column(name)
            if lookup is not None:
                ref = value if isinstance(value, demo_data.Ref) else None
                row[lookup.column] = ref.key if ref else None
                row[lookup.type_column] = ref.entity_set if ref else None
            else:
                row[name] = value
        row.setdefault("modifiedon", row.get("createdon"))
        for name, compute in table.computed.items():
            row[name] = compute(row)
        row["versionnumber"] = self.store.next_version()
        self.store.insert(table, row)


def create_app(
    tenant: Tenant,
    material: Material,
    *,
    base_url: str,
    entra_url: str,
    db_path: Path,
    ca_bundle: Path,
    seed: bool = True,
    clock: Clock = time.time,
    latency: LatencySetting | None = None,
) -> Starlette:
    """The emulator for `tenant` at `base_url`, trusting tokens from the Entra emulator at
    `entra_url` (keys fetched over HTTPS with `ca_bundle`), data in SQLite at `db_path`
    (seeded with the demo data when empty, unless `seed=False`), answering with the latency
    profile `latency` (default: none; devstack/latency.py)."""
    del material  # the TLS material is the server's business (devstack.server)
    dataverse = Dataverse(
        tenant,
        base_url=base_url,
        entra_url=entra_url,
        db_path=db_path,
        ca_bundle=ca_bundle,
        seed=seed,
        clock=clock,
        latency=latency,
    )
    app = emulator_app(dataverse.control, routes=http.ROUTES, control_routes=control_routes.ROUTES)
    app.state.dataverse = dataverse
    return app
