"""Outside review, item 7: stale downstream tokens (docs/security.md, "7. Stale downstream tokens").

When Dataverse refuses a cached Dataverse token with 401 (an emergency key rollover at Entra, a
revocation), the API used to keep the token and answer 502 `backend_auth_failed` to everyone
who used it, for the rest of its lifetime (an hour). Now the refused token is dropped, from the
On-Behalf-Of cache or from MSAL's cache of the API's own token, and the call is sent once more
with a new token; a second 401 is still a 502.

The application token is broken the way it would break in production: the Entra emulator rolls
its signing key over (add, promote, retire the key that signed the cached token) and the
Dataverse emulator is told to fetch the new key set. The user's token is broken with one
injected 401. Every test runs on a runtime of its own (`fresh`), so the caches start empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from shared.downstream.cache import CachedToken, Lookup, TokenCache
from tests.api.conftest import Api
from tests.api.contract_helpers import CLIENT_CREDENTIALS, OBO_GRANT, client_id, oid
from tests.faults.conftest import DATAVERSE_PATH, KeyRing, Restart, add_fault, assert_error, kid_of

VEHICLES = "/api/vehicles?pageSize=1"
CUSTOMERS = "/api/customers?pageSize=1"


class Rollover(KeyRing):
    """Entra's signing keys, driven through the control planes, with the Dataverse emulator
    told to fetch the key set after each change. The emulator's original keys stay published
    throughout (the demo tokens the tests send are signed with them); only keys added here are
    retired, and the original signing key is restored afterwards."""

    def __init__(self, api: Api) -> None:
        super().__init__(api)
        # The session's dealer-sync token is fetched on first use: fetch it now, signed with
        # the original key, not with a key this test retires.
        assert kid_of(api.app_token("dealer-sync")) == self.original

    def rotate(self) -> str:
        kid = super().rotate()
        self.dataverse_learns_the_keys()
        return kid

    def retire(self, kid: str) -> None:
        super().retire(kid)
        self.dataverse_learns_the_keys()

    def dataverse_learns_the_keys(self) -> list[str]:
        return list(self.api.dataverse_control("POST", "keys/refresh")["kids"])

    def restore(self) -> None:
        super().restore()
        self.dataverse_learns_the_keys()


@pytest.fixture
def rollover(faults: Api) -> Iterator[Rollover]:
    keys = Rollover(faults)
    yield keys
    keys.restore()


def call(api: Api, path: str, **caller: Any) -> requests.Response:
    headers = {"x-correlation-id": f"stale-{uuid.uuid4()}"}
    return api.call("GET", path, headers=headers, **caller)


def sent(api: Api, response: requests.Response, since: int) -> list[dict[str, Any]]:
    """What Dataverse received for this response's request."""
    cid = response.headers["x-correlation-id"]
    return [r for r in api.dataverse_requests(since) if r["correlation_id"] == cid]


def grants(api: Api, since: int, grant_type: str) -> list[dict[str, Any]]:
    return [r for r in api.entra_requests(since) if r["grant_type"] == grant_type]


# --- the API's own token (client credentials, MSAL's cache) -----------------------------------


def test_an_app_token_signed_by_a_retired_key_is_dropped_and_fetched_again(
    fresh: Restart, faults: Api, rollover: Rollover
) -> None:
    fresh()
    old_key = rollover.rotate()
    first = call(faults, VEHICLES, app="dealer-sync")  # the API's token, signed by `old_key`
    assert first.status_code == 200, first.text

    rollover.rotate()
    rollover.retire(old_key)  # Dataverse no longer trusts the cached token
    entra, dataverse = faults.marks()
    answer = call(faults, VEHICLES, app="dealer-sync")

    assert answer.status_code == 200, answer.text
    # One new token, no more. In managed-identity mode the API's cached assertion was signed by
    # the retired key too: Entra refuses it once (700027) and the API asks again with a new one.
    new_tokens = [g for g in grants(faults, entra, CLIENT_CREDENTIALS) if g["status"] == 200]
    assert len(new_tokens) == 1
    attempts = sent(faults, answer, dataverse)
    assert [a["status"] for a in attempts] == [401, 200]
    api_app = client_id(faults, "central-api")
    assert attempts[1]["caller"]["appid"] == api_app

    entra, _ = faults.marks()
    assert call(faults, VEHICLES, app="dealer-sync").status_code == 200
    assert grants(faults, entra, CLIENT_CREDENTIALS) == []  # the new token is cached


# --- the user's token (On-Behalf-Of, our own cache) --------------------------------------------


def test_a_refused_obo_token_is_dropped_and_exchanged_again_once(
    fresh: Restart, faults: Api
) -> None:
    runtime = fresh()
    assert call(faults, CUSTOMERS, user="alice").status_code == 200
    assert runtime.downstream.cached_users == 1
    fault = add_fault(faults, "dataverse", path=DATAVERSE_PATH, status=401, count=1)
    entra, dataverse = faults.marks()

    answer = call(faults, CUSTOMERS, user="alice")
    assert answer.status_code == 200, answer.text
    exchanges = grants(faults, entra, OBO_GRANT)
    assert len(exchanges) == 1
    assert exchanges[0]["caller"]["oid"] == oid(faults, "alice")
    attempts = sent(faults, answer, dataverse)
    assert [(a["status"], a["fault"]) for a in attempts] == [(401, fault), (200, None)]
    assert runtime.downstream.cached_users == 1  # the new token, in place of the old

    entra, _ = faults.marks()
    assert call(faults, CUSTOMERS, user="alice").status_code == 200
    assert grants(faults, entra, OBO_GRANT) == []


# --- refused again: 502 in both modes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "caller", "grant_type"),
    [
        pytest.param(VEHICLES, {"app": "dealer-sync"}, CLIENT_CREDENTIALS, id="app-token"),
        pytest.param(CUSTOMERS, {"user": "alice"}, OBO_GRANT, id="obo-token"),
    ],
)
def test_a_token_refused_twice_is_502(
    fresh: Restart, faults: Api, path: str, caller: dict[str, str], grant_type: str
) -> None:
    fresh()
    assert call(faults, path, **caller).status_code == 200
    add_fault(faults, "dataverse", path=DATAVERSE_PATH, status=401, count=2)
    entra, dataverse = faults.marks()

    answer = call(faults, path, **caller)
    assert_error(answer, 502, "backend_auth_failed")
    assert [a["status"] for a in sent(faults, answer, dataverse)] == [401, 401]
    assert len(grants(faults, entra, grant_type)) == 1


# --- in process: only the refused token leaves the cache ----------------------------------------


def test_discard_drops_only_the_token_that_was_refused() -> None:
    cache = TokenCache(10, clock=lambda: 1000.0)
    key, missing = Lookup.of("incoming", ["scope"]), Lookup.of("other", ["scope"])
    cache.put(key, CachedToken("old", 4600.0))
    cache.discard(key, "old")
    assert cache.get(key) is None
    # A request that arrives with the old token after another has already replaced it keeps
    # the new one: concurrent 401s cost one new token, not one each.
    cache.put(key, CachedToken("new", 4600.0))
    cache.discard(key, "old")
    assert cache.get(key) == CachedToken("new", 4600.0)
    cache.discard(missing, "old")
    assert len(cache) == 1
