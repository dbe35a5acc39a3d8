"""The Dataverse client's requests session reads the environment once, when it is built, not on
every request (requests' `trust_env` scans every environment variable twice a request for proxy
settings and looks for ~/.netrc; `make bench` P2): what the environment says still applies. A CA
bundle of its own is loaded once, into the TLS context both clients share, not once per new
connection (a fresh instance's first request, P11), and still decides whom it trusts."""

from __future__ import annotations

import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack.tenant import Tenant
from shared.dataverse.call import Call
from shared.dataverse.client import DataverseClient
from shared.dataverse.errors import BackendUnavailable
from tests.devstack.dataverse_helpers import Tokens

URL = "https://org.crm4.dynamics.com"


def test_a_proxy_for_dataverse_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = DataverseClient(URL)._session
    assert session.proxies["https"] == "http://proxy.internal:3128"
    assert session.trust_env is False  # read once, above, not per request


def test_no_proxy_for_dataverse_host_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", ".dynamics.com")
    assert "https" not in DataverseClient(URL)._session.proxies


def test_the_ca_bundle_of_the_environment_is_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/dev-ca.pem")
    assert DataverseClient(URL)._session.verify == "/etc/dev-ca.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/other-ca.pem")
    assert DataverseClient(URL)._session.verify == "/etc/other-ca.pem"
    monkeypatch.delenv("CURL_CA_BUNDLE")
    assert DataverseClient(URL)._session.verify is True  # the system's (certifi's) CAs


def test_the_environment_is_not_read_again_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    session = DataverseClient(URL)._session
    monkeypatch.setenv("HTTPS_PROXY", "http://late.internal:3128")
    settings = session.merge_environment_settings(
        URL + "/api/data/v9.2/contacts", {}, None, None, None
    )
    assert settings["proxies"].get("https") != "http://late.internal:3128"


def test_the_async_client_goes_through_the_same_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert DataverseClient(URL)._proxy == "http://proxy.internal:3128"
    monkeypatch.delenv("HTTPS_PROXY")
    assert DataverseClient(URL)._proxy is None


def _call(entra: Any, tenant: Tenant, dataverse: Any) -> Call:
    token = Tokens(entra.app.state.entra, tenant, dataverse.url).user("alice")
    return Call(
        token=lambda stale=None: token,
        correlation_id=str(uuid.uuid4()),
        deadline=time.monotonic() + 30,
    )


def test_a_ca_bundle_is_loaded_once_for_every_connection_of_the_sync_pool(
    entra: Any, tenant: Tenant, dataverse: Any, ca_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_bundle))
    client = DataverseClient(dataverse.url)
    call = _call(entra, tenant, dataverse)  # before counting: it may fetch over TLS itself
    loaded: list[tuple[ssl.SSLContext, str | None]] = []
    real = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, cafile: Any = None, *args: Any, **kwargs: Any) -> None:
        loaded.append((self, cafile))  # the emulators' own clients load bundles too
        real(self, cafile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    for _ in range(3):  # a new connection each time: the pool is emptied between them
        answer = client.request("GET", "contacts", call, query="$top=1")
        assert answer.status == 200
        client._adapter.poolmanager.clear()
    ours = client._sync_tls_context()
    assert [cafile for context, cafile in loaded if context is ours] == [str(ca_bundle)]
    assert client._sync_tls_context().get_ca_certs()
    client.close()


def test_the_sync_client_still_refuses_a_server_its_bundle_does_not_trust(
    entra: Any, tenant: Tenant, dataverse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # public CAs only: not the dev CA
    client = DataverseClient(dataverse.url)
    with pytest.raises(BackendUnavailable):
        client.request("GET", "contacts", _call(entra, tenant, dataverse), query="$top=1")
    client.close()
