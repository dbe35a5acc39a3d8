"""Issue 12, item 2: a dev host that behaves like the Python worker and Flex Consumption.

- Sync functions run on PYTHON_THREADPOOL_THREAD_COUNT threads, by default the worker's own
  min(32, CPUs + 4); async functions run on the event loop, whatever the thread count.
- At most DEVSTACK_HTTP_CONCURRENCY requests are inside a host at once (default 1, Flex
  Consumption's for Python apps; the tests' stack runs with the README's recommendation); the rest
  wait, first come first served, none refused, and each answer says how long it waited.
- A malformed value is a one-line error naming the setting, from `python -m devstack host` and
  `python -m devstack run` alike; the stack's in-process host and its child hosts take the same
  settings, and the banner shows them.

What runs at once is counted inside the functions (tests/devstack/hostapps/worker_app.py): each
call holds its place until the test releases it, so the counts do not depend on timing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.__main__ import banner
from devstack.config import ROOT
from devstack.host import (
    CONCURRENCY_SETTING,
    QUEUE_HEADER,
    RECOMMENDED,
    THREADS_SETTING,
    WORKER_WAIT_HEADER,
    HostApp,
    HostConfigError,
    InstanceLimits,
    create_app,
)
from devstack.host._gate import ConcurrencyGate
from devstack.instances import HostGroup, child_environment, listen
from devstack.server import ServerThread
from devstack.stack import RunningStack

HOSTAPPS = Path(__file__).parent / "hostapps"
HELD_AFTER_SEEN = 0.2  # seconds the held calls are kept once counted: a lower bound on waits


@dataclass
class Served:
    app: HostApp
    url: str
    meter: Any  # worker_app.Meter

    def hold(self, pool: ThreadPoolExecutor, kind: str, count: int) -> list[Future[Any]]:
        def call() -> requests.Response:
            with requests.Session() as session:
                session.trust_env = False
                return session.get(f"{self.url}/svc/v1/hold/{kind}", timeout=60)

        return [pool.submit(call) for _ in range(count)]


@contextmanager
def serving(limits: InstanceLimits | None = None) -> Iterator[Served]:
    """worker_app over HTTP; `limits` None reads them from the environment, as `make run` does."""
    app = create_app("worker_app", root=HOSTAPPS, limits=limits)
    meter = sys.modules["worker_app"].meter
    meter.reset()
    server = ServerThread(name="worker-host").start(app)
    try:
        yield Served(app, server.url, meter)
    finally:
        meter.release.set()
        server.stop()
        app.router.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.01)


def sync_calls_at_once(served: Served, threads: int) -> int:
    """Send `threads + 2` held sync calls, all let in; return the most that ran at once."""
    count = threads + 2
    with ThreadPoolExecutor(count) as pool:
        futures = served.hold(pool, "sync", count)
        wait_until(lambda: served.app.gate.inside == count, f"all {count} requests let in")
        wait_until(lambda: served.meter.running == threads, f"{threads} calls running")
        time.sleep(HELD_AFTER_SEEN)  # time enough for a thread more to start one, if there were
        assert served.meter.running == threads
        served.meter.release.set()
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * count
    return int(served.meter.peak)


# --- the worker's thread pool --------------------------------------------------------------


def test_the_default_thread_count_is_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = min(32, (os.cpu_count() or 1) + 4)
    monkeypatch.delenv(THREADS_SETTING, raising=False)
    monkeypatch.setenv(CONCURRENCY_SETTING, str(expected + 2))  # the gate lets them all in
    assert InstanceLimits.from_env({}).thread_count == expected
    with serving() as served:
        assert served.app.router.threads == expected
        assert sync_calls_at_once(served, expected) == expected


def test_the_thread_count_setting_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_SETTING, "3")
    monkeypatch.setenv(CONCURRENCY_SETTING, "5")
    with serving() as served:
        assert served.app.router.threads == 3
        assert sync_calls_at_once(served, 3) == 3


def test_async_functions_run_on_the_event_loop_not_the_threads() -> None:
    limits = InstanceLimits(threads=1, concurrency=8)
    with serving(limits) as served, ThreadPoolExecutor(4) as pool:
        futures = served.hold(pool, "async", 4)
        wait_until(lambda: served.meter.running == 4, "4 async calls at once on 1 thread")
        served.meter.release.set()
        assert [f.result().status_code for f in futures] == [200] * 4


# --- per-instance HTTP concurrency ---------------------------------------------------------


def test_requests_beyond_the_concurrency_wait_and_none_is_refused() -> None:
    limits = InstanceLimits(threads=8, concurrency=2)
    with serving(limits) as served, ThreadPoolExecutor(6) as pool:
        futures = served.hold(pool, "sync", 6)
        wait_until(lambda: served.app.gate.waiting == 4, "4 requests waiting")
        wait_until(lambda: served.meter.running == 2, "2 calls running")
        time.sleep(HELD_AFTER_SEEN)
        assert (served.meter.running, served.app.gate.waiting) == (2, 4)
        served.meter.release.set()
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * 6
    assert served.meter.peak == 2
    queued = sorted(float(r.headers[QUEUE_HEADER]) for r in responses)
    # The four that waited were let in only after the release, at least HELD_AFTER_SEEN later.
    assert all(ms >= HELD_AFTER_SEEN * 1000 for ms in queued[2:]), queued
    assert all(float(r.headers[WORKER_WAIT_HEADER]) >= 0 for r in responses)
    assert (served.app.gate.inside, served.app.gate.waiting) == (0, 0)


def test_the_gate_lets_waiters_in_first_come_first_served() -> None:
    async def scenario() -> list[str]:
        gate = ConcurrencyGate(1)
        order: list[str] = []

        async def request(name: str) -> None:
            await gate.enter()
            order.append(name)
            await asyncio.sleep(0)
            gate.leave()

        await gate.enter()  # the one place is taken
        waiting = [asyncio.create_task(request(name)) for name in "abc"]
        await asyncio.sleep(0)
        assert gate.waiting == 3
        gate.leave()  # the place passes to "a"; a newcomer now queues behind "c"
        late = asyncio.create_task(request("d"))
        await asyncio.gather(*waiting, late)
        assert (gate.inside, gate.waiting) == (0, 0)
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c", "d"]


def test_a_cancelled_wait_gives_its_place_back() -> None:
    async def scenario() -> None:
        gate = ConcurrencyGate(1)
        await gate.enter()
        given_up = asyncio.create_task(gate.enter())
        handed = asyncio.create_task(gate.enter())
        await asyncio.sleep(0)
        given_up.cancel()  # while waiting
        await asyncio.gather(given_up, return_exceptions=True)
        assert gate.waiting == 1
        gate.leave()  # to `handed`, cancelled before it could use it
        handed.cancel()
        await asyncio.gather(handed, return_exceptions=True)
        assert (gate.inside, gate.waiting) == (0, 0)
        await asyncio.wait_for(gate.enter(), 1)  # the place is free again

    asyncio.run(scenario())


# --- the settings ------------------------------------------------------------------------


BAD_NUMBERS = ["0", "-1", "abc", "1.5", "3 threads", "0x10", "٣", "+4"]


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize(
    ("name", "message"),
    [
        (THREADS_SETTING, f"{THREADS_SETTING} must be a whole number of at least 1"),
        (CONCURRENCY_SETTING, f"{CONCURRENCY_SETTING} must be a whole number from 1 to 1000"),
    ],
)
def test_a_malformed_limit_is_refused_naming_the_setting(
    name: str, message: str, value: str
) -> None:
    with pytest.raises(HostConfigError) as caught:
        InstanceLimits.from_env({name: value})
    assert str(caught.value) == message


def test_limits_read_from_the_environment() -> None:
    # Unset, one request at a time: Flex Consumption's default for a Python app.
    assert InstanceLimits.from_env({}) == InstanceLimits(threads=None, concurrency=1)
    assert InstanceLimits.from_env({THREADS_SETTING: "", CONCURRENCY_SETTING: " "}) == (
        InstanceLimits(threads=None, concurrency=1)
    )  # empty is unset, as in local.settings.json
    read = InstanceLimits.from_env({THREADS_SETTING: " 32 ", CONCURRENCY_SETTING: "1000"})
    assert read == InstanceLimits(threads=32, concurrency=1000)
    with pytest.raises(HostConfigError, match=f"^{CONCURRENCY_SETTING} must be"):
        InstanceLimits.from_env({CONCURRENCY_SETTING: "1001"})


def _devstack(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_host_process_refuses_a_malformed_thread_count_in_one_line() -> None:
    done = _devstack(["host", "--port", "0", "--no-env-file"], {THREADS_SETTING: "many"})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == f"error: {THREADS_SETTING} must be a whole number of at least 1"


def test_make_run_refuses_a_malformed_concurrency_before_starting_anything(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "devstack"
    done = _devstack(["run"], {"DEVSTACK_DIR": str(folder), CONCURRENCY_SETTING: "0"})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"error: {CONCURRENCY_SETTING} must be a whole number from 1 to 1000"
    )
    assert not folder.exists()  # no key material generated, no server started


# --- the stack's hosts -------------------------------------------------------------------


def test_the_stacks_hosts_all_run_with_its_settings(stack: RunningStack, tmp_path: Path) -> None:
    # tests/conftest.py starts the session's stack with the README's recommendation.
    assert stack.limits == RECOMMENDED
    threads, concurrency = RECOMMENDED.thread_count, RECOMMENDED.concurrency
    assert stack.settings[THREADS_SETTING] == str(threads)
    assert stack.settings[CONCURRENCY_SETTING] == str(concurrency)
    text = banner(stack.settings, stack.limits)
    assert f"Threads per host    {threads}  ({THREADS_SETTING})" in text
    assert (
        f"Requests at once    {concurrency} per host, the rest wait   ({CONCURRENCY_SETTING})"
        in text
    )
    answer = requests.get(stack.api_url + "/", timeout=30)
    assert float(answer.headers[QUEUE_HEADER]) >= 0

    # One more host, as `DEVSTACK_API_INSTANCES` starts them: a process with the stack's settings.
    env = child_environment(os.environ, stack.settings)
    group = HostGroup.start(
        [("api-host-limits", listen("api-host-limits"))], env=env, log_dir=tmp_path
    )
    try:
        (instance,) = group.instances
        log = tmp_path / "api-host-limits.log"
        wait_until(lambda: "listening" in log.read_text(), "the host's line")
        assert f"{threads} threads, {concurrency} requests at once" in log.read_text()
        assert QUEUE_HEADER in requests.get(instance.url + "/", timeout=30).headers
    finally:
        group.stop()


def test_the_banner_names_the_workers_default_when_unset(stack: RunningStack) -> None:
    text = banner(stack.settings, InstanceLimits())
    threads = min(32, (os.cpu_count() or 1) + 4)
    assert (
        f"Threads per host    {threads:<4}({THREADS_SETTING} unset: the worker's default)" in text
    )


def test_make_run_runs_the_hosts_as_deployed_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from devstack.__main__ import _as_deployed
    from devstack.host import RECOMMENDED

    monkeypatch.delenv(THREADS_SETTING, raising=False)
    monkeypatch.delenv(CONCURRENCY_SETTING, raising=False)
    assert _as_deployed() == RECOMMENDED.environment()
    monkeypatch.setenv(CONCURRENCY_SETTING, "1")  # an unconfigured Flex Consumption app
    assert _as_deployed() == {THREADS_SETTING: str(RECOMMENDED.threads)}


def test_the_banner_says_when_the_hosts_run_as_deployed(stack: RunningStack) -> None:
    from devstack.host import RECOMMENDED

    assert "as docs/operations.md deploys the API" in banner(stack.settings, RECOMMENDED)
    assert "as docs/operations.md deploys the API" not in banner(stack.settings, InstanceLimits())
