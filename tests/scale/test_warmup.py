"""The start-up warm-up (shared/warmup.py) end to end: a fresh API instance, its own process
started as Azure starts one, fetches the signing keys and MSAL's discovery document before any
request reaches it, and its first request then fetches none of them itself.

Without the warm-up the instance asks Entra nothing until its first request, which then fetches
discovery, keys and MSAL's discovery in its own time (what `make bench`'s P11 measures)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from tests.api.conftest import Api
from tests.scale.conftest import StartInstances

PATH = "/api/customers?pageSize=1"


def metadata(entries: list[dict[str, Any]]) -> list[str]:
    """What the entries fetched of discovery and keys, as "v2", "v1" and "keys", in order."""
    kinds = []
    for entry in entries:
        path = str(entry["path"])
        if entry["method"] != "GET":
            continue
        if path.endswith("/v2.0/.well-known/openid-configuration"):
            kinds.append("v2")
        elif path.endswith("/.well-known/openid-configuration"):
            kinds.append("v1")
        elif path.endswith("/discovery/v2.0/keys"):
            kinds.append("keys")
    return kinds


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.02)


def test_a_fresh_instance_fetches_keys_and_discovery_before_its_first_request(
    instances: StartInstances, api: Api
) -> None:
    # The Dataverse emulator learns Entra's current keys now, so that its own key fetch (it
    # validates Dataverse tokens) cannot land in the log below.
    warmed = api.call("GET", PATH, user="alice")
    assert warmed.status_code == 200, warmed.text
    entra_mark, _ = api.marks()

    (instance,) = instances(1)
    # Keys (v2 and v1 discovery, then the JWKS) and both MSAL clients (a v2 discovery each;
    # the app-mode one last, once no request is being served).
    expected = ["keys", "v1", "v2", "v2", "v2"]
    wait_until(
        lambda: sorted(metadata(api.entra_requests(entra_mark))) == expected,
        "the warm-up's fetches",
    )
    before = api.entra_requests(entra_mark)
    assert [e["status"] for e in before] == [200] * len(before)
    assert not [e for e in before if e["method"] == "POST"]  # no token asked for

    headers = {
        "Authorization": f"Bearer {api.user_token('alice', 'portal')}",
        "Ocp-Apim-Subscription-Key": api.subscription_key,
    }
    first = requests.get(instance.url + PATH, headers=headers, timeout=60)
    assert first.status_code == 200, first.text
    # The first request fetched no discovery document and no keys of its own.
    assert metadata(api.entra_requests(before[-1]["seq"])) == []
