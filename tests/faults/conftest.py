"""Fixtures and helpers for the fault tests (security catalog R1-R10), end to end through the
API host with the emulators' fault injection (`devstack.control.Fault`).

- `api` and `faults` are the fixtures of tests/api/conftest.py (`faults` clears every rule).
- `fresh` gives a test a runtime of its own: `shared.runtime.reset()` before (optionally with
  settings changed through the environment, as Azure would deliver them) and after, so that
  cold starts can be staged and nothing a test does to key caches, MSAL's clients or its
  throttling memory outlives the test.
- `mint_user` / `mint_app` sign fresh copies of the demo tokens through the Entra control plane:
  a new `uti` and `iat` make a distinct token (its own validation and OBO cache entries) for the
  same identity.
- `all_at_once` sends one GET per token, every caller released at the same moment.
- `key_ring` rotates Entra's signing keys (`KeyRing`), restoring them afterwards.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
import requests

from shared import runtime
from shared.auth import keys
from shared.auth.keys import SigningKeys
from tests.api import conftest as api_fixtures
from tests.api.conftest import Api
from tests.clock import ManualClock

# The end-to-end fixtures of tests/api, for this folder too.
api = api_fixtures.api
faults = api_fixtures.faults

TOKEN_PATH = "*/oauth2/v2.0/token"
DISCOVERY_PATH = "*/.well-known/openid-configuration"
JWKS_PATH = "*/discovery/v2.0/keys"
DATAVERSE_PATH = "/api/data/v9.2/*"

Restart = Callable[..., runtime.Runtime]


class Clock(ManualClock):
    """A monotonic clock that tests move: the signing keys' refresh budget (one refresh per
    5 minutes) is spent in a step, not in real minutes."""

    def __init__(self) -> None:
        super().__init__(time.monotonic())


@pytest.fixture
def fresh(faults: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[Restart]:
    """Start the API afresh, as a new Functions instance would: `fresh(NAME=value, ...)` sets
    app settings and forgets every service; the next request builds them again (cold).
    `key_clock=` gives the runtime's signing-key cache that clock. The runtime is forgotten
    again afterwards, with the settings the stack exported."""

    def restart(*, key_clock: Clock | None = None, **settings: str) -> runtime.Runtime:
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        if key_clock is not None:
            # `runtime.build` imports the class when it runs, so it builds with this clock.
            monkeypatch.setattr(
                keys, "SigningKeys", functools.partial(SigningKeys, clock=key_clock)
            )
        runtime.reset()
        return runtime.runtime()

    restart()
    yield restart
    monkeypatch.undo()
    runtime.reset()


def add_fault(api: Api, emulator: str, **rule: Any) -> int:
    """Add a fault rule on `emulator` ("entra" or "dataverse"); answers its id."""
    control = api.entra_control if emulator == "entra" else api.dataverse_control
    created = control("POST", "faults", json=rule)
    return int(created["id"])


def settle(api: Api, emulator: str, fault_id: int, *, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until the emulator has logged the request that `fault_id` delayed (the client gave
    up long before), so that it cannot land in a later test's window of the log."""
    logs = api.entra_requests if emulator == "entra" else api.dataverse_requests
    deadline = time.monotonic() + timeout
    while True:
        hit = [r for r in logs(0) if r["fault"] == fault_id]
        if hit:
            return hit[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"fault {fault_id} never logged on {emulator}")
        time.sleep(0.05)


def _resign(api: Api, token: str, **overrides: Any) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    claims.update(uti=uuid.uuid4().hex, iat=now, nbf=now, exp=now + 3600)
    claims.update(overrides)
    return str(api.entra_control("POST", "sign", json={"claims": claims})["token"])


def mint_user(api: Api, user: str, client: str = "portal") -> str:
    """A new token for `user` (same claims as the demo token, fresh `uti`/`iat`)."""
    return _resign(api, api.user_token(user, client))


def mint_app(api: Api, app: str = "dealer-sync") -> str:
    return _resign(api, api.app_token(app))


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


class KeyRing:
    """Entra's key rollover, driven through its control plane: `rotate()` publishes a new key
    and signs with it, `retire(kid)` withdraws one. Afterwards the original key signs again,
    every key the test added and left published is retired, and the session forgets the demo
    tokens those keys signed."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.original = next(
            k["kid"] for k in api.entra_control("GET", "keys")["keys"] if k["active"]
        )
        self.added: list[str] = []
        self.retired: list[str] = []

    def _keys(self, action: str, kid: str) -> None:
        self.api.entra_control("POST", "keys", json={"action": action, "kid": kid})

    def rotate(self) -> str:
        new = str(self.api.entra_control("POST", "keys", json={"action": "add"})["kid"])
        self.added.append(new)
        self._keys("promote", new)
        return new

    def sign_with_original(self) -> None:
        """Sign with the original key again, the new one still published. (The Dataverse
        emulator does not refresh its own key cache, so Dataverse tokens must come from the
        original key.)"""
        self._keys("promote", self.original)

    def retire(self, kid: str) -> None:
        self._keys("retire", kid)
        if kid in self.added:
            self.added.remove(kid)
        self.retired.append(kid)

    def restore(self) -> None:
        self.sign_with_original()
        for kid in self.added:
            self._keys("retire", kid)
        self.api.forget_tokens_signed_by([*self.retired, *self.added])


@pytest.fixture
def key_ring(faults: Api) -> Iterator[KeyRing]:
    ring = KeyRing(faults)
    yield ring
    ring.restore()


def token_posts(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["method"] == "POST" and e["path"].endswith("/token")]


def key_fetches(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e
        for e in entries
        if e["method"] == "GET"
        and (e["path"].endswith("/openid-configuration") or e["path"].endswith("/keys"))
    ]


def assert_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """The contract's error body (statusCode, message, code, correlationId) and headers."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"statusCode", "message", "code", "correlationId"}
    assert body["statusCode"] == status
    assert body["code"] == code
    assert body["correlationId"] == response.headers["x-correlation-id"]
    return body


def retry_after(response: requests.Response) -> int:
    value = response.headers.get("Retry-After")
    assert value is not None
    assert value.isdigit(), f"Retry-After is {value!r}"
    return int(value)


def all_at_once(api: Api, path: str, tokens: list[str]) -> list[requests.Response]:
    """`GET path` once per token, each on its own connection, all released together."""
    gate = threading.Barrier(len(tokens))

    def call(token: str) -> requests.Response:
        with requests.Session() as session:
            session.trust_env = False
            gate.wait(timeout=30)
            return session.get(
                f"{api.url}{path}",
                headers={
                    "Ocp-Apim-Subscription-Key": api.subscription_key,
                    "Authorization": f"Bearer {token}",
                },
                timeout=60,
            )

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        return list(pool.map(call, tokens))
