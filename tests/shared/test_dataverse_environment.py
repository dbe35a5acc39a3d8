"""The Dataverse client's requests session reads the environment once, when it is built, not on
every request (requests' `trust_env` scans every environment variable twice a request for proxy
settings and looks for ~/.netrc; `make bench` P2): what the environment says still applies."""

from __future__ import annotations

import pytest

from shared.dataverse.client import DataverseClient

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
