"""P11: the first request on a fresh instance ÷ the round trips it cannot avoid, azure profile.

The bench stack's emulators switch to the azure latency profile (devstack/latency.py, with a
fixed seed) for the figure. Each round starts a new API host process (`python -m devstack host`,
as devstack/instances.py starts instances: its own interpreter, imports and runtime, the stack's
settings and store) and, the moment it says it serves, sends it one user request with a token no
cache has seen: `GET /api/customers?pageSize=1`. That request needs, in this order: the signing
keys (the v2 discovery document, then the JWKS it names), the On-Behalf-Of exchange, then the
Dataverse read. A is the time from sending it to its answer.

B, what it cannot avoid, is that chain of round trips: discovery v2, then the JWKS it names,
then the On-Behalf-Of exchange, then the Dataverse read. Everything else is avoidable in series:
the v1 discovery document (fetched beside the v2 one), MSAL's own discovery (at start-up, beside
the keys), the imports of requests, cryptography, msal, redis-py and aiohttp, the TLS context,
connecting the store; the warm-up (shared/warmup.py) starts them when the app is imported, before
the host serves.

The figure is the median over the rounds of A ÷ B with each round's B the delays that round's
own requests were given (`unavoidable_drawn`): the emulators log the delay they added to every
request (`latency_ms`), so B is the JWKS fetch's delay + the smallest delay of a v2 discovery
fetch logged before it (the keys' own one cannot be told apart from MSAL's, which run beside it;
the smallest never overstates B) + the On-Behalf-Of exchange's + the Dataverse read's. The
delays are drawn (seeded), so a round whose draws are high takes longer and has a larger B:
the ratio measures what the instance adds, not the dice. Target ≤ 1.25. Reported beside it, the
old definition: the median A ÷ the chain at the profile's means (`unavoidable_ms`: 2 × Entra
metadata + Entra token + Dataverse read, `Delay.mean_ms`), which moves with the draws.

The reference, measured side by side (rounds alternate), is the same first request on a host
without the warm-up (`bench.p11_app`), as every request was served before it: reported.
Under the table: how long a host took from its start to serving (the interpreter, the dev host
and `import function_app`, which P5 bounds), and what the first requests asked of Entra.
"""

from __future__ import annotations

import http.client
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import BenchContext
from bench.core import Figure, Result, Row
from bench.placement import Cores, placed, placed_process
from devstack.config import ROOT
from devstack.instances import child_environment, listen
from devstack.latency import Delay, Latency

TARGET = 1.25
ROUNDS = 11
SEED = 11
USER = "alice"
PATH = "/api/customers?pageSize=1"
START_TIMEOUT = 60.0
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class FirstRequest:
    started: float  # seconds from the process's start until it said it serves
    answered: float  # seconds from sending the first request to its answer
    status: int
    entra: list[str]  # what the instance asked Entra for, in order, until it answered
    drawn: float | None  # seconds: the delays its unavoidable round trips were given (None:
    # one of them is missing from the logs)


def unavoidable_drawn(entra: list[dict[str, Any]], dataverse: list[dict[str, Any]]) -> float | None:
    """The delays (ms) the emulators gave the round trips one first request cannot avoid, from
    their request logs since the instance started: discovery v2 then the JWKS, the
    On-Behalf-Of exchange, the Dataverse read. None if one of them is not in the logs."""
    keys = [i for i, e in enumerate(entra) if str(e.get("path", "")).endswith("/keys")]
    if not keys:
        return None
    discovery = [
        float(e["latency_ms"])
        for e in entra[: keys[0]]
        if str(e.get("path", "")).endswith("/v2.0/.well-known/openid-configuration")
    ]
    obo = [float(e["latency_ms"]) for e in entra if e.get("grant_type") == JWT_BEARER]
    reads = [float(e["latency_ms"]) for e in dataverse if e.get("latency_class") == "read"]
    if not (discovery and obo and reads):
        return None
    return min(discovery) + float(entra[keys[0]]["latency_ms"]) + obo[0] + reads[0]


def unavoidable_ms(entra: Latency, dataverse: Latency) -> float:
    """The chain a first user request cannot avoid, at the profile's means."""
    metadata = entra.snapshot()["classes"]["metadata"]
    token = entra.snapshot()["classes"]["token"]
    read = dataverse.snapshot()["classes"]["read"]
    return 2 * Delay(**metadata).mean_ms + Delay(**token).mean_ms + Delay(**read).mean_ms


class Cold:
    def __init__(self, ctx: BenchContext) -> None:
        self.ctx = ctx
        self.stack = ctx.stack
        self.key = self.stack.settings["DEVSTACK_SUBSCRIPTION_KEY"]
        self.entra = self.stack.entra_app.state.entra
        self.dataverse = self.stack.dataverse_app.state.dataverse
        self.logs = Path(self.stack.material.folder) / "p11"
        self.logs.mkdir(exist_ok=True)
        self.env = child_environment(os.environ, self.stack.settings)
        self.serial = 0
        self.cores = Cores.split()  # the host on a core of its own, the rest of us on the others

    def first_request(self, function_app: str) -> FirstRequest:
        """A new host process serving `function_app`, and its first request."""
        self.serial += 1
        name = f"p11-{self.serial}"
        token = self.ctx.new_stack_token(USER)
        sock = listen(name, 0)
        port = sock.getsockname()[1]
        mark = self._mark(self.entra)
        dataverse_mark = self._mark(self.dataverse)
        spawned = time.perf_counter()
        with (self.logs / f"{name}.log").open("ab") as log, placed(self.cores.api):
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devstack",
                    "host",
                    "--fd",
                    str(sock.fileno()),
                    "--name",
                    name,
                    "--function-app",
                    function_app,
                    "--no-env-file",
                    "--exit-with-parent",
                ],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
            )
        sock.close()
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # the host's one line, once it serves
            ready = time.perf_counter()
            assert b"listening on" in line, f"{name} did not start: see {self.logs}"
            status = self._get(port, token)
            answered = time.perf_counter()
        finally:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(START_TIMEOUT)
            if process.stdout is not None:
                process.stdout.close()
        entra = self.entra.control.requests(mark)
        drawn = unavoidable_drawn(entra, self.dataverse.control.requests(dataverse_mark))
        return FirstRequest(
            ready - spawned,
            answered - ready,
            status,
            self._asked(entra),
            None if drawn is None else drawn / 1e3,
        )

    def _get(self, port: int, token: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=START_TIMEOUT)
        try:
            connection.request(
                "GET",
                PATH,
                headers={"Authorization": f"Bearer {token}", "Ocp-Apim-Subscription-Key": self.key},
            )
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    @staticmethod
    def _mark(emulator: Any) -> int:
        log = emulator.control.requests(0)
        return int(log[-1]["seq"]) if log else 0

    @staticmethod
    def _asked(entries: list[dict[str, Any]]) -> list[str]:
        asked = []
        for entry in entries:
            path = str(entry.get("path", ""))
            if entry.get("grant_type") == JWT_BEARER:
                asked.append("OBO")
            elif path.endswith("/token"):
                asked.append("token")
            elif path.endswith("/v2.0/.well-known/openid-configuration"):
                asked.append("discovery v2")
            elif path.endswith("/.well-known/openid-configuration"):
                asked.append("discovery v1")
            else:
                asked.append("keys" if "keys" in path else path.rsplit("/", 1)[-1])
        return asked


def _describe(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.0f} ms (of {len(values)})"


def run(ctx: BenchContext) -> Result:
    cold = Cold(ctx)
    entra = ctx.stack.entra_app.state.entra.control.latency
    dataverse = ctx.stack.dataverse_app.state.dataverse.control.latency
    rounds = ctx.scaled(ROUNDS, 1)
    warm: list[FirstRequest] = []
    bare: list[FirstRequest] = []
    for latency in (entra, dataverse):
        latency.switch("azure", seed=SEED)
    try:
        floor = unavoidable_ms(entra, dataverse) / 1e3
        with placed_process(cold.cores.rest):  # the emulators and the client: not the host's core
            for r in range(rounds):
                ctx.progress(f"P11: fresh instances, round {r + 1} of {rounds}")
                apps = ("function_app", "bench.p11_app")
                for app in apps if r % 2 == 0 else reversed(apps):
                    (warm if app == "function_app" else bare).append(cold.first_request(app))
    finally:
        for latency in (entra, dataverse):
            latency.restore()
    failed = [f.status for f in warm + bare if f.status != 200]
    assert not failed, f"P11: first requests answered {failed}"
    unlogged = [f for f in warm + bare if f.drawn is None]
    assert not unlogged, "P11: a first request's round trips are missing from the emulators' logs"
    own = [f.answered / f.drawn for f in warm if f.drawn]
    ratio = _median(own)
    reference = _median([f.answered / f.drawn for f in bare if f.drawn])
    by_means = _median([f.answered / floor for f in warm])
    bare_by_means = _median([f.answered / floor for f in bare])
    shown = f"{statistics.median(f.answered for f in warm) * 1e3:.0f} ms"
    drawn = f"{statistics.median(f.drawn for f in warm if f.drawn) * 1e3:.0f} ms"
    rows = [
        Row(
            "P11",
            "first request on a fresh instance ÷ the round trips it cannot avoid, each round's "
            "own delays (azure profile)",
            f"{ratio:.2f} (median {shown}; its round trips' delays: median {drawn})",
            f"≤ {TARGET:.2f}",
            ratio <= TARGET,
        ),
        Row(
            "P11",
            "the same without the start-up warm-up (the reference)",
            f"{reference:.2f} (median {statistics.median(f.answered for f in bare) * 1e3:.0f} ms)",
            "reported",
            None,
        ),
        Row(
            "P11",
            "old definition: median first request ÷ the chain at the profile's means, "
            "with the warm-up / without",
            f"{by_means:.2f} / {bare_by_means:.2f} (÷ {floor * 1e3:.0f} ms)",
            "reported",
            None,
        ),
    ]
    notes = [
        f"P11: each round's A ÷ its own B with the warm-up: "
        f"{', '.join(f'{x:.2f}' for x in sorted(own))}; "
        f"a host's start until it serves: {_describe([f.started for f in warm + bare])}.",
        f"P11: what a first request's instance asked Entra, with the warm-up: "
        f"{', '.join(warm[0].entra)}; without: {', '.join(bare[0].entra)}.",
    ]
    return Result(rows, notes)


def _median(values: list[float]) -> float:
    """The median; with an even count (a quick run), the worse of the middle two."""
    return statistics.median_high(values)


FIGURE = Figure("P11", "first request on a fresh instance ÷ its unavoidable round trips", run)
