"""P12: fairness. Another caller's p99 while one caller throttled by Dataverse keeps 80 requests
in flight ÷ its p99 alone, on one API instance under the azure latency profile.

One API host process (devstack/instances.py) serves against the bench stack's emulators and
store, with the settings the README recommends for Azure and the API's defaults: 32 worker threads
(`PYTHON_THREADPOOL_THREAD_COUNT`), 16 requests at once (`DEVSTACK_HTTP_CONCURRENCY`, Flex
Consumption's per-instance concurrency), at most 8 requests in progress per caller
(`MAX_CONCURRENT_REQUESTS_PER_CALLER`) and at most 2 s of `Retry-After` slept out
(`DATAVERSE_MAX_RETRY_WAIT_SECONDS`). The emulators run the azure profile with a fixed seed.

- **The victim** is Alice: 4 threads of her own, each sending `GET /api/customers?pageSize=5`
  as soon as the last one answered (4 at once, under the cap), 60 requests each.
- **The attacker** is Bob: 80 threads, each sending `GET /api/customers/{id}` of one of his
  records as soon as the last one answered, whatever the answer, so that 80 of his requests are
  always in flight (a client that ignores `Retry-After`). Dataverse throttles every read of that
  record: it takes 2 s to answer 429 with `Retry-After: 15` (a fault rule of the emulator, as in
  tests/faults/test_review_fairness.py: a busy Dataverse protecting itself from one caller).
  Bob's client runs at a lower priority (niceness 10): it is on this machine only because the
  bench has one, and in Azure it would spend none of the instance's CPU.

Alice's requests alone, then again while Bob's flood runs (after 1.5 s to build up); the
figure is the p99 of her latencies under the flood ÷ her p99 alone (target ≤ 1.5). Reported
beside it: the same with Bob's loops waiting out each 429's `Retry-After` before their next
request, as the README asks clients to (a throttled batch client rather than an attack). What keeps
it: the cap answers Bob's requests beyond 8 with 429 in about a millisecond, before any token
or Dataverse call, so he holds at most 8 of the 16 places and 8 threads; the bounded wait keeps
the API from sleeping out his 15 s (it answers at once). Under the table: what Bob's requests
were answered, and both p50s.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.context import BenchContext
from bench.core import Figure, Result, Row
from devstack.control import Fault
from devstack.host import QUEUE_HEADER
from devstack.instances import HostGroup, Instance, child_environment, listen

TARGET = 1.5
SEED = 12
FLOOD_ENV = "BENCH_P12_FLOOD"  # the flood's URL, token and key: in its environment, not argv
VICTIM, ATTACKER = "alice", "bob"
VICTIM_PATH = "/api/customers?pageSize=5"
VICTIM_THREADS = 4
VICTIM_REQUESTS = 60  # per thread
FLOOD = 80
FLOOD_NICENESS = 10  # the attacker's client process: see `flood`
HOLD_MS = 2000  # how long Dataverse takes to throttle each of the attacker's reads
RETRY_AFTER = 15  # seconds: beyond DATAVERSE_MAX_RETRY_WAIT_SECONDS, so never slept out
SETTINGS: dict[str, str | None] = {
    "PYTHON_THREADPOOL_THREAD_COUNT": "32",  # as recommended (README, local.settings.json)
    "DEVSTACK_HTTP_CONCURRENCY": "16",
    "MAX_CONCURRENT_REQUESTS_PER_CALLER": None,  # the API's default (8): the bench turns it off
    "DATAVERSE_MAX_RETRY_WAIT_SECONDS": None,  # the default (2 s)
}


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far (Linux: /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p(values: list[float], q: float) -> float:
    """The q-quantile by the nearest-rank method: a latency one of the requests really had."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Fairness:
    def __init__(self, ctx: BenchContext, instance: Instance) -> None:
        self.ctx = ctx
        self.url = instance.url
        stack = ctx.stack
        self.key = stack.settings["DEVSTACK_SUBSCRIPTION_KEY"]
        self.tokens = {user: ctx.new_stack_token(user) for user in (VICTIM, ATTACKER)}

    def get(self, http: requests.Session, user: str, path: str) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self.tokens[user]}",
            "Ocp-Apim-Subscription-Key": self.key,
        }
        return http.get(self.url + path, headers=headers, timeout=60)

    def victim(self, requests_each: int) -> tuple[list[float], list[float]]:
        """Alice's latencies in seconds, from `VICTIM_THREADS` closed loops, and how long each
        request waited in the host's queue (its `QUEUE_HEADER`)."""

        def loop(_: int) -> list[tuple[float, float]]:
            times = []
            with requests.Session() as http:
                http.trust_env = False
                self.get(http, VICTIM, VICTIM_PATH)  # its own connection, opened untimed
                for _ in range(requests_each):
                    started = time.perf_counter()
                    answer = self.get(http, VICTIM, VICTIM_PATH)
                    elapsed = time.perf_counter() - started
                    assert answer.status_code == 200, f"P12: the victim got {answer.status_code}"
                    times.append((elapsed, float(answer.headers[QUEUE_HEADER]) / 1e3))
            return times

        with ThreadPoolExecutor(VICTIM_THREADS) as pool:
            pairs = [t for times in pool.map(loop, range(VICTIM_THREADS)) for t in times]
        return [latency for latency, _ in pairs], [queued for _, queued in pairs]

    def attacker_record(self) -> str:
        with requests.Session() as http:
            http.trust_env = False
            answer = self.get(http, ATTACKER, "/api/customers?pageSize=1")
            answer.raise_for_status()
            return str(answer.json()["items"][0]["id"])

    def flood(self, path: str, *, honour_retry_after: bool = False) -> subprocess.Popen[str]:
        """Bob's 80 closed loops, in a process of their own (`flood` below): in this one they
        would take the GIL from the emulators, which in Azure feel nothing of a client's load."""
        target = [self.url + path, self.tokens[ATTACKER], self.key]
        env = {**os.environ, FLOOD_ENV: json.dumps(target)}
        return subprocess.Popen(
            [sys.executable, "-m", "bench.p12_fairness", str(FLOOD)]
            + (["--honour-retry-after"] if honour_retry_after else []),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )


def run(ctx: BenchContext) -> Result:
    stack = ctx.stack
    env = child_environment(os.environ, stack.settings, SETTINGS)
    logs = Path(stack.material.folder) / "p12"
    logs.mkdir(exist_ok=True)
    entra = stack.entra_app.state.entra.control
    dataverse = stack.dataverse_app.state.dataverse.control
    requests_each = ctx.scaled(VICTIM_REQUESTS, 10)
    ctx.progress("P12: starting an API instance")
    hosts = HostGroup.start([("p12", listen("p12", 0))], env=env, log_dir=logs)
    answers: Counter[str] = Counter()
    try:
        fairness = Fairness(ctx, hosts.instances[0])
        record = fairness.attacker_record()
        for latency in (entra.latency, dataverse.latency):
            latency.switch("azure", seed=SEED)
        fairness.victim(2)  # sign-ins, exchanges and connections, untimed
        ctx.progress("P12: the victim alone")
        alone, _ = fairness.victim(requests_each)
        dataverse.add_fault(
            Fault(
                path=f"*/contacts({record})*",
                status=429,
                delay_ms=HOLD_MS,
                retry_after=RETRY_AFTER,
                body={"error": {"code": "0x80072326", "message": "Throttled (bench P12)."}},
            )
        )
        ctx.progress(f"P12: the victim while the attacker keeps {FLOOD} requests in flight")
        flood = fairness.flood(f"/api/customers/{record}")
        try:
            time.sleep(1.5)  # the flood builds up: the cap full, the queue long
            cpu_before, wall_before = _cpu_seconds(hosts.instances[0].pid), time.perf_counter()
            loaded, queued = fairness.victim(requests_each)
            cpu = _cpu_seconds(hosts.instances[0].pid) - cpu_before
            wall = time.perf_counter() - wall_before
        finally:
            out, _ = flood.communicate("", timeout=120)  # stdin closed: the flood stops
        flooded = json.loads(out or "{}")
        answers.update(flooded.get("answers", {}))
        flood_cpu = float(flooded.get("cpu_seconds", 0.0))
        ctx.progress("P12: the same, the attacker's loops waiting out the cap's Retry-After")
        polite_flood = fairness.flood(f"/api/customers/{record}", honour_retry_after=True)
        try:
            time.sleep(1.5)
            polite, _ = fairness.victim(requests_each)
        finally:
            out, _ = polite_flood.communicate("", timeout=120)
        polite_answers: Counter[str] = Counter(json.loads(out or "{}").get("answers", {}))
    finally:
        dataverse.clear_faults()
        for latency in (entra.latency, dataverse.latency):
            latency.restore()
        hosts.stop()
    ratio = p(loaded, 0.99) / p(alone, 0.99)
    total = sum(answers.values()) * wall / (wall + 1.5) + len(loaded)  # the flood ran 1.5 s more
    seen = ", ".join(f"{outcome}: {count}" for outcome, count in answers.most_common())
    return Result(
        [
            Row(
                "P12",
                f"another caller's p99 while one caller throttled by Dataverse keeps {FLOOD} "
                "requests in flight ÷ its p99 alone (azure profile)",
                f"{ratio:.2f} ({p(loaded, 0.99) * 1e3:.0f} ms ÷ {p(alone, 0.99) * 1e3:.0f} ms)",
                f"≤ {TARGET:.1f}",
                ratio <= TARGET,
            ),
            Row(
                "P12",
                "the same, the attacker's loops waiting out each 429's Retry-After (as the README "
                "asks clients to)",
                f"{p(polite, 0.99) / p(alone, 0.99):.2f} "
                f"({p(polite, 0.99) * 1e3:.0f} ms ÷ {p(alone, 0.99) * 1e3:.0f} ms)",
                "reported",
                None,
            ),
        ],
        [
            f"P12: the victim's p50 {p(loaded, 0.5) * 1e3:.0f} ms under the flood, "
            f"{p(alone, 0.5) * 1e3:.0f} ms alone ({len(alone)} requests each); "
            f"the attacker's answers: {seen}; waiting out Retry-After: "
            + ", ".join(f"{o}: {n}" for o, n in polite_answers.most_common())
            + ".",
            f"P12: while the victim ran under the flood ({wall:.1f} s) the API host process "
            f"used {cpu / wall:.0%} of a CPU, about {cpu / max(1, total) * 1e3:.2f} ms per "
            f"request answered ({total / wall:.0f} requests/s, nearly all the attacker's). "
            f"The victim's wait in the host's queue under the flood: p50 "
            f"{p(queued, 0.5) * 1e3:.0f} ms, p99 {p(queued, 0.99) * 1e3:.0f} ms. The attacker's "
            f"client process (at niceness {FLOOD_NICENESS}) used {flood_cpu:.1f} CPU seconds in "
            f"all ({wall + 1.5:.1f} s).",
        ],
    )


FIGURE = Figure("P12", "fairness: another caller's p99 under one throttled caller's flood", run)


# --- the attacker's process: python -m bench.p12_fairness N --------------------------------


def flood(loops: int, *, honour_retry_after: bool = False) -> int:
    """`loops` closed loops of GETs (URL, token and key in FLOOD_ENV) until stdin closes; then
    print what the answers were (status and error code: count) as JSON. `honour_retry_after`:
    after a 429 a loop waits the `Retry-After` seconds before its next request, as the README
    asks clients to; otherwise it sends the next one at once."""
    # The attacker's client runs on this machine only because the bench has one: in Azure it
    # spends none of the instance's CPU. At a lower priority its 80 threads (about as much CPU
    # per request as the API host's) take only what the host and the victim leave; its requests
    # stay in flight all the same, queued in the host.
    os.nice(FLOOD_NICENESS)
    url, token, key = json.loads(os.environ[FLOOD_ENV])
    parts = urllib.parse.urlsplit(url)
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    headers = {"Authorization": f"Bearer {token}", "Ocp-Apim-Subscription-Key": key}
    stop = threading.Event()
    answers: Counter[str] = Counter()
    lock = threading.Lock()

    def loop() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        seen: Counter[str] = Counter()
        while not stop.is_set():
            try:
                connection.request("GET", target, headers=headers)
                answer = connection.getresponse()
                body = answer.read()
                code = json.loads(body).get("code", "") if body else ""
                seen[f"{answer.status} {code}".strip()] += 1
                wait = answer.getheader("Retry-After")
                if honour_retry_after and answer.status == 429 and wait and wait.isdigit():
                    stop.wait(int(wait))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                seen[type(exc).__name__] += 1
                connection.close()
        connection.close()
        with lock:
            answers.update(seen)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(loops)]
    for thread in threads:
        thread.start()
    sys.stdin.read()  # until the bench closes it
    stop.set()
    for thread in threads:
        thread.join(60)
    print(json.dumps({"answers": answers, "cpu_seconds": _cpu_seconds(os.getpid())}))
    return 0


if __name__ == "__main__":
    sys.exit(flood(int(sys.argv[1]), honour_retry_after="--honour-retry-after" in sys.argv))
