"""Start the whole dev stack: Entra emulator, Dataverse emulator, API host in this process, and
the shared store (a valkey-server child process, devstack/valkey.py).

`make run` and the test fixtures both come through `start_stack`, so what a newcomer runs is what
the tests exercise. Ports of 0 pick free ones (tests); `Ports()` gives the documented defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.config import Ports, api_settings, write_env
from devstack.pki import Material, ensure_material
from devstack.server import ServerThread
from devstack.tenant import Tenant, load_tenant
from devstack.valkey import ValkeyServer


@dataclass
class RunningStack:
    tenant: Tenant
    material: Material
    settings: dict[str, str]
    entra: ServerThread
    dataverse: ServerThread
    api: ServerThread | None
    entra_app: Any
    dataverse_app: Any
    valkey: ValkeyServer | None = None
    _servers: list[ServerThread] = field(default_factory=list)

    @property
    def entra_url(self) -> str:
        return self.entra.url

    @property
    def dataverse_url(self) -> str:
        return self.dataverse.url

    @property
    def api_url(self) -> str:
        assert self.api is not None, "started without the API host"
        return self.api.url

    @property
    def ca_bundle(self) -> Path:
        return Path(self.settings["REQUESTS_CA_BUNDLE"])

    def stop(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        if self.valkey is not None:
            self.valkey.stop()


def start_stack(
    folder: Path,
    *,
    ports: Ports,
    db_path: Path,
    with_api: bool = True,
    function_app: str = "function_app",
) -> RunningStack:
    """Generate what is missing under `folder`, start the servers, write `stack.env`.

    The API host reads its settings from the environment, as the Functions runtime does, so the
    settings are exported to `os.environ` before it starts.
    """
    from devstack.dataverse import create_app as create_dataverse
    from devstack.entra import create_app as create_entra

    base_tenant = load_tenant()
    material = ensure_material(folder, base_tenant)
    tls = (material.tls_cert, material.tls_key)
    servers: list[ServerThread] = []
    valkey = ValkeyServer(folder / "valkey", port=ports.redis)
    try:
        valkey.start()
        entra = ServerThread(name="entra-emulator", port=ports.entra, tls=tls)
        servers.append(entra)
        dataverse = ServerThread(name="dataverse-emulator", port=ports.dataverse, tls=tls)
        servers.append(dataverse)
        api = ServerThread(name="api-host", port=ports.api) if with_api else None
        if api:
            servers.append(api)

        tenant = base_tenant.with_dataverse_url(dataverse.url)
        settings = api_settings(
            tenant,
            material,
            entra_url=entra.url,
            dataverse_url=dataverse.url,
            api_url=api.url if api else "",
            redis_url=valkey.url,
        )
        write_env(folder / "stack.env", settings)

        entra_app = create_entra(tenant, material, base_url=entra.url)
        entra.start(entra_app)
        dataverse_app = create_dataverse(
            tenant,
            material,
            base_url=dataverse.url,
            entra_url=entra.url,
            db_path=db_path,
            ca_bundle=Path(settings["REQUESTS_CA_BUNDLE"]),
        )
        dataverse.start(dataverse_app)
        if api:
            from devstack.host import HOST_MAX_HEADER_READ
            from devstack.host import create_app as create_host

            os.environ.update(settings)
            api.start(create_host(function_app), max_header_read=HOST_MAX_HEADER_READ)
    except BaseException:
        for server in reversed(servers):
            server.stop()
        valkey.stop()
        raise
    return RunningStack(
        tenant=tenant,
        material=material,
        settings=settings,
        entra=entra,
        dataverse=dataverse,
        api=api,
        entra_app=entra_app,
        dataverse_app=dataverse_app,
        valkey=valkey,
        _servers=servers,
    )


__all__ = ["Ports", "RunningStack", "ensure_material", "start_stack"]
