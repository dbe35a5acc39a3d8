"""The API's credential modes end to end (issue 13): the session's stack runs the API in
managed-identity mode, as `make run` does, so the whole contract suite runs in it; here, what
that mode adds (the federated assertion, its refresh, its failures and their logs) and a smaller
run of the secret and certificate modes on the same stack.

Each test gets a runtime of its own (`own`): MSAL's clients, the managed-identity credential and
its token cache are built afresh from the environment, as on a new Functions instance.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from devstack.config import API_IDENTITY, read_env
from shared import runtime
from shared.downstream.errors import TokenServiceUnavailable
from tests.api.conftest import Api
from tests.api.contract_helpers import assert_error, fresh_token

LIST = "/api/customers?pageSize=1"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"

Restart = Callable[..., None]


@pytest.fixture
def own(api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[Restart]:
    """`own(NAME=value, ...)`: app settings changed (None removes one) and a cold runtime;
    the stack's settings and a fresh runtime again afterwards."""

    def restart(**settings: str | None) -> None:
        for name, value in settings.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        runtime.reset()

    restart()
    yield restart
    monkeypatch.undo()
    runtime.reset()


@pytest.fixture
def identity(api: Api) -> Iterator[str]:
    """The managed-identity endpoint's URL; its faults, log and lifetime reset afterwards."""
    url = api.stack.identity_url
    requests.post(f"{url}/_emulator/reset", timeout=5)
    yield url
    requests.post(f"{url}/_emulator/reset", timeout=5)


@pytest.fixture
def fics(api: Api) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    """Replace central-api's federated credentials; they are put back afterwards."""
    path = "apps/central-api/federated-credentials"
    saved = api.entra_control("GET", path)

    def replace(records: list[dict[str, Any]]) -> None:
        api.entra_control("PUT", path, json={"federated_credentials": records})

    yield replace
    api.entra_control("PUT", path, json=saved)


def identity_requests(url: str) -> list[dict[str, Any]]:
    log = requests.get(f"{url}/_emulator/requests", timeout=5).json()["requests"]
    return [r for r in log if r["path"] == "/msi/token"]


def our_token_requests(api: Api, since: int) -> list[dict[str, Any]]:
    api_id = api.stack.tenant.app("central-api").client_id
    return [
        r
        for r in api.entra_requests(since)
        if r["path"].endswith("/token") and (r["caller"] or {}).get("appid") == api_id
    ]


def the_fic(api: Api, **changes: Any) -> dict[str, Any]:
    mi = api.stack.tenant.managed_identity(API_IDENTITY)
    record = {
        "name": "central-api-identity",
        "issuer": "{issuer}",
        "subject": mi.principal_id,
        "audiences": [EXCHANGE_AUDIENCE],
    }
    return {**record, **changes}


def test_make_run_is_secretless(api: Api) -> None:
    settings = api.stack.settings
    assert settings["API_CLIENT_CREDENTIAL"] == "managed-identity"
    assert "API_CLIENT_SECRET" not in settings
    assert "API_CLIENT_CERTIFICATE_PATH" not in settings
    text = (api.stack.material.folder / "stack.env").read_text()
    assert read_env(api.stack.material.folder / "stack.env") == settings
    material = api.stack.material
    for app in material.secrets["client_secrets"]:
        assert material.client_secret(app) not in text, app
    for user in material.secrets["passwords"]:
        assert material.password(user) not in text, user
    assert "PRIVATE KEY" not in text
    assert not any(str(path) in text for path in material.client_certs.values())


def test_the_api_authenticates_with_its_managed_identity(
    api: Api, own: Restart, identity: str, caplog: pytest.LogCaptureFixture
) -> None:
    user, app = fresh_token(api, "alice"), api.app_token("dealer-sync")
    since, _ = api.marks()
    with caplog.at_level(logging.DEBUG):  # every library's records, the assertion's path too
        assert api.call("GET", LIST, token=user).status_code == 200
        assert api.call("GET", "/api/vehicles?pageSize=1", token=app).status_code == 200
    ours = our_token_requests(api, since)
    assert {r["grant_type"] for r in ours} == {
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "client_credentials",
    }
    assert {r["client_auth"] for r in ours} == {"federated"}
    asked = identity_requests(identity)
    # One managed-identity token serves both MSAL clients (OBO and client credentials).
    assert len(asked) == 1
    mi = api.stack.tenant.managed_identity(API_IDENTITY)
    assert f"client_id={mi.client_id}" in asked[0]["query"]
    assert "api-version=2019-08-01" in asked[0]["query"]
    assert "resource=api://AzureADTokenExchange" in asked[0]["query"]
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert "eyJ" not in logged, "a token reached the logs"
    assert api.stack.settings["IDENTITY_HEADER"] not in logged


def test_the_assertion_is_fetched_again_before_it_expires(
    api: Api, own: Restart, identity: str
) -> None:
    # A managed-identity token with under 5 minutes left counts as expired: each exchange
    # then asks the endpoint again rather than presenting a token about to run out.
    requests.put(
        f"{identity}/_emulator/lifetime", json={"seconds": 240}, timeout=5
    ).raise_for_status()
    for _ in range(2):
        assert api.call("GET", LIST, token=fresh_token(api, "alice")).status_code == 200
    assert len(identity_requests(identity)) == 2


def test_a_long_lived_assertion_is_reused(api: Api, own: Restart, identity: str) -> None:
    for _ in range(2):
        assert api.call("GET", LIST, token=fresh_token(api, "alice")).status_code == 200
    assert len(identity_requests(identity)) == 1


@pytest.mark.parametrize(
    ("records", "entra_code", "hint"),
    [
        (lambda api: [], 70021, "az ad app federated-credential create"),
        (lambda api: [the_fic(api, subject=str(uuid.uuid4()))], 700213, "subject"),
        (
            lambda api: [the_fic(api, issuer="https://token.actions.githubusercontent.com")],
            700211,
            "issuer",
        ),
        (lambda api: [the_fic(api, audiences=["api://SomethingElse"])], 700212, "audience"),
    ],
    ids=["no-fic", "foreign-subject", "foreign-issuer", "other-audience"],
)
def test_a_missing_or_foreign_fic_is_credential_rejected_with_what_to_fix(
    api: Api,
    own: Restart,
    fics: Callable[[list[dict[str, Any]]], None],
    caplog: pytest.LogCaptureFixture,
    records: Callable[[Api], list[dict[str, Any]]],
    entra_code: int,
    hint: str,
) -> None:
    fics(records(api))
    since, _ = api.marks()
    with caplog.at_level(logging.INFO, logger="central_api"):
        response = api.call("GET", LIST, token=fresh_token(api, "alice"))
    assert_error(response, 500, "credential_rejected")
    assert [r["status"] for r in our_token_requests(api, since)] in ([400], [401])
    cid = response.headers["x-correlation-id"]
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR and cid in repr(r.__dict__)]
    assert loud, "a rejected credential must be logged loudly"
    facts = loud[0].__dict__
    assert facts["entra_error"] == entra_code
    assert hint in facts["reason"]


def test_an_identity_not_assigned_to_the_app_is_credential_rejected(
    api: Api, own: Restart, identity: str, caplog: pytest.LogCaptureFixture
) -> None:
    own(API_MANAGED_IDENTITY_CLIENT_ID=str(uuid.uuid4()))
    with caplog.at_level(logging.INFO, logger="central_api"):
        response = api.call("GET", LIST, token=fresh_token(api, "alice"))
    assert_error(response, 500, "credential_rejected")
    assert [r["status"] for r in identity_requests(identity)] == [400]
    reasons = [getattr(r, "reason", "") for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("API_MANAGED_IDENTITY_CLIENT_ID" in r for r in reasons)


@pytest.mark.parametrize(
    "rule",
    [
        {"action": "reset"},
        {"status": 500, "body": {"statusCode": 500, "message": "down"}},
        {"status": 503},
    ],
    ids=["reset", "500", "503"],
)
def test_the_identity_endpoint_down_is_503(
    api: Api, own: Restart, identity: str, rule: dict[str, Any]
) -> None:
    requests.post(
        f"{identity}/_emulator/faults", json={"path": "/msi/token", **rule}, timeout=5
    ).raise_for_status()
    since, _ = api.marks()
    response = api.call("GET", LIST, token=fresh_token(api, "alice"))
    assert_error(response, 503, "token_service_unavailable")
    assert our_token_requests(api, since) == [], "no assertion, no call to Entra"


@pytest.mark.parametrize("mode", ["secret", "certificate"])
def test_the_secret_and_certificate_modes_still_work(api: Api, own: Restart, mode: str) -> None:
    material = api.stack.material
    own(
        API_CLIENT_CREDENTIAL=mode,
        API_MANAGED_IDENTITY_CLIENT_ID=None,
        API_CLIENT_SECRET=material.client_secret("central-api") if mode == "secret" else None,
        API_CLIENT_CERTIFICATE_PATH=(
            str(material.client_certs["central-api"]) if mode == "certificate" else None
        ),
    )
    since, _ = api.marks()
    assert api.call("GET", LIST, token=fresh_token(api, "alice")).status_code == 200
    assert api.call("GET", "/api/vehicles?pageSize=1", app="dealer-sync").status_code == 200
    ours = our_token_requests(api, since)
    assert len(ours) == 2
    assert {r["client_auth"] for r in ours} == {mode}


def test_a_slow_identity_endpoint_is_a_timeout(api: Api, own: Restart, identity: str) -> None:
    own(DOWNSTREAM_TIMEOUT_SECONDS="1")
    requests.post(
        f"{identity}/_emulator/faults", json={"path": "/msi/token", "delay_ms": 3000}, timeout=5
    ).raise_for_status()
    response = api.call("GET", LIST, token=fresh_token(api, "alice"))
    assert_error(response, 504, "token_service_timeout")


def test_the_warm_up_fetches_the_assertion_before_the_first_exchange(
    api: Api, own: Restart, identity: str
) -> None:
    # What the start-up warm-up does (shared/warmup.py): the managed-identity token is fetched
    # before any caller comes, so the first On-Behalf-Of exchange does not fetch it in series.
    runtime.runtime().downstream.prime_credential()
    assert [r["status"] for r in identity_requests(identity)] == [200]
    since, _ = api.marks()
    assert our_token_requests(api, since) == [], "priming asks Entra for nothing"
    assert api.call("GET", LIST, token=fresh_token(api, "alice")).status_code == 200
    assert len(identity_requests(identity)) == 1, "the first exchange used the primed token"
    assert [r["client_auth"] for r in our_token_requests(api, since)] == ["federated"]


def test_a_failed_warm_up_fetch_leaves_the_first_request_to_ask_again(
    api: Api, own: Restart, identity: str
) -> None:
    requests.post(
        f"{identity}/_emulator/faults",
        json={"path": "/msi/token", "status": 503, "count": 1},
        timeout=5,
    ).raise_for_status()
    with pytest.raises(TokenServiceUnavailable):
        runtime.runtime().downstream.prime_credential()
    assert api.call("GET", LIST, token=fresh_token(api, "alice")).status_code == 200
    assert [r["status"] for r in identity_requests(identity)] == [503, 200]


def test_priming_asks_nothing_in_the_secret_and_certificate_modes(
    api: Api, own: Restart, identity: str
) -> None:
    material = api.stack.material
    for mode, setting, value in (
        ("secret", "API_CLIENT_SECRET", material.client_secret("central-api")),
        ("certificate", "API_CLIENT_CERTIFICATE_PATH", str(material.client_certs["central-api"])),
    ):
        own(API_CLIENT_CREDENTIAL=mode, API_MANAGED_IDENTITY_CLIENT_ID=None, **{setting: value})
        since, _ = api.marks()
        runtime.runtime().downstream.prime_credential()
        assert identity_requests(identity) == []
        assert our_token_requests(api, since) == []
        own(**{setting: None})
