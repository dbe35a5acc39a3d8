"""P6: 50 concurrent clients for 30 s through the host: errors, and p99 ÷ p50 of latency.

The dev stack runs as `make run` runs it, in a process of its own (`python -m devstack run` on
free ports, in a folder of its own): Entra and Dataverse emulators and the API host. This process
is only the clients: 50 threads, each with its own kept-alive connection and one identity, each
sending its next request as soon as the last is answered (a closed loop: the load is as high as
the stack can serve).

The identities are the demo tenant's: Alice and Bob (user tokens, so every Dataverse call is
On-Behalf-Of them) and the dealer-sync app (an application token, client credentials). The
requests are what their client apps do: pages of customers, cases and vehicles, single customers,
searches, and for Alice a change to one of her own customers now and then.

The Dataverse emulator enforces Dataverse's service-protection limits per caller (6,000 requests
per 5 minutes, 52 at once), which this load would exceed within a minute by design: the limits
are raised through the emulator's control plane for the run and restored at the end. For the
same reason the API's own per-caller cap is off in the child (`MAX_CONCURRENT_REQUESTS_PER_CALLER`
0): about seventeen clients share each identity.

The first 3 s are a warm-up (sign-ins, first OBO exchanges, TLS handshakes to Dataverse),
reported but not in the percentiles. An error is any answer other than 2xx or a failed request.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.context import NO_CALLER_CAP, BenchContext
from bench.core import Figure, Result, Row
from devstack.client import DevClient
from devstack.host import RECOMMENDED

CLIENTS = 50
WARMUP_SECONDS = 3
SECONDS = 30
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Identity:
    name: str
    token: str
    paths: list[str]
    writes: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@dataclass
class Sample:
    started: float
    seconds: float
    status: int  # 0: the request failed without an answer
    request: str  # method and path
    problem: str = ""  # the answer's body when it is an error


class Stack:
    """`python -m devstack run` in a child process, on free ports, in a temporary folder."""

    def __init__(self, environment: dict[str, str]) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="central-api-bench-p6-")
        self.log = open(Path(self.folder.name) / "devstack.log", "wb")  # noqa: SIM115
        env = {
            **environment,
            "DEVSTACK_DIR": self.folder.name,
            "DEVSTACK_ENTRA_PORT": "0",
            "DEVSTACK_DATAVERSE_PORT": "0",
            "DEVSTACK_REDIS_PORT": "0",
            "DEVSTACK_IDENTITY_PORT": "0",
            "DEVSTACK_API_PORT": "0",
            **NO_CALLER_CAP,  # 50 clients over three identities: far more than the cap allows
            **RECOMMENDED.environment(),  # threads and concurrency as the README deploys them
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "run"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> DevClient:
        deadline = time.monotonic() + timeout
        folder = Path(self.folder.name)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the dev stack exited; see {folder / 'devstack.log'}")
            if b"Try it" in (folder / "devstack.log").read_bytes():
                return DevClient.from_stack(folder)
            time.sleep(0.2)
        raise RuntimeError("the dev stack did not start in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        self.folder.cleanup()


def _identities(client: DevClient, http: requests.Session, key: str) -> list[Identity]:
    api = client.api_url

    def first_ids(token: str, path: str, count: int) -> list[str]:
        response = http.get(
            api + path,
            headers={"Authorization": f"Bearer {token}", "Ocp-Apim-Subscription-Key": key},
            timeout=30,
        )
        response.raise_for_status()
        return [item["id"] for item in response.json()["items"][:count]]

    alice = client.user_token("alice")
    bob = client.user_token("bob")
    dealer = client.app_token("dealer-sync")
    alice_customers = first_ids(alice, "/api/customers?pageSize=5", 5)
    bob_customers = first_ids(bob, "/api/customers?pageSize=5", 5)
    return [
        Identity(
            "alice",
            alice,
            [
                "/api/customers?pageSize=10",
                *(f"/api/customers/{i}" for i in alice_customers),
                "/api/cases?pageSize=10",
            ],
            [(f"/api/customers/{alice_customers[0]}", {"jobTitle": "Buyer"})],
        ),
        Identity(
            "bob",
            bob,
            [
                "/api/cases?pageSize=20",
                "/api/customers?pageSize=10&q=an",
                *(f"/api/customers/{i}" for i in bob_customers),
            ],
        ),
        Identity(
            "dealer-sync",
            dealer,
            [
                "/api/vehicles?pageSize=10",
                "/api/customers?pageSize=10",
                "/api/vehicles?pageSize=50",
            ],
        ),
    ]


def _client_loop(
    api: str, key: str, who: Identity, offset: int, stop_at: float, out: list[Sample]
) -> None:
    headers = {"Authorization": f"Bearer {who.token}", "Ocp-Apim-Subscription-Key": key}
    n = offset
    with requests.Session() as http:
        http.trust_env = False
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            n += 1
            problem = ""
            try:
                if who.writes and n % 10 == 0:
                    path, body = who.writes[n // 10 % len(who.writes)]
                    request = f"PATCH {path}"
                    response = http.patch(api + path, headers=headers, json=body, timeout=60)
                else:
                    path = who.paths[n % len(who.paths)]
                    request = f"GET {path}"
                    response = http.get(api + path, headers=headers, timeout=60)
                status = response.status_code
                if not 200 <= status < 300:
                    problem = _problem(response)
            except requests.RequestException as exc:
                status, problem = 0, type(exc).__name__
            out.append(Sample(started, time.perf_counter() - started, status, request, problem))


def _problem(response: requests.Response) -> str:
    """The error's code and message (not its correlation id, so that errors group)."""
    try:
        body = response.json()
        return f"{body.get('code')}: {body.get('message')}"
    except ValueError:
        return response.text[:200]


def run(ctx: BenchContext) -> Result:
    warmup_seconds = ctx.scaled(WARMUP_SECONDS, 1)
    seconds = ctx.scaled(SECONDS, 3)
    ctx.progress("P6: starting the dev stack in a process of its own")
    stack = Stack(ctx.initial_environment)
    try:
        client = stack.client
        key = client.settings["DEVSTACK_SUBSCRIPTION_KEY"]
        api = client.api_url
        control = client.settings["DEVSTACK_DATAVERSE_URL"].rstrip("/") + "/_emulator/limits"
        with requests.Session() as http:
            http.verify = client.settings["REQUESTS_CA_BUNDLE"]
            http.trust_env = False
            identities = _identities(client, http, key)
            http.put(
                control, json={"requests": 10_000_000, "concurrent": 10_000}, timeout=10
            ).raise_for_status()
            samples: list[list[Sample]] = [[] for _ in range(CLIENTS)]
            begin = time.perf_counter()
            measured_from = begin + warmup_seconds
            stop_at = measured_from + seconds
            threads = [
                threading.Thread(
                    target=_client_loop,
                    args=(api, key, identities[i % len(identities)], i, stop_at, samples[i]),
                    name=f"p6-client-{i}",
                )
                for i in range(CLIENTS)
            ]
            ctx.progress(
                f"P6: {CLIENTS} clients for {warmup_seconds:g} s of warm-up and {seconds:g} s"
            )
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            http.delete(control, timeout=10).raise_for_status()
    finally:
        stack.stop()

    every = [s for per_client in samples for s in per_client]
    warm = [s for s in every if s.started < measured_from]
    measured = [s for s in every if s.started >= measured_from]
    errors = [s for s in measured if not 200 <= s.status < 300]
    warm_errors = [s for s in warm if not 200 <= s.status < 300]
    latencies = sorted(s.seconds for s in measured)
    p50 = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    served = len(measured) / seconds
    slowest_warm = max((s.seconds for s in warm), default=0.0)
    failures = Counter((s.request, s.status, s.problem) for s in warm_errors + errors)
    statuses = Counter(s.status for s in errors)
    return Result(
        [
            Row(
                "P6",
                f"{CLIENTS} concurrent clients for {seconds:g} s through the host: errors",
                f"{len(errors)} of {len(measured)} requests ({served:.0f}/s)"
                + (f"; statuses {dict(statuses)}" if statuses else ""),
                "0",
                not errors,
            ),
            Row(
                "P6",
                f"{CLIENTS} concurrent clients for {seconds:g} s through the host: p99 ÷ p50",
                f"{p99 / p50:.2f} ({p99 * 1e3:.0f} ms ÷ {p50 * 1e3:.0f} ms)",
                "≤ 5.0",
                p99 / p50 <= 5.0,
            ),
        ],
        [
            f"P6 warm-up ({warmup_seconds:g} s, not in the figures): {len(warm)} requests, "
            f"{len(warm_errors)} errors, slowest {slowest_warm * 1e3:.0f} ms.",
            *(
                f"P6 error: {count} × {request} → {status} {problem}"
                for (request, status, problem), count in sorted(failures.items())
            ),
        ],
    )


FIGURE = Figure("P6", "50 concurrent clients for 30 s through the host", run)
