"""Start the whole dev stack: Entra emulator, Dataverse emulator, API host in this process, and
the shared store (a valkey-server child process, devstack/valkey.py).

`make run` and the test fixtures both come through `start_stack`, so what a newcomer runs is what
the tests exercise. Ports of 0 pick free ones (tests); `Ports()` gives the documented defaults.

The API authenticates to Entra with its managed identity unless told otherwise (`credential`,
`make run`: DEVSTACK_API_CLIENT_CREDENTIAL; devstack/config.py): the stack then serves App
Service's managed-identity endpoint for it (devstack/entra/identity.py) on its own port.

`latency` is the emulators' latency profile (devstack/latency.py; `make run` reads it from
`DEVSTACK_LATENCY`); the default is none, the emulators as fast as they are.

`api_instances=N` adds API hosts 2..N on the next ports, each a child process of its own
(devstack/instances.py), as Azure runs instances; the first stays on a thread here, so that the
tests and tools that reach into this process's API runtime see the same host as before.

With the API comes the sample single-page app (devstack/spa.py, samples/spa) on a port of its
own, an origin the API hosts allow by CORS (DEVSTACK_CORS, devstack/host/_cors.py).

Every API host, in process or not, runs with the same limits (devstack/host/_limits.py): the
worker's thread count (PYTHON_THREADPOOL_THREAD_COUNT) and the per-instance HTTP concurrency
(DEVSTACK_HTTP_CONCURRENCY), and the same CORS policy, read from the environment with
`host_settings` over it. A malformed one stops the start before anything runs.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.config import Ports, api_settings, credential_mode, credential_settings, write_env
from devstack.instances import HostGroup, Instance, listen
from devstack.latency import LatencySetting
from devstack.pki import Material, ensure_material
from devstack.server import ServerThread
from devstack.spa import SPA_CLIENT, SpaConfig
from devstack.spa import create_app as create_spa
from devstack.tenant import Tenant, load_tenant
from devstack.valkey import ValkeyServer

if TYPE_CHECKING:
    from devstack.host import InstanceLimits


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
    spa: ServerThread | None = None  # the sample single-page app, with the API
    identity: ServerThread | None = None  # the managed-identity endpoint
    identity_app: Any = None
    _servers: list[ServerThread] = field(default_factory=list)
    api_hosts: HostGroup | None = None  # API hosts 2..N, child processes
    limits: InstanceLimits | None = None  # every API host's threads and concurrency

    @property
    def api_urls(self) -> list[str]:
        """Every API host's URL, the in-process one first."""
        return self.settings["DEVSTACK_API_URLS"].split(",")

    @property
    def api_instances(self) -> list[Instance]:
        """The API hosts running as child processes (hosts 2..N)."""
        return self.api_hosts.instances if self.api_hosts else []

    @property
    def spa_url(self) -> str:
        assert self.spa is not None, "started without the API host"
        return self.spa.url

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
    def identity_url(self) -> str:
        """The managed-identity endpoint's base URL (its control plane is under it)."""
        assert self.identity is not None
        return self.identity.url

    @property
    def ca_bundle(self) -> Path:
        return Path(self.settings["REQUESTS_CA_BUNDLE"])

    def stop(self) -> None:
        if self.api_hosts is not None:
            self.api_hosts.stop()
        # The in-process API host's runtime holds an aiohttp session on the host's event loop:
        # close it while that loop still runs, or it warns at exit (the Functions worker's
        # process simply ends; ours goes on, or shuts down with a traceback).
        runtime = sys.modules.get("shared.runtime")
        if runtime is not None:
            runtime.reset()
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
    api_instances: int = 1,
    host_settings: Mapping[str, str] | None = None,
    latency: LatencySetting | None = None,
    credential: str | None = None,
) -> RunningStack:
    """Generate what is missing under `folder`, start the servers, write `stack.env`.

    The API host reads its settings from the environment, as the Functions runtime does, so the
    settings are exported to `os.environ` before it starts. `host_settings` are more settings
    for every API host, written to stack.env with the others and over the environment, e.g.
    `{"PYTHON_THREADPOOL_THREAD_COUNT": "32"}`. Raises HostConfigError, before starting
    anything, when the hosts' thread count or concurrency is malformed. `credential`: the API's
    credential mode ("managed-identity", "certificate", "secret"; devstack/config.py), by
    default DEVSTACK_API_CLIENT_CREDENTIAL's, else "managed-identity".
    """
    from devstack.dataverse import create_app as create_dataverse
    from devstack.entra import create_app as create_entra
    from devstack.entra.identity import PATH as IDENTITY_PATH
    from devstack.entra.identity import create_identity_app

    extra = dict(host_settings or {})
    mode = credential or credential_mode()
    limits = None
    if with_api:
        from devstack.host import CorsPolicy, InstanceLimits

        limits = InstanceLimits.from_env({**os.environ, **extra})
        CorsPolicy.from_env({**os.environ, **extra})  # fails here, before anything starts

    base_tenant = load_tenant()
    material = ensure_material(folder, base_tenant)
    tls = (material.tls_cert, material.tls_key)
    servers: list[ServerThread] = []
    more_apis: list[tuple[str, socket.socket]] = []  # (name, listening socket) of API hosts 2..N
    hosts: HostGroup | None = None
    valkey = ValkeyServer(folder / "valkey", port=ports.redis)
    try:
        valkey.start()
        entra = ServerThread(name="entra-emulator", port=ports.entra, tls=tls)
        servers.append(entra)
        dataverse = ServerThread(name="dataverse-emulator", port=ports.dataverse, tls=tls)
        servers.append(dataverse)
        identity = ServerThread(name="identity-endpoint", port=ports.identity)
        servers.append(identity)
        identity_header = secrets.token_urlsafe(24)
        api = ServerThread(name="api-host", port=ports.api) if with_api else None
        spa = ServerThread(name="sample-spa", port=ports.spa) if with_api else None
        if api and spa:
            servers.extend([api, spa])
            for n in range(2, api_instances + 1):
                name = f"api-host-{n}"
                more_apis.append((name, listen(name, ports.api + n - 1 if ports.api else 0)))

        tenant = base_tenant.with_dataverse_url(dataverse.url)
        settings = api_settings(
            tenant,
            material,
            entra_url=entra.url,
            dataverse_url=dataverse.url,
            api_url=api.url if api else "",
            api_urls=[api.url, *(_url(sock) for _, sock in more_apis)] if api else [],
            redis_url=valkey.url,
            latency=latency,
            spa_url=spa.url if spa else "",
            credential=credential_settings(
                tenant,
                material,
                mode,
                identity_url=f"{identity.url}{IDENTITY_PATH}",
                identity_header=identity_header,
            ),
        )
        settings["DEVSTACK_IDENTITY_URL"] = identity.url
        settings.update(extra)
        write_env(folder / "stack.env", settings)

        entra_app = create_entra(tenant, material, base_url=entra.url, latency=latency)
        entra.start(entra_app)
        identity_app = create_identity_app(entra_app.state.entra, header=identity_header)
        identity.start(identity_app)
        dataverse_app = create_dataverse(
            tenant,
            material,
            base_url=dataverse.url,
            entra_url=entra.url,
            db_path=db_path,
            ca_bundle=Path(settings["REQUESTS_CA_BUNDLE"]),
            latency=latency,
        )
        dataverse.start(dataverse_app)
        if api:
            from devstack.host import HOST_MAX_HEADER_READ
            from devstack.host import create_app as create_host

            os.environ.update(settings)
            api.start(
                create_host(function_app, limits=limits), max_header_read=HOST_MAX_HEADER_READ
            )
            if spa:
                spa.start(create_spa(spa_config(tenant, settings)))
            if more_apis:
                sockets, more_apis = more_apis, []  # HostGroup.start closes them
                hosts = HostGroup.start(sockets, env=dict(os.environ), function_app=function_app)
    except BaseException:
        for _, sock in more_apis:
            sock.close()
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
        spa=spa,
        entra_app=entra_app,
        dataverse_app=dataverse_app,
        valkey=valkey,
        identity=identity,
        identity_app=identity_app,
        _servers=servers,
        api_hosts=hosts,
        limits=limits,
    )


def spa_config(tenant: Tenant, settings: Mapping[str, str]) -> SpaConfig:
    """The sample SPA's configuration against this stack: it signs in to the `portal-spa` client
    app and asks for the customer scopes it uses."""
    api = tenant.app("central-api").identifier_uris[0]
    return SpaConfig(
        client_id=tenant.app(SPA_CLIENT).client_id,
        authority=f"{settings['DEVSTACK_ENTRA_URL']}/{tenant.id}",
        redirect_uri=settings["DEVSTACK_SPA_URL"] + "/",
        api_url=settings["DEVSTACK_API_URL"] + "/api",
        scopes=[f"{api}/customer.read", f"{api}/customer.readwrite"],
        subscription_key=settings["DEVSTACK_SUBSCRIPTION_KEY"],
    )


def _url(sock: socket.socket) -> str:
    return f"http://localhost:{sock.getsockname()[1]}"


__all__ = ["Ports", "RunningStack", "ensure_material", "start_stack"]
