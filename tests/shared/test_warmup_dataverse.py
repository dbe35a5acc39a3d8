"""The warm-up prepares the async Dataverse client (shared/warmup.py, issue 12's P11): aiohttp
imported and the TLS context with its CA bundle loaded before the first request, which then
builds its session on that context instead of loading the bundle in series; a request that comes
while it is under way sends through the sync pool rather than wait for the import; a failure to
prepare never fails the warm-up."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devstack.tenant import Tenant
from shared import warmup
from shared.dataverse import client as client_module
from shared.dataverse.call import Call, DataverseRequest
from shared.dataverse.client import DataverseClient
from tests.devstack.dataverse_helpers import Tokens


class Prepared:
    def __init__(self, fails: bool = False) -> None:
        self.calls = 0
        self.deferred = 0
        self.fails = fails

    def defer(self) -> None:
        self.deferred += 1

    def prepare(self) -> None:
        self.calls += 1
        if self.fails:
            raise OSError("the CA bundle is unreadable")


def fake_runtime(dataverse: Prepared) -> Any:
    return SimpleNamespace(
        keys=SimpleNamespace(prefetch=lambda: None),
        downstream=SimpleNamespace(prepare=lambda app=True: None, prime_credential=lambda: None),
        dataverse=dataverse,
        store=None,
    )


def test_the_warm_up_prepares_the_async_dataverse_client(monkeypatch: pytest.MonkeyPatch) -> None:
    dataverse = Prepared()
    monkeypatch.setattr("shared.runtime.runtime", lambda early=None: fake_runtime(dataverse))
    warmup.warm()
    assert dataverse.deferred == 1
    assert dataverse.calls == 1


def test_the_dataverse_client_is_prepared_after_what_a_first_request_needs_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done: list[str] = []

    def slow(name: str) -> Any:
        def step() -> None:
            time.sleep(0.05)
            done.append(name)

        return step

    def prepare(app: bool = True) -> None:
        slow("msal app" if app else "msal obo")()

    rt = SimpleNamespace(
        keys=SimpleNamespace(prefetch=slow("keys")),
        downstream=SimpleNamespace(prepare=prepare, prime_credential=slow("credential")),
        dataverse=SimpleNamespace(defer=lambda: done.append("deferred"), prepare=slow("aiohttp")),
        store=None,
    )
    monkeypatch.setattr("shared.runtime.runtime", lambda early=None: rt)
    warmup.warm()
    # Deferred first (requests meanwhile go through the sync pool); the keys, the On-Behalf-Of
    # client and the credential side by side; then aiohttp; the app-mode client last.
    assert done[0] == "deferred"
    assert sorted(done[1:4]) == ["credential", "keys", "msal obo"]
    assert done[4:] == ["aiohttp", "msal app"]


def test_the_last_steps_wait_for_a_moment_without_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from shared.inflight import IN_FLIGHT

    prepared = threading.Event()
    dataverse = SimpleNamespace(defer=lambda: None, prepare=prepared.set)
    rt = fake_runtime(dataverse)
    monkeypatch.setattr("shared.runtime.runtime", lambda early=None: rt)
    with IN_FLIGHT:  # a request is being served
        warming = threading.Thread(target=warmup.warm)
        warming.start()
        assert not prepared.wait(0.3)
    assert prepared.wait(5)  # the request is answered: now
    warming.join(5)


def test_under_load_the_last_steps_wait_no_longer_than_their_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.inflight import IN_FLIGHT

    dataverse = Prepared()
    monkeypatch.setattr("shared.runtime.runtime", lambda early=None: fake_runtime(dataverse))
    monkeypatch.setattr(warmup, "QUIET_WAIT_SECONDS", 0.1)
    with IN_FLIGHT:  # requests all the while
        warmup.warm()
    assert dataverse.calls == 1


def test_a_failure_to_prepare_is_logged_and_goes_no_further(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dataverse = Prepared(fails=True)
    monkeypatch.setattr("shared.runtime.runtime", lambda early=None: fake_runtime(dataverse))
    with caplog.at_level("WARNING", logger="central_api.warmup"):
        warmup.warm()
    assert [r.getMessage() for r in caplog.records] == ["warm-up step dataverse failed: OSError"]


def test_prepare_loads_the_ca_bundle_once_for_every_session(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    loaded: list[str | None] = []
    real = ssl.create_default_context

    def counting(*args: Any, cafile: str | None = None, **kwargs: Any) -> ssl.SSLContext:
        if cafile is not None:  # requests and aiohttp build contexts of their own, without
            loaded.append(cafile)
        return real(*args, **kwargs)

    monkeypatch.setattr(client_module.ssl, "create_default_context", counting)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "bundle.pem"))
    client = DataverseClient("https://dataverse.invalid")
    client.prepare()
    assert loaded == [str(tmp_path / "bundle.pem")]
    first = client._tls_context()  # what each loop's session is built on
    assert client._tls_context() is first
    assert loaded == [str(tmp_path / "bundle.pem")]


def _alice_call(entra: Any, tenant: Tenant, dataverse: Any) -> Call:
    token = Tokens(entra.app.state.entra, tenant, dataverse.url).user("alice")
    return Call(
        token=lambda stale=None: token,
        correlation_id=str(uuid.uuid4()),
        deadline=time.monotonic() + 30,
    )


def test_a_request_during_prepare_goes_through_the_sync_pool_and_then_the_async_one(
    entra: Any, tenant: Tenant, dataverse: Any, ca_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_bundle))
    client = DataverseClient(dataverse.url)
    wanted = DataverseRequest("GET", "contacts", "$select=fullname&$top=1", None, None)
    importing = threading.Event()
    release = threading.Event()
    real_tls = client._tls_context

    def slow_tls() -> ssl.SSLContext:  # stands for aiohttp's import, which takes its time
        importing.set()
        release.wait(10)
        return real_tls()

    monkeypatch.setattr(client, "_tls_context", slow_tls)
    preparing = threading.Thread(target=client.prepare)
    preparing.start()
    assert importing.wait(10)

    async def one() -> int:
        answer = await client.request_async(wanted, _alice_call(entra, tenant, dataverse))
        return answer.status

    try:
        # Under way: the request does not wait for it; it goes through the sync pool.
        assert asyncio.run(one()) == 200
        assert client._adapter.poolmanager.pools.keys()  # the sync pool opened a connection
        assert client._async_opened == 0
    finally:
        release.set()
        preparing.join(10)
    monkeypatch.setattr(client, "_tls_context", real_tls)

    async def after() -> int:
        try:
            return await one()
        finally:
            await client._client_async().close()

    assert asyncio.run(after()) == 200  # prepared: the async client from now on
    assert client._async_opened == 1
    client.close()
