"""The warm-up prepares the async Dataverse client (shared/warmup.py, issue 12's P11): aiohttp
imported and the TLS context with its CA bundle loaded before the first request, which then
builds its session on that context instead of loading the bundle in series; a failure to
prepare never fails the warm-up."""

from __future__ import annotations

import ssl
import time
from types import SimpleNamespace
from typing import Any

import pytest

from shared import warmup
from shared.dataverse import client as client_module
from shared.dataverse.client import DataverseClient


class Prepared:
    def __init__(self, fails: bool = False) -> None:
        self.calls = 0
        self.fails = fails

    def prepare(self) -> None:
        self.calls += 1
        if self.fails:
            raise OSError("the CA bundle is unreadable")


def fake_runtime(dataverse: Prepared) -> Any:
    return SimpleNamespace(
        keys=SimpleNamespace(prefetch=lambda: None),
        downstream=SimpleNamespace(prepare=lambda: None),
        dataverse=dataverse,
        store=None,
    )


def test_the_warm_up_prepares_the_async_dataverse_client(monkeypatch: pytest.MonkeyPatch) -> None:
    dataverse = Prepared()
    monkeypatch.setattr("shared.runtime.runtime", lambda early=None: fake_runtime(dataverse))
    warmup.warm()
    assert dataverse.calls == 1


def test_the_dataverse_client_is_prepared_after_the_keys_and_msal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done: list[str] = []
    seen: list[list[str]] = []

    def slow(name: str) -> Any:
        def step() -> None:
            time.sleep(0.05)
            done.append(name)

        return step

    rt = SimpleNamespace(
        keys=SimpleNamespace(prefetch=slow("keys")),
        downstream=SimpleNamespace(prepare=slow("msal")),
        dataverse=SimpleNamespace(prepare=lambda: seen.append(sorted(done))),
        store=None,
    )
    monkeypatch.setattr("shared.runtime.runtime", lambda early=None: rt)
    warmup.warm()
    assert seen == [["keys", "msal"]]


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
