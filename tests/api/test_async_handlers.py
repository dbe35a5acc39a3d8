"""Issue 12, item 3: the domains' functions are `async def`, run on the worker's event loop; the
same handlers and pipeline also serve as sync functions (`bench.p10_sync_app`), on its threads.

Each app runs in an API host process of its own (`devstack.instances`, as Azure runs an
instance) against the session stack's emulators, with ONE worker thread:

- async: requests waiting on Dataverse at the same time hold no thread, so with one thread four
  of them are at Dataverse at once;
- sync: the one thread serves one request at a time, so Dataverse sees them one after another;
- both answer the same requests alike, errors included (the same handlers, the same pipeline).

Overlap is read from the Dataverse emulator's log (when each request arrived and how long it
took), with every read slowed by a fault rule so that the two cases are far apart; nothing is
asserted about how fast anything is.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from devstack.config import ROOT
from devstack.instances import HostGroup, Instance, child_environment, listen
from tests.api.conftest import Api
from tests.faults.conftest import add_fault

SLOW_MS = 1500  # each slowed Dataverse read: far longer than any scheduling hiccup
AT_ONCE = 4
CUSTOMERS = "/api/customers"


@pytest.fixture(scope="module")
def hosts(api: Api) -> Iterator[dict[str, Instance]]:
    """One API host per app, each with one worker thread and room for `AT_ONCE` requests."""
    env = child_environment(
        os.environ,
        api.stack.settings,
        {
            "PYTHON_THREADPOOL_THREAD_COUNT": "1",
            "DEVSTACK_HTTP_CONCURRENCY": str(AT_ONCE),
            "MAX_CONCURRENT_REQUESTS_PER_CALLER": "0",
        },
    )
    apps = {"async": "function_app", "sync": "bench.p10_sync_app"}
    started: dict[str, Instance] = {}
    groups: list[HostGroup] = []
    try:
        for kind, module in apps.items():
            group = HostGroup.start(
                [(f"{kind}-host", listen(f"{kind}-host", 0))], env=env, function_app=module
            )
            groups.append(group)
            started[kind] = group.instances[0]
        yield started
    finally:
        for group in groups:
            group.stop()


def call(
    api: Api, instance: Instance, method: str, path: str, user: str = "alice", **kwargs: Any
) -> requests.Response:
    headers = {
        "Authorization": f"Bearer {api.user_token(user)}",
        "Ocp-Apim-Subscription-Key": api.subscription_key,
        **kwargs.pop("headers", {}),
    }
    with requests.Session() as http:
        http.trust_env = False
        return http.request(method, instance.url + path, headers=headers, timeout=60, **kwargs)


_KINDS = """
import importlib, inspect, json, sys
app = importlib.import_module(sys.argv[1]).app
print(json.dumps({
    f.get_function_name(): inspect.iscoroutinefunction(f.get_user_function())
    for f in app.get_functions()
    if f.get_function_name().startswith(("customers_", "cases_", "vehicles_"))
}))
"""


def _kinds(module: str) -> dict[str, bool]:
    """Each domain function of `module`'s app: async or not (a fresh interpreter per app, as
    the worker imports one app per process)."""
    done = subprocess.run(
        [sys.executable, "-c", _KINDS, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    kinds: dict[str, bool] = json.loads(done.stdout)
    return kinds


def test_the_domain_functions_are_async_and_the_sync_app_is_not() -> None:
    served = _kinds("function_app")
    assert len(served) == 12
    assert all(served.values())
    assert _kinds("bench.p10_sync_app") == dict.fromkeys(served, False)


def _intervals(api: Api, since: int, marker: str) -> list[tuple[float, float]]:
    """(arrived, answered) of the Dataverse reads whose correlation id starts with `marker`."""
    found = []
    for entry in api.dataverse_requests(since):
        if str(entry.get("correlation_id") or "").startswith(marker):
            answered = float(entry["time"])
            found.append((answered - entry["duration_ms"] / 1000, answered))
    return sorted(found)


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_one_thread_overlaps_dataverse_calls_only_for_async_functions(
    faults: Api, hosts: dict[str, Instance], kind: str
) -> None:
    call(faults, hosts[kind], "GET", f"{CUSTOMERS}?pageSize=1").raise_for_status()  # warm
    marker = uuid.uuid4().hex[:12]
    add_fault(faults, "dataverse", path="/api/data/v9.2/contacts*", delay_ms=SLOW_MS)
    _, since = faults.marks()
    together = threading.Barrier(AT_ONCE)

    def one(n: int) -> int:
        together.wait()
        cid = f"{marker}-{n:04d}"
        path = f"{CUSTOMERS}?pageSize=1"
        return call(faults, hosts[kind], "GET", path, headers={"x-correlation-id": cid}).status_code

    with ThreadPoolExecutor(AT_ONCE) as pool:
        assert list(pool.map(one, range(AT_ONCE))) == [200] * AT_ONCE
    spans = _intervals(faults, since, marker)
    assert len(spans) == AT_ONCE
    if kind == "async":
        # All four were at Dataverse at one moment: the last arrived before the first answer.
        assert max(arrived for arrived, _ in spans) < min(answered for _, answered in spans)
    else:
        # One after another: each arrived once the one before had been answered.
        for (_, answered), (arrived, _) in itertools.pairwise(spans):
            assert arrived >= answered - 0.05


def _shape(response: requests.Response) -> tuple[int, Any]:
    """Status and body, without what differs by request: the correlation id, and the page
    token (sealed with a nonce of its own each time) of which only the presence counts."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "correlationId"}
        if "nextPageToken" in body:
            body["nextPageToken"] = body["nextPageToken"] is not None
    return response.status_code, body


def test_sync_and_async_functions_answer_alike(api: Api, hosts: dict[str, Instance]) -> None:
    alices = {c["id"] for c in call(api, hosts["async"], "GET", CUSTOMERS).json()["items"]}
    everyone = call(api, hosts["async"], "GET", f"{CUSTOMERS}?pageSize=200", user="bob").json()
    not_hers = next(c["id"] for c in everyone["items"] if c["id"] not in alices)
    missing = str(uuid.uuid4())
    cases = [
        ("alice", "GET", f"{CUSTOMERS}?pageSize=3", {}),
        ("alice", "GET", f"{CUSTOMERS}?pageSize=2&q=an", {}),
        ("alice", "GET", f"{CUSTOMERS}/{sorted(alices)[0]}", {}),
        ("alice", "GET", f"{CUSTOMERS}/{missing}", {}),  # 404 from Dataverse, mapped
        ("alice", "GET", f"{CUSTOMERS}?pageSize=0", {}),  # 400 before any call
        # Refused by Dataverse for this record, then one read decides: 404, as a missing one.
        ("alice", "PATCH", f"{CUSTOMERS}/{not_hers}", {"json": {"jobTitle": "x"}}),
        # Dataverse's 404 for the reference, thrown into the handler: 400 naming the field.
        ("bob", "POST", "/api/cases", {"json": {"title": "t", "customerId": missing}}),
    ]
    for user, method, path, kwargs in cases:
        answers = {kind: call(api, hosts[kind], method, path, user, **kwargs) for kind in hosts}
        assert _shape(answers["async"]) == _shape(answers["sync"]), (method, path)
        assert answers["async"].status_code != 500


def test_a_cached_token_is_taken_on_the_loop_and_a_miss_goes_to_a_thread(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, through the dev host's router (async functions on its loop thread)."""
    from devstack.host import FunctionsRouter
    from shared import runtime

    downstream = runtime.runtime().downstream
    threads: list[str] = []
    real = downstream.for_user

    def recording(incoming: str, stale: str | None = None) -> str:
        threads.append(threading.current_thread().name)
        return real(incoming, stale)

    monkeypatch.setattr(downstream, "for_user", recording)
    router = FunctionsRouter.load("function_app", threads=1)
    token = api.client.user_token("alice")  # new to every cache: the first call exchanges
    try:
        import azure.functions as func

        def get() -> int:
            req = func.HttpRequest(
                method="GET",
                url=f"{CUSTOMERS}?pageSize=1",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Ocp-Apim-Subscription-Key": api.subscription_key,
                },
                params={},
                body=b"",
            )
            return int(asyncio.run(router.handle(req)).response.status_code)

        assert get() == 200
        assert get() == 200
    finally:
        runtime.runtime().dataverse.close()  # its async client for this router's loop first
        router.close()
    assert len(threads) == 1  # the miss only; the second request found the token in L1
    assert not threads[0].startswith("devstack-host-loop")
