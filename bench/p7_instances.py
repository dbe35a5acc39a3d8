"""P7: On-Behalf-Of exchanges for one user token across 8 API instances sharing the store.

Eight real API hosts, each its own OS process and runtime (devstack/instances.py, as Azure runs
the instances of a scaled-out app), serve against the bench stack's emulators and its one
valkey-server. Two ways a user token reaches them, each with a token no instance has seen:

- **Concurrent first requests**: the instances have just started (cold: nothing cached, the
  start-up warm-up still fetching keys and building MSAL clients), and 24 requests with one
  token arrive at once, three on each instance. Without a store each instance exchanges once
  (its own requests wait for its one exchange); with it, one instance takes the short lock in
  the store and exchanges, the others wait for its L2 write.
- **Round-robin**: then 40 requests with another new token, one at a time, instance after
  instance. Without a store each instance exchanges on its first; with it, only the first does.

Exchanges are counted where they happen, in the Entra emulator's request log (token POSTs with
the jwt-bearer grant), and cross-checked with the API's own count: each instance reports the
exchanges it made (`DownstreamTokens.obo_exchanges`) and its L2 counts through a route that
only the bench's instances serve (`bench.p7_app`). Target with the store: 1 each way.

The reference is measured in the same run the same way: eight more instances started with
`REDIS_URL` unset (each works alone, as before issue 11), where both ways count 8.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.context import BenchContext
from bench.core import Figure, Result, Row
from devstack.instances import HostGroup, Instance, child_environment, listen
from devstack.stack import RunningStack

INSTANCES = 8
CONCURRENT_PER_INSTANCE = 3
ROUND_ROBIN = 40
USER = "alice"
PATH = "/api/customers?pageSize=1"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class Count:
    by_entra: int
    by_api: int

    @property
    def agreed(self) -> int | None:
        return self.by_entra if self.by_entra == self.by_api else None

    def describe(self) -> str:
        return f"{self.by_entra} (Entra's log; the instances counted {self.by_api})"


@dataclass(frozen=True)
class Group:
    """What one group of instances made of the two ways a token reaches them."""

    concurrent: Count
    round_robin: Count
    shared: Counter[str]  # the L2 counts summed over the instances


class Scenario:
    def __init__(self, ctx: BenchContext, stack: RunningStack) -> None:
        self.ctx = ctx
        self.stack = stack
        self.entra = stack.entra_app.state.entra
        self.key = stack.settings["DEVSTACK_SUBSCRIPTION_KEY"]

    def new_token(self) -> str:
        return self.ctx.new_stack_token(USER)

    def mark(self) -> int:
        log = self.entra.control.requests(0)
        return int(log[-1]["seq"]) if log else 0

    def exchanges_since(self, mark: int) -> int:
        return sum(
            1
            for entry in self.entra.control.requests(mark)
            if entry.get("method") == "POST"
            and str(entry.get("path", "")).endswith("/token")
            and entry.get("grant_type") == JWT_BEARER
        )

    def get(self, http: requests.Session, instance: Instance, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "Ocp-Apim-Subscription-Key": self.key}
        return http.get(instance.url + PATH, headers=headers, timeout=60).status_code

    def run(self, label: str, settings: dict[str, str | None], requests_sent: int) -> Group:
        env = child_environment(os.environ, self.stack.settings, settings)
        logs = Path(self.stack.material.folder) / f"p7-{label}"
        logs.mkdir(exist_ok=True)
        sockets = [(f"p7-{label}-{n}", listen("api-host", 0)) for n in range(1, INSTANCES + 1)]
        self.ctx.progress(f"P7: starting {INSTANCES} API instances {label}")
        hosts = HostGroup.start(sockets, env=env, function_app="bench.p7_app", log_dir=logs)
        try:
            instances = hosts.instances
            mark = self.mark()
            first = self._concurrent_first(instances, self.new_token())
            concurrent_entra = self.exchanges_since(mark)
            after_first = self._counts(instances)

            mark = self.mark()
            self._round_robin(instances, self.new_token(), requests_sent)
            round_robin_entra = self.exchanges_since(mark)
            after_all = self._counts(instances)
        finally:
            hosts.stop()
        failed = [status for status in first if status != 200]
        assert not failed, f"{label}: concurrent first requests answered {failed}"
        by_api_first = sum(c["oboExchanges"] for c in after_first)
        by_api_all = sum(c["oboExchanges"] for c in after_all)
        shared: Counter[str] = Counter()
        for counts in after_all:
            shared.update(counts["shared"])
        return Group(
            Count(concurrent_entra, by_api_first),
            Count(round_robin_entra, by_api_all - by_api_first),
            shared,
        )

    def _concurrent_first(self, instances: list[Instance], token: str) -> list[int]:
        total = len(instances) * CONCURRENT_PER_INSTANCE
        together = threading.Barrier(total)

        def first(n: int) -> int:
            with requests.Session() as http:
                http.trust_env = False
                together.wait()
                return self.get(http, instances[n % len(instances)], token)

        with ThreadPoolExecutor(total) as pool:
            return list(pool.map(first, range(total)))

    def _round_robin(self, instances: list[Instance], token: str, count: int) -> None:
        with requests.Session() as http:
            http.trust_env = False
            for n in range(count):
                status = self.get(http, instances[n % len(instances)], token)
                assert status == 200, f"round-robin request {n} answered {status}"

    @staticmethod
    def _counts(instances: list[Instance]) -> list[dict[str, Any]]:
        with requests.Session() as http:
            http.trust_env = False
            answers = [http.get(f"{i.url}/api/_bench/counts", timeout=30) for i in instances]
        for answer in answers:
            answer.raise_for_status()
        return [answer.json() for answer in answers]


def run(ctx: BenchContext) -> Result:
    stack = ctx.stack
    assert stack.valkey is not None
    scenario = Scenario(ctx, stack)
    requests_sent = ctx.scaled(ROUND_ROBIN, 2 * INSTANCES)
    shared = scenario.run("with the store", {"REDIS_URL": stack.valkey.url}, requests_sent)
    alone = scenario.run("without the store", {"REDIS_URL": None}, requests_sent)

    concurrent = f"{INSTANCES * CONCURRENT_PER_INSTANCE} concurrent first requests"
    round_robin = f"{requests_sent} requests round-robin"
    rows = [
        Row(
            "P7",
            f"OBO exchanges for one user token: {concurrent} over {INSTANCES} cold instances "
            "sharing the store",
            shared.concurrent.describe(),
            "1",
            shared.concurrent.agreed == 1,
        ),
        Row(
            "P7",
            f"OBO exchanges for another token: {round_robin} over the same {INSTANCES} instances",
            shared.round_robin.describe(),
            "1",
            shared.round_robin.agreed == 1,
        ),
        Row(
            "P7",
            f"the same {concurrent}, {INSTANCES} instances without the store (REDIS_URL unset)",
            alone.concurrent.describe(),
            f"reported: the reference ({INSTANCES}, one per instance)",
            None,
        ),
        Row(
            "P7",
            f"the same {round_robin}, {INSTANCES} instances without the store",
            alone.round_robin.describe(),
            f"reported: the reference ({INSTANCES})",
            None,
        ),
    ]
    stats = ", ".join(f"{name} {count}" for name, count in sorted(shared.shared.items()))
    return Result(rows, [f"P7 L2 counts over the {INSTANCES} instances with the store: {stats}."])


FIGURE = Figure("P7", "OBO exchanges for one user token across 8 instances", run)
