"""The emulators are never the bottleneck: N concurrent requests at a fixed 100 ms latency.

`python -m bench.emulator_latency [--requests 200] [--rounds 5]` (or the figure `FIGURE`).

Both emulators run in a child process of their own (under `make run` they share the stack's
process with the first API host), so that this process's clients do not share their interpreter
and the child's CPU time is theirs alone (`time.process_time()` in the child, read over a pipe
before and after each round). Each emulator's every latency class is set to a fixed 100 ms through
its control plane (`PUT /_emulator/latency {"classes": {"*": {"median_ms": 100}}}`), then for each
target N requests are sent at once and the wall time from the first sent to the last answered is
divided by 100 ms: about 1 when the delays overlap, N if they were served one after another.
What the ratio has above 1 is the emulator's own work for N requests on one core (its CPU per
request, reported beside it, times N), plus the client's.

The targets are what the API calls most: the signing keys (Entra, a static document), a
client-credentials token (Entra, an RS256 signature per request) and a one-row read of contacts
(Dataverse: token validation, SQLite, OData JSON). The clients are this process's asyncio
streams over TLS, one kept-alive connection per request, all opened before the clock starts
(through the control plane, which is never delayed), so that neither handshakes nor a thread
per client weigh on the figure. The Dataverse emulator's service-protection limits (52 requests
at once per caller) are raised for the run and restored after it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from bench.context import BenchContext
from bench.core import Figure, Result, Row, table

REQUESTS = 200
DELAY_MS = 100.0
ROUNDS = 5
# Wall ÷ delay; serialized, it would be REQUESTS. What the overlapped delays leave above 1 is the
# emulator's own CPU for the burst on one core (REQUESTS × its CPU per request) and the client's.
LIMIT = 4.0
CONTROL = "/_emulator"


# --- the emulators, in a process of their own ----------------------------------------------------


def _serve(conn: Connection, material_folder: str, db_folder: str) -> None:
    """Child process: both emulators on free ports; answers "cpu" with its CPU seconds."""
    from devstack.dataverse import create_app as create_dataverse
    from devstack.entra import create_app as create_entra
    from devstack.pki import ensure_material
    from devstack.server import ServerThread
    from devstack.tenant import load_tenant

    base = load_tenant()
    material = ensure_material(Path(material_folder), base)
    tls = (material.tls_cert, material.tls_key)
    entra = ServerThread(name="entra-emulator", tls=tls)
    dataverse = ServerThread(name="dataverse-emulator", tls=tls)
    tenant = base.with_dataverse_url(dataverse.url)
    entra.start(create_entra(tenant, material, base_url=entra.url))
    dataverse.start(
        create_dataverse(
            tenant,
            material,
            base_url=dataverse.url,
            entra_url=entra.url,
            db_path=Path(db_folder) / "dataverse.sqlite",
            ca_bundle=material.folder / "ca-bundle.pem",
        )
    )
    conn.send({"entra": entra.url, "dataverse": dataverse.url})
    try:
        while conn.recv() == "cpu":
            conn.send(time.process_time())
    except EOFError:
        pass
    finally:
        dataverse.stop()
        entra.stop()


class Emulators:
    """Both emulators in a child process (spawned: nothing of this process's state goes along)."""

    def __init__(self, ctx: BenchContext) -> None:
        self._db = tempfile.TemporaryDirectory(prefix="central-api-bench-emulators-")
        spawn = multiprocessing.get_context("spawn")
        self._conn, child = spawn.Pipe()
        self.process = spawn.Process(
            target=_serve, args=(child, str(ctx.material.folder), self._db.name), daemon=True
        )
        self.process.start()
        child.close()
        if not self._conn.poll(120):
            raise RuntimeError("the emulators did not start in time")
        urls: dict[str, str] = self._conn.recv()
        self.entra_url = urls["entra"]
        self.dataverse_url = urls["dataverse"]

    def cpu_seconds(self) -> float:
        self._conn.send("cpu")
        return float(self._conn.recv())

    def stop(self) -> None:
        self._conn.send("stop")
        self._conn.close()
        self.process.join(15)
        if self.process.is_alive():
            self.process.kill()
        self._db.cleanup()


# --- a minimal HTTP/1.1 client on asyncio streams ------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


class Connections:
    """`count` kept-alive TLS connections to one emulator, opened before any clock starts."""

    def __init__(self, base_url: str, ca_bundle: Path) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 443
        self.netloc = parts.netloc
        self._tls = ssl.create_default_context(cafile=str(ca_bundle))
        self.streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open(self, count: int) -> None:
        for _ in range(count):
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self._tls)
            self.streams.append((reader, writer))
            # A control-plane request: never delayed, and it proves the connection serves.
            await self.send(reader, writer, "GET", f"{CONTROL}/latency", {})

    async def send(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes = b"",
    ) -> int:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = None
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"no Content-Length in the answer to {method} {path}")
        await reader.readexactly(length)
        return int(status_line.split(" ", 2)[1])

    async def close(self) -> None:
        for _, writer in self.streams:
            writer.close()
        for _, writer in self.streams:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


async def _burst(connections: Connections, target: Target) -> tuple[float, list[int]]:
    """Every connection sends `target` at once; the wall time and the statuses."""
    started = time.perf_counter()
    statuses = await asyncio.gather(
        *(
            connections.send(r, w, target.method, target.path, target.headers, target.body)
            for r, w in connections.streams
        )
    )
    return time.perf_counter() - started, list(statuses)


# --- the measurement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    target: str
    ratio: float  # median over rounds of wall ÷ delay
    wall_ms: float
    cpu_ms_per_request: float
    logged_latency_ms: float  # mean of the emulator's log for the measured requests
    errors: int


def _targets(ctx: BenchContext, emulators: Emulators, session: requests.Session) -> list[Target]:
    tenant = ctx.tenant
    form = urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": tenant.app("central-api").client_id,
            "client_secret": ctx.material.client_secret("central-api"),
            "scope": f"{emulators.dataverse_url}/.default",
        }
    ).encode()
    token_path = f"/{tenant.id}/oauth2/v2.0/token"
    response = session.post(emulators.entra_url + token_path, data=form, timeout=30)
    response.raise_for_status()
    dataverse_token = response.json()["access_token"]
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return [
        Target(
            "Entra signing keys (GET JWKS)",
            emulators.entra_url,
            "GET",
            f"/{tenant.id}/discovery/v2.0/keys",
            {},
        ),
        Target(
            "Entra token (client credentials)",
            emulators.entra_url,
            "POST",
            token_path,
            form_headers,
            form,
        ),
        Target(
            "Dataverse read (one contact)",
            emulators.dataverse_url,
            "GET",
            "/api/data/v9.2/contacts?$select=fullname&$top=1",
            {"Authorization": f"Bearer {dataverse_token}", "Accept": "application/json"},
        ),
    ]


def _log_since(session: requests.Session, base_url: str, seq: int) -> list[dict[str, Any]]:
    response = session.get(f"{base_url}{CONTROL}/requests?since={seq}", timeout=30)
    response.raise_for_status()
    return list(response.json()["requests"])


def _last_seq(session: requests.Session, base_url: str) -> int:
    log = _log_since(session, base_url, 0)
    return int(log[-1]["seq"]) if log else 0


async def _measure(
    ctx: BenchContext,
    emulators: Emulators,
    target: Target,
    session: requests.Session,
    *,
    count: int,
    rounds: int,
    delay_ms: float,
) -> Measured:
    connections = Connections(target.base_url, ctx.ca_bundle)
    await connections.open(count)
    profile = {"classes": {"*": {"median_ms": delay_ms}}}
    session.put(f"{target.base_url}{CONTROL}/latency", json=profile, timeout=30).raise_for_status()
    ratios: list[float] = []
    walls: list[float] = []
    cpu = 0.0
    errors = 0
    logged: list[float] = []
    try:
        for _ in range(rounds):
            seq = _last_seq(session, target.base_url)
            cpu_before = emulators.cpu_seconds()
            wall, statuses = await _burst(connections, target)
            cpu += emulators.cpu_seconds() - cpu_before
            errors += sum(1 for s in statuses if not 200 <= s < 300)
            walls.append(wall)
            ratios.append(wall * 1000 / delay_ms)
            logged += [e["latency_ms"] for e in _log_since(session, target.base_url, seq)]
    finally:
        session.delete(f"{target.base_url}{CONTROL}/latency", timeout=30)
        await connections.close()
    return Measured(
        target=target.name,
        ratio=statistics.median(ratios),
        wall_ms=statistics.median(walls) * 1000,
        cpu_ms_per_request=cpu * 1000 / (count * rounds),
        logged_latency_ms=statistics.fmean(logged) if logged else 0.0,
        errors=errors,
    )


def measure(
    ctx: BenchContext, *, count: int = REQUESTS, rounds: int = ROUNDS, delay_ms: float = DELAY_MS
) -> list[Measured]:
    emulators = Emulators(ctx)
    session = requests.Session()
    session.verify = str(ctx.ca_bundle)
    limits = f"{emulators.dataverse_url}{CONTROL}/limits"
    try:
        # One caller sends every Dataverse request: far beyond its 52 at once, by design.
        session.put(limits, json={"concurrent": 100_000, "requests": 10_000_000}, timeout=30)
        targets = _targets(ctx, emulators, session)
        results = []
        for target in targets:
            ctx.progress(f"{target.name}: {rounds} rounds of {count} at once")
            results.append(
                asyncio.run(
                    _measure(
                        ctx,
                        emulators,
                        target,
                        session,
                        count=count,
                        rounds=rounds,
                        delay_ms=delay_ms,
                    )
                )
            )
        return results
    finally:
        session.delete(limits, timeout=30)
        session.close()
        emulators.stop()


def run(ctx: BenchContext) -> Result:
    count = ctx.scaled(REQUESTS, 50)
    return result(measure(ctx, count=count, rounds=ctx.scaled(ROUNDS, 1)), count)


def result(measured: list[Measured], count: int) -> Result:
    rows = [
        Row(
            "E1",
            f"{count} requests at once, fixed {DELAY_MS:.0f} ms: wall ÷ {DELAY_MS:.0f} ms, "
            f"{m.target}",
            f"{m.ratio:.2f} ({m.wall_ms:.0f} ms; emulator CPU {m.cpu_ms_per_request:.2f} ms "
            "per request)",
            f"≤ {LIMIT:.1f} (serialized: {count})",
            m.ratio <= LIMIT and m.errors == 0,
        )
        for m in measured
    ]
    notes = [
        f"E1, {m.target}: {m.errors} errors; {m.logged_latency_ms:.1f} ms of emulated latency "
        f"per request in the emulator's log; its CPU for {count} requests is "
        f"{m.cpu_ms_per_request * count:.0f} ms, so one core serves about "
        f"{1000 / m.cpu_ms_per_request:.0f} such requests a second."
        for m in measured
        if m.cpu_ms_per_request > 0
    ]
    return Result(rows, notes)


FIGURE = Figure("E1", "the emulators' latency overlaps (never the bottleneck)", run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_latency", description=__doc__)
    parser.add_argument("--requests", type=int, default=REQUESTS, help="sent at once per round")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--quick", action="store_true", help="50 requests, one round: a smoke run")
    args = parser.parse_args(argv)
    count, rounds = (50, 1) if args.quick else (args.requests, args.rounds)
    with BenchContext(quick=args.quick) as ctx:
        outcome = result(measure(ctx, count=count, rounds=rounds), count)
    print(table(outcome.rows))
    print()
    for note in outcome.notes:
        print(note)
    return 0 if args.quick or all(row.met for row in outcome.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
