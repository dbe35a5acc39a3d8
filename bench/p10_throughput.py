"""P10: throughput of one API instance under Azure-like latency ÷ what the instance could serve.

One API host runs as an Azure instance does: its own OS process (`devstack/instances.py`),
started for each configuration, with the per-instance HTTP concurrency (`DEVSTACK_HTTP_CONCURRENCY`)
and the worker's thread count (`PYTHON_THREADPOOL_THREAD_COUNT`) of that configuration. The
emulators run in the bench's process (the `stack`), under the azure latency profile
(`/_emulator/latency`, devstack/latency.py: a Dataverse read about 94 ms on average), with
Dataverse's service-protection limits raised for the run. The clients are asyncio tasks in the
bench's process (aiohttp, one kept-alive connection each): as many as the instance's concurrency,
in a closed loop, each sending Alice's next request as soon as the last is answered: a single
customer or a page of ten, one Dataverse read each. The first seconds are a warm-up (the one
On-Behalf-Of exchange, connections to Dataverse) and are not counted.

The figure is throughput ÷ ideal, where

- ideal = concurrency ÷ the mean emulated Dataverse latency: every request in flight waits on
  Dataverse all the time, nothing waits for anything else. The mean is what the emulator added
  to the reads of the measured window (its request log's `latency_ms`), not the profile's mean;
- capped by what the CPU allows: the API process's CPU time per request (utime + stime of the
  host process, `/proc/<pid>/stat`, over the measured window ÷ requests answered in it) against
  one core, what a 2,048 MB Flex Consumption instance has (and what one Python process's GIL
  lets Python code use). The cap is shown; when it binds, the figure measures CPU, not waiting.

Configurations, side by side in one run, each at concurrency 16 and 64 (the shipped one at 32
too, reported: where the README's recommendation comes from):

- the shipped one (`function_app`: async handlers, with the README's PYTHON_THREADPOOL_THREAD_COUNT
  of 32, which only its sync functions and none of the measured requests use);
- sync handlers on the worker's default threads, min(32, CPUs + 4);
- sync handlers on 32 threads (the thread count the README recommended for sync handlers).

The sync ones run `bench.p10_sync_app`: the same domains, the same pipeline, registered as sync
functions. Targets (≥ 0.85) apply to the shipped configuration; the others are reported.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.context import NO_CALLER_CAP, BenchContext
from bench.core import Figure, Result, Row
from devstack.instances import HostGroup, child_environment, listen
from devstack.stack import RunningStack

CONCURRENCIES = (16, 64)  # the figure's, for every configuration
SHIPPED_ALSO = (32,)  # reported for the shipped configuration: where the recommendation lies
WARMUP_SECONDS = 4.0
SECONDS = 15.0
TARGET = 0.85
CORES = 1.0  # a 2,048 MB Flex Consumption instance (and the GIL of one Python process)
USER = "alice"
# Dataverse's service-protection limits, out of the way: the figure is about one instance.
LIMITS = {"requests": 10_000_000, "concurrent": 10_000, "execution_ms": 10**12}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Config:
    label: str
    function_app: str
    threads: int | None  # PYTHON_THREADPOOL_THREAD_COUNT; None: the worker's default
    shipped: bool = False


CONFIGS = (
    Config("async handlers, 32 threads (shipped)", "function_app", 32, shipped=True),
    Config("sync handlers, the worker's default threads", "bench.p10_sync_app", None),
    Config("sync handlers, 32 threads", "bench.p10_sync_app", 32),
)


@dataclass(frozen=True)
class Measured:
    config: Config
    concurrency: int
    answered: int
    errors: int
    seconds: float
    cpu_seconds: float
    mean_latency_ms: float  # what the emulator added to each Dataverse read, on average
    reads: int  # Dataverse reads in the window
    bench_cpu_seconds: float  # this process's (the emulators' and the clients') in the window

    @property
    def throughput(self) -> float:
        return self.answered / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds * 1000 / max(1, self.answered)

    @property
    def ideal(self) -> float:
        return self.concurrency / (self.mean_latency_ms / 1000)

    @property
    def cap(self) -> float:
        return CORES * 1000 / self.cpu_ms if self.cpu_ms else float("inf")

    @property
    def ratio(self) -> float:
        return self.throughput / min(self.ideal, self.cap)

    def describe(self) -> str:
        bound = "CPU cap" if self.cap < self.ideal else "ideal"
        return (
            f"{self.ratio:.2f} ({self.throughput:.0f}/s ÷ {min(self.ideal, self.cap):.0f}/s "
            f"{bound}; ideal {self.ideal:.0f}/s at {self.mean_latency_ms:.0f} ms, "
            f"CPU {self.cpu_ms:.2f} ms/request, cap {self.cap:.0f}/s"
            + (f"; {self.errors} errors" if self.errors else "")
            + ")"
        )


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class Load:
    """Closed-loop clients against one API instance, on an event loop of this process."""

    def __init__(self, url: str, key: str, token: str, paths: list[str]) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}", "Ocp-Apim-Subscription-Key": key}
        self.paths = paths

    async def run(
        self, clients: int, warmup: float, seconds: float, on_window: Any
    ) -> tuple[int, int, float]:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=clients, force_close=False)
        timeout = aiohttp.ClientTimeout(total=60)
        answered = errors = 0
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            loop = asyncio.get_running_loop()
            begin = loop.time()
            window = (begin + warmup, begin + warmup + seconds)

            async def client(n: int) -> None:
                nonlocal answered, errors
                while True:
                    started = loop.time()
                    if started >= window[1]:
                        return
                    path = self.paths[n % len(self.paths)]
                    n += 1
                    try:
                        async with http.get(self.url + path, headers=self.headers) as response:
                            await response.read()
                            ok = response.status == 200
                    except (TimeoutError, aiohttp.ClientError):
                        ok = False
                    if window[0] <= loop.time() < window[1]:
                        answered += ok
                        errors += not ok

            async def marks() -> None:
                await asyncio.sleep(window[0] - loop.time())
                on_window("start")
                await asyncio.sleep(window[1] - loop.time())
                on_window("end")

            await asyncio.gather(marks(), *(client(n) for n in range(clients)))
        return answered, errors, seconds


class Scenario:
    def __init__(self, ctx: BenchContext, stack: RunningStack) -> None:
        self.ctx = ctx
        self.stack = stack
        self.key = stack.settings["DEVSTACK_SUBSCRIPTION_KEY"]
        self.control = stack.dataverse_app.state.dataverse.control
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = str(stack.ca_bundle)

    def _emulators(self, method: str, what: str, body: dict[str, Any] | None = None) -> None:
        for base in (self.stack.entra_url, self.stack.dataverse_url):
            if what == "limits" and base == self.stack.entra_url:
                continue
            self.http.request(method, f"{base}/_emulator/{what}", json=body, timeout=10)

    def __enter__(self) -> Scenario:
        self._emulators("PUT", "latency", {"profile": "azure"})
        self._emulators("PUT", "limits", LIMITS)
        return self

    def __exit__(self, *exc: object) -> None:
        self._emulators("DELETE", "latency")
        self._emulators("DELETE", "limits")
        self.http.close()

    def paths(self, url: str, token: str) -> list[str]:
        """Alice's first request on the fresh instance (discovery, keys, the exchange: a busy
        machine can make one of them time out, so it is tried three times)."""
        for _ in range(3):
            answer = self.http.get(
                f"{url}/api/customers?pageSize=5",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Ocp-Apim-Subscription-Key": self.key,
                },
                timeout=60,
            )
            if answer.status_code != 503:
                break
            time.sleep(1)
        assert answer.status_code == 200, answer.text
        ids = [item["id"] for item in answer.json()["items"]]
        return [*(f"/api/customers/{i}" for i in ids), "/api/customers?pageSize=10"]

    def measure(self, config: Config, concurrency: int, warmup: float, seconds: float) -> Measured:
        env = child_environment(
            os.environ,
            self.stack.settings,
            NO_CALLER_CAP,
            {
                "DEVSTACK_HTTP_CONCURRENCY": str(concurrency),
                "PYTHON_THREADPOOL_THREAD_COUNT": str(config.threads) if config.threads else None,
            },
        )
        logs = Path(self.stack.material.folder) / "p10"
        logs.mkdir(exist_ok=True)
        name = f"p10-{concurrency}-{config.function_app}-{config.threads or 'default'}"
        hosts = HostGroup.start(
            [(name, listen("api-host", 0))], env=env, function_app=config.function_app, log_dir=logs
        )
        try:
            (instance,) = hosts.instances
            token = self.ctx.new_stack_token(USER)
            load = Load(instance.url, self.key, token, self.paths(instance.url, token))
            marks: dict[str, tuple[float, int, float]] = {}

            def on_window(which: str) -> None:
                log = self.control.requests(0)
                seq = log[-1]["seq"] if log else 0
                marks[which] = (process_cpu_seconds(instance.pid), seq, time.process_time())

            answered, errors, window = asyncio.run(
                load.run(concurrency, warmup, seconds, on_window)
            )
        finally:
            hosts.stop()
        reads = [
            entry["latency_ms"]
            for entry in self.control.requests(marks["start"][1])
            if entry["seq"] <= marks["end"][1] and entry["latency_class"] == "read"
        ]
        return Measured(
            config,
            concurrency,
            answered,
            errors,
            window,
            marks["end"][0] - marks["start"][0],
            statistics.fmean(reads) if reads else float("nan"),
            len(reads),
            marks["end"][2] - marks["start"][2],
        )


def run(ctx: BenchContext) -> Result:
    warmup, seconds = (1.0, 1.5) if ctx.quick else (WARMUP_SECONDS, SECONDS)
    also = () if ctx.quick else SHIPPED_ALSO
    measured: list[Measured] = []
    load_before = os.getloadavg()[0]
    with Scenario(ctx, ctx.stack) as scenario:
        for concurrency in sorted((*CONCURRENCIES, *also)):
            for config in CONFIGS:
                if concurrency in CONCURRENCIES or config.shipped:
                    ctx.progress(f"P10: {config.label}, concurrency {concurrency}, {seconds:g} s")
                    measured.append(scenario.measure(config, concurrency, warmup, seconds))
    rows = [
        Row(
            "P10",
            f"throughput of one instance ÷ ideal, concurrency {m.concurrency}: {m.config.label}",
            m.describe(),
            f"≥ {TARGET}" if m.config.shipped and m.concurrency in CONCURRENCIES else "reported",
            (m.ratio >= TARGET and not m.errors)
            if m.config.shipped and m.concurrency in CONCURRENCIES
            else None,
        )
        for m in measured
    ]
    notes = [
        f"P10 {m.config.label}, concurrency {m.concurrency}: {m.answered} answered in "
        f"{m.seconds:g} s, {m.reads} Dataverse reads, API CPU {m.cpu_ms:.2f} ms per request "
        f"({m.cpu_seconds / m.seconds:.2f} of a core); the bench process (emulators, clients) "
        f"used {m.bench_cpu_seconds / m.seconds:.2f} of a core."
        for m in measured
    ]
    notes.append(
        f"P10 load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"({os.cpu_count()} CPUs): above about 1 the API process does not get its core, and "
        "the figures read low."
    )
    return Result(rows, notes)


FIGURE = Figure("P10", "throughput per instance under Azure-like latency", run)
