"""P10: throughput of one API instance under Azure-like latency ÷ what the instance could serve.

One API host runs as an Azure instance does: its own OS process (`devstack/instances.py`),
started for each configuration, with the per-instance HTTP concurrency (`DEVSTACK_HTTP_CONCURRENCY`)
and the worker's thread count (`PYTHON_THREADPOOL_THREAD_COUNT`) of that configuration. The
emulators and the shared store run in a process of their own (`bench.p10_emulators`: a spawned
child with the Entra and Dataverse emulators, and its valkey-server), under the azure latency
profile (`/_emulator/latency`, devstack/latency.py: a Dataverse read about 94 ms on average), with
Dataverse's service-protection limits raised for the run. The clients are asyncio tasks in the
bench's process (aiohttp, one kept-alive connection each, about 0.5 ms of CPU a request): as many
as the instance's concurrency, in a closed loop, each sending Alice's next request as soon as the
last is answered: a single customer or a page of ten, one Dataverse read each. The first seconds
are a warm-up (the one On-Behalf-Of exchange, connections to Dataverse) and are not counted.

Placed as in Azure, where an instance has its vCPU to itself and Entra, Dataverse and the callers
run elsewhere: the API host on one of this process's cores, the emulators, the store and the
clients on the others (`Cores`, `placed`: `sched_setaffinity`, inherited by children and new
threads). The figure is throughput ÷ the lowest of

- the ideal: concurrency ÷ the mean emulated Dataverse latency: every request in flight waits on
  Dataverse all the time, nothing waits for anything else. The mean is what the emulator added
  to the reads of the measured window (its request log's `latency_ms`), not the profile's mean;
- what the API's core allows: its cores ÷ its CPU milliseconds per request. Each process's is
  its utime + stime (`/proc/<pid>/stat`, all its threads; the clients' `time.process_time()`)
  over the measured window ÷ the requests answered in it;
- what the other cores allow the emulators, the store and the clients together: those cores ÷
  the sum of their CPU per request (on a single core, nothing is split: that core ÷ every
  process's together);
- what one core allows each process alone: 1 core ÷ its CPU per request. Each is one Python
  process (one GIL: Python code on one core at a time) or valkey-server (commands on one thread).

Which of them bound the figure is printed beside it, and every process's CPU per request under
the table, with what other work on the machine used of its cores (`/proc/stat`) and how long
the API's threads waited for a CPU while runnable (`/proc/<pid>/task/*/schedstat`). In Azure the
emulators and clients are not on the instance: there the cap is the instance's vCPUs (one at
2,048 MB, and the one GIL of the worker) ÷ the API's CPU per request alone.

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
import contextlib
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.context import NO_CALLER_CAP, BenchContext
from bench.core import Figure, Result, Row
from bench.p10_emulators import EmulatorProcess
from bench.placement import Cores, placed
from devstack.host import RECOMMENDED
from devstack.instances import HostGroup, child_environment, listen

CONCURRENCIES = (16, 64)  # the figure's, for every configuration
SHIPPED_ALSO = (32,)  # reported for the shipped configuration: where the recommendation lies
WARMUP_SECONDS = 3.0
SECONDS = 10.0
TARGET = 0.85
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


# The processes of a run, by the name the figure prints; all but valkey-server are Python, whose
# GIL lets each use at most one core, and valkey-server runs its commands on one thread.
PROCESSES = ("API", "emulators", "store", "clients")


@dataclass(frozen=True)
class Measured:
    config: Config
    concurrency: int
    answered: int
    errors: int
    seconds: float
    cpu_seconds: dict[str, float]  # each process's in the window, by PROCESSES' names
    mean_latency_ms: float  # what the emulator added to each Dataverse read, on average
    reads: int  # Dataverse reads in the window
    cores: Cores  # where the run's processes ran
    machine_busy_seconds: float  # every CPU's non-idle time in the window, ours and others'
    api_wait_seconds: float  # the API's threads' time runnable but waiting for a CPU

    @property
    def throughput(self) -> float:
        return self.answered / self.seconds

    def cpu_ms_of(self, process: str) -> float:
        return self.cpu_seconds[process] * 1000 / max(1, self.answered)

    @property
    def cpu_ms(self) -> float:
        """The API process's CPU milliseconds per request."""
        return self.cpu_ms_of("API")

    @property
    def total_cpu_ms(self) -> float:
        return sum(self.cpu_ms_of(p) for p in self.cpu_seconds)

    @property
    def ideal(self) -> float:
        return self.concurrency / (self.mean_latency_ms / 1000)

    @property
    def caps(self) -> dict[str, float]:
        """Requests a second the CPU allows: the API's core for the API; the other cores for
        the emulators, the store and the clients together (or, on one core, that core for
        every process together); and one core for each process on its own."""
        api, rest = len(self.cores.api), len(self.cores.rest)
        others = [p for p in self.cpu_seconds if p != "API"]
        if self.cores.shared:
            caps = {f"{_cores(api)} for all processes": _per_second(api, self.total_cpu_ms)}
        else:
            theirs = ", ".join(others[:-1]) + f" and {others[-1]}"
            caps = {
                "the API's core" if api == 1 else f"the API's {api} cores": _per_second(
                    api, self.cpu_ms
                ),
                ("the other core" if rest == 1 else f"the other {rest} cores")
                + f" ({theirs})": _per_second(rest, sum(self.cpu_ms_of(p) for p in others)),
            }
        for process in others if not self.cores.shared and api == 1 else self.cpu_seconds:
            caps[f"one core for the {process}"] = _per_second(1, self.cpu_ms_of(process))
        return caps

    @property
    def bound(self) -> tuple[str, float]:
        """What bounds the ideal: the ideal itself or the lowest cap."""
        name, cap = min(self.caps.items(), key=lambda item: item[1])
        return (name, cap) if cap < self.ideal else ("ideal", self.ideal)

    @property
    def ratio(self) -> float:
        return self.throughput / self.bound[1]

    def describe(self) -> str:
        name, bound = self.bound
        return (
            f"{self.ratio:.2f} ({self.throughput:.0f}/s ÷ {bound:.0f}/s, "
            + ("the ideal" if name == "ideal" else f"the cap of {name}")
            + f"; ideal {self.ideal:.0f}/s at {self.mean_latency_ms:.0f} ms; "
            f"API CPU {self.cpu_ms:.2f} ms/request"
            + (f"; {self.errors} errors" if self.errors else "")
            + ")"
        )

    def cpu_note(self) -> str:
        parts = ", ".join(
            f"{p} {self.cpu_ms_of(p):.2f} ms ({self.cpu_seconds[p] / self.seconds:.2f} of a core)"
            for p in self.cpu_seconds
        )
        others = (self.machine_busy_seconds - sum(self.cpu_seconds.values())) / self.seconds
        wait_ms = self.api_wait_seconds * 1000 / max(1, self.answered)
        machine = len(self.cores.api | self.cores.rest)
        return (
            f"CPU per request: {parts}; together {self.total_cpu_ms:.2f} ms; other work on the "
            f"machine used {max(0.0, others):.2f} of its {_cores(machine)}; the API's threads "
            f"waited {wait_ms:.2f} ms per request for a CPU"
        )


def _cores(n: int) -> str:
    return f"{n} core" + ("s" if n != 1 else "")


def _per_second(cores: float, cpu_ms: float) -> float:
    return cores * 1000 / cpu_ms if cpu_ms > 0 else float("inf")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def run_queue_wait_seconds(pid: int) -> float:
    """Time `pid`'s threads were runnable but not running (`/proc/<pid>/task/*/schedstat`)."""
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            waited += int((task / "schedstat").read_text(encoding="ascii").split()[1])
    return waited / 1e9


def machine_busy_seconds() -> float:
    """Non-idle time of all CPUs together (`/proc/stat`, everything but idle and iowait)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(f) for f in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _CLOCK_TICKS


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
    """P10's emulators and store in a process of their own (`bench.p10_emulators`), under the
    azure latency profile, with Dataverse's limits out of the way; the clients in this one."""

    def __init__(self, ctx: BenchContext) -> None:
        self.ctx = ctx
        self.cores = Cores.split()
        with placed(self.cores.rest):
            self.emulators = EmulatorProcess()
        self.settings = self.emulators.settings
        self.key = self.settings["DEVSTACK_SUBSCRIPTION_KEY"]
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = self.settings["REQUESTS_CA_BUNDLE"]

    def _emulators(self, method: str, what: str, body: dict[str, Any] | None = None) -> None:
        bases = [self.settings["DEVSTACK_DATAVERSE_URL"]]
        if what != "limits":
            bases.append(self.settings["DEVSTACK_ENTRA_URL"])
        for base in bases:
            answer = self.http.request(method, f"{base}/_emulator/{what}", json=body, timeout=10)
            answer.raise_for_status()

    def __enter__(self) -> Scenario:
        try:
            self._emulators("PUT", "latency", {"profile": "azure"})
            self._emulators("PUT", "limits", LIMITS)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.emulators.stop()

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
            self.settings,
            RECOMMENDED.environment(),  # as the README deploys it, but for the two below
            NO_CALLER_CAP,
            {
                "DEVSTACK_HTTP_CONCURRENCY": str(concurrency),
                "PYTHON_THREADPOOL_THREAD_COUNT": str(config.threads) if config.threads else None,
            },
        )
        logs = self.emulators.folder / "p10"
        logs.mkdir(exist_ok=True)
        name = f"p10-{concurrency}-{config.function_app}-{config.threads or 'default'}"
        with placed(self.cores.api):
            hosts = HostGroup.start(
                [(name, listen("api-host", 0))],
                env=env,
                function_app=config.function_app,
                log_dir=logs,
            )
        try:
            (instance,) = hosts.instances
            token = self.emulators.token(USER)
            load = Load(instance.url, self.key, token, self.paths(instance.url, token))
            marks: dict[str, tuple[dict[str, float], int]] = {}

            def on_window(which: str) -> None:
                cpu = {
                    "API": process_cpu_seconds(instance.pid),
                    "emulators": process_cpu_seconds(self.emulators.pid),
                    "clients": time.process_time(),
                }
                if self.emulators.valkey_pid:
                    cpu["store"] = process_cpu_seconds(self.emulators.valkey_pid)
                cpu["machine"] = machine_busy_seconds()
                cpu["api wait"] = run_queue_wait_seconds(instance.pid)
                marks[which] = (cpu, self.emulators.last_seq())

            with placed(self.cores.rest):
                answered, errors, window = asyncio.run(
                    load.run(concurrency, warmup, seconds, on_window)
                )
        finally:
            hosts.stop()
        (start, first), (end, last) = marks["start"], marks["end"]
        reads = [
            float(latency_ms)
            for seq, latency_class, latency_ms in self.emulators.reads(first)
            if seq <= last and latency_class == "read" and latency_ms is not None
        ]
        return Measured(
            config,
            concurrency,
            answered,
            errors,
            window,
            {p: end[p] - start[p] for p in PROCESSES if p in start},
            statistics.fmean(reads) if reads else float("nan"),
            len(reads),
            self.cores,
            end["machine"] - start["machine"],
            end["api wait"] - start["api wait"],
        )


def run(ctx: BenchContext) -> Result:
    warmup, seconds = (1.0, 1.5) if ctx.quick else (WARMUP_SECONDS, SECONDS)
    also = () if ctx.quick else SHIPPED_ALSO
    measured: list[Measured] = []
    load_before = os.getloadavg()[0]
    with Scenario(ctx) as scenario:
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
        f"{m.seconds:g} s, {m.reads} Dataverse reads; {m.cpu_note()}; bound by "
        + ("the ideal" if m.bound[0] == "ideal" else m.bound[0])
        + "."
        for m in measured
    ]
    notes.append(
        f"P10 load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"({os.cpu_count()} CPUs): above about 1 the API process does not get its core, and "
        "the figures read low."
    )
    return Result(rows, notes)


FIGURE = Figure("P10", "throughput per instance under Azure-like latency", run)
