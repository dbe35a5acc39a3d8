"""An emergency key rollover at Entra in managed-identity mode (issue 13): the managed-identity
token the API holds as its client assertion was signed with the key Entra retired, so Entra
refuses it (AADSTS700027). The API drops it, gets a new one from the managed-identity endpoint
and asks once more, rather than answering 500 `credential_rejected` until the old token expires
(a day, for App Service's tokens)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.api.conftest import Api
from tests.api.contract_helpers import CLIENT_CREDENTIALS
from tests.faults.conftest import Restart
from tests.faults.test_review_stale_tokens import VEHICLES, Rollover, call, grants


@pytest.fixture
def rollover(faults: Api) -> Iterator[Rollover]:
    keys = Rollover(faults)
    yield keys
    keys.restore()


def identity_requests(api: Api) -> int:
    url = api.stack.identity_url
    log = requests.get(f"{url}/_emulator/requests", timeout=5).json()["requests"]
    return len([r for r in log if r["path"] == "/msi/token"])


def test_an_assertion_signed_by_a_retired_key_is_replaced_once(
    fresh: Restart, faults: Api, rollover: Rollover
) -> None:
    assert faults.stack.settings["API_CLIENT_CREDENTIAL"] == "managed-identity"
    fresh()
    old_key = rollover.rotate()
    assert call(faults, VEHICLES, app="dealer-sync").status_code == 200  # assertion by old_key
    asked = identity_requests(faults)

    rollover.rotate()
    rollover.retire(old_key)
    entra, _ = faults.marks()
    answer = call(faults, VEHICLES, app="dealer-sync")

    assert answer.status_code == 200, answer.text
    assert [g["status"] for g in grants(faults, entra, CLIENT_CREDENTIALS)] == [401, 200]
    assert identity_requests(faults) == asked + 1
