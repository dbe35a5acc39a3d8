"""Shared fixtures: the dev stack's parts, started once per test session on free ports.

`entra` and `dataverse` are the two emulators over real HTTPS with key material in a temporary
folder; `stack` is the whole stack as `make run` starts it (`devstack.stack.start_stack`), with
the API host in front; `valkey` is a real Redis-protocol server (`valkey.url`).

The stack's API hosts run as the README tells operators to deploy them (`STACK_HOST_SETTINGS`,
`devstack.host.RECOMMENDED`): the recommended per-instance HTTP concurrency, not Flex's default
of 1 for Python apps, and PYTHON_THREADPOOL_THREAD_COUNT=32, not the worker's default of
min(32, CPUs + 4), which is 6 on a 2-core machine. Below MAX_CONCURRENT_REQUESTS_PER_CALLER (8),
one throttled caller holds every thread of a sync function and the per-caller cap protects no
one (tests/faults/test_review_fairness.py: the victim waited 24 s with 6 threads); the tests
check the API as it is meant to run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.config import Ports, write_ca_bundle
from devstack.host import RECOMMENDED
from devstack.pki import Material, ensure_material
from devstack.server import ServerThread
from devstack.stack import RunningStack, start_stack
from devstack.tenant import Tenant, load_tenant
from devstack.valkey import ValkeyServer
from shared import health, runtime, warmup

# Over the environment, for every API host of the session's stack (and, through
# `stack.settings`, for the instances tests/scale starts): the README's recommendation.
STACK_HOST_SETTINGS = RECOMMENDED.environment()


@dataclass
class Emulator:
    url: str
    app: Any  # the Starlette app; `app.state` holds the emulator's in-process handle
    server: ServerThread


@pytest.fixture(scope="session")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    return ensure_material(tmp_path_factory.mktemp("devstack"), load_tenant())


@pytest.fixture(scope="session", autouse=True)
def ca_bundle(material: Material) -> Iterator[Path]:
    """Trust the dev CA the way the dev stack does: through REQUESTS_CA_BUNDLE.

    requests lets that variable override a session's own `verify`, so setting it is the one
    way every client in the process (requests, MSAL, azure-identity) agrees on the CA.
    """
    bundle = write_ca_bundle(material)
    saved = {k: os.environ.get(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
    os.environ.pop("CURL_CA_BUNDLE", None)
    yield bundle
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def _servers(material: Material) -> Iterator[tuple[ServerThread, ServerThread]]:
    tls = (material.tls_cert, material.tls_key)
    entra = ServerThread(name="entra-emulator", tls=tls)
    dataverse = ServerThread(name="dataverse-emulator", tls=tls)
    yield entra, dataverse
    dataverse.stop()
    entra.stop()


@pytest.fixture(scope="session")
def tenant(_servers: tuple[ServerThread, ServerThread]) -> Tenant:
    return load_tenant(dataverse_url=_servers[1].url)


@pytest.fixture(scope="session")
def entra(
    _servers: tuple[ServerThread, ServerThread], tenant: Tenant, material: Material
) -> Emulator:
    from devstack.entra import create_app

    server = _servers[0]
    app = create_app(tenant, material, base_url=server.url)
    server.start(app)
    return Emulator(server.url, app, server)


@pytest.fixture(scope="session")
def dataverse(
    _servers: tuple[ServerThread, ServerThread],
    tenant: Tenant,
    material: Material,
    entra: Emulator,
    ca_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Emulator:
    from devstack.dataverse import create_app

    server = _servers[1]
    app = create_app(
        tenant,
        material,
        base_url=server.url,
        entra_url=entra.url,
        db_path=tmp_path_factory.mktemp("dataverse") / "dataverse.sqlite",
        ca_bundle=ca_bundle,
    )
    server.start(app)
    return Emulator(server.url, app, server)


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """A running valkey-server for the session: `valkey.url` (redis://, with its password).

    Shared by every test that asks for it, so tests keep to their own keys (a prefix of their
    own). Tests that stop, pause or fill a server should start their own `ValkeyServer` (a
    context manager) rather than disturb this one; `stop()`/`start()` are there all the same,
    and `start()` brings it back on the same port and password.
    """
    server = ValkeyServer(tmp_path_factory.mktemp("valkey")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(
    material: Material, ca_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    """Everything, as `make run` starts it, including the API host serving function_app.py.

    It shares the session's key material (one CA), not the `entra`/`dataverse` servers.
    """
    db_path = tmp_path_factory.mktemp("stack") / "dataverse.sqlite"
    running = start_stack(
        material.folder,
        ports=Ports(0, 0, 0, 0, 0, 0),
        db_path=db_path,
        host_settings=STACK_HOST_SETTINGS,
    )
    # The host imported function_app, which started the warm-up: let it end, so that what it
    # fetches (keys, discovery, the managed-identity token) lands in no test's request counts.
    assert warmup.wait(60), "the start-up warm-up did not end"
    runtime.reset()  # the API in this process reads the settings the stack just exported
    health.forget()
    yield running
    runtime.reset()  # first: the API's async client closes on the host's event loop
    running.stop()
    health.forget()


@pytest.fixture
def http(ca_bundle: Path) -> Iterator[requests.Session]:
    """A plain HTTP client that trusts the dev CA."""
    with requests.Session() as session:
        session.verify = str(ca_bundle)
        yield session
