"""How much one instance runs at once, read from the environment as Azure delivers it.

Two limits stand between a request and a sync function, one behind the other:

1. **Per-instance HTTP concurrency** (`DEVSTACK_HTTP_CONCURRENCY`, default 1): the most requests
   an instance is handed at once. On Flex Consumption this is the HTTP trigger's
   `perInstanceConcurrency`, a platform setting of the site's scale-and-concurrency
   configuration (`az functionapp scale config set --trigger-type http --trigger-settings
   perInstanceConcurrency=N`), not an app setting, so the app never sees it; here it is an
   environment variable of the dev stack's own. Microsoft Learn, "Concurrency in Azure
   Functions", section "HTTP trigger concurrency", gives the defaults by instance memory (2,048 MB
   16, 4,096 MB 32) with the footnote "For Python apps, the default HTTP trigger concurrency for
   all instances sizes is 1". This API is a Python app, so an instance deployed without the
   setting serves one request at a time, and so does the dev host by default: what is measured
   locally without the setting is what Azure does without it. `RECOMMENDED` is what the README
   tells operators to set (measured: bench/README.md, P10), and what the tests and the bench run
   with. Requests beyond the limit wait in the host, in order of arrival, and are never refused:
   the front end holds them until an instance has room (`_asgi`).

2. **The worker's thread pool** (`PYTHON_THREADPOOL_THREAD_COUNT`): sync functions run on it,
   async ones on the worker's event loop. Unset, the worker passes `max_workers=None` to
   `ThreadPoolExecutor` on Python 3.9 and later, which is min(32, CPUs + 4)
   (azure-functions-python-worker 4.34, azure_functions_worker/dispatcher.py,
   `Dispatcher._get_sync_tp_max_workers`). An invocation handed to the worker while every thread
   is busy waits in the pool's queue.

The worker logs a warning for a thread count that is not a whole number of at least 1 and runs
with its default; the dev host refuses to start instead (`HostConfigError`, one line naming the
setting), so a typo in a benchmark's settings cannot quietly measure the default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from devstack.host._errors import HostConfigError

THREADS_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
CONCURRENCY_SETTING = "DEVSTACK_HTTP_CONCURRENCY"
DEFAULT_CONCURRENCY = 1  # Flex Consumption's default for Python apps, at every size (see above)
MAX_CONCURRENCY = 1000  # a bound on typos, not Azure's

_WHOLE_NUMBER = re.compile(r"[0-9]+")


def worker_default_threads() -> int:
    """The worker's pool size when PYTHON_THREADPOOL_THREAD_COUNT is unset: what
    `ThreadPoolExecutor(max_workers=None)` picks on this machine."""
    count = getattr(os, "process_cpu_count", os.cpu_count)()  # 3.13 counts usable CPUs
    return min(32, (count or 1) + 4)


@dataclass(frozen=True)
class InstanceLimits:
    """`threads`: PYTHON_THREADPOOL_THREAD_COUNT, or None for the worker's default."""

    threads: int | None = None
    concurrency: int = DEFAULT_CONCURRENCY

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> InstanceLimits:
        """The limits `environ` sets; HostConfigError names a malformed setting."""
        threads = _whole_number(environ, THREADS_SETTING, "of at least 1")
        concurrency = _whole_number(environ, CONCURRENCY_SETTING, f"from 1 to {MAX_CONCURRENCY}")
        if concurrency is not None and concurrency > MAX_CONCURRENCY:
            raise HostConfigError(
                f"{CONCURRENCY_SETTING} must be a whole number from 1 to {MAX_CONCURRENCY}"
            )
        return cls(threads=threads, concurrency=concurrency or DEFAULT_CONCURRENCY)

    @property
    def thread_count(self) -> int:
        return self.threads if self.threads is not None else worker_default_threads()

    def environment(self) -> dict[str, str]:
        """The settings that give another host process these limits."""
        env = {CONCURRENCY_SETTING: str(self.concurrency)}
        if self.threads is not None:
            env[THREADS_SETTING] = str(self.threads)
        return env

    def describe(self) -> str:
        """For banners: `6 threads (the worker's default, min(32, CPUs + 4)), 16 requests at
        once`."""
        source = "" if self.threads is not None else " (the worker's default, min(32, CPUs + 4))"
        return f"{self.thread_count} threads{source}, {self.concurrency} requests at once"


# What the README recommends for the API on Flex Consumption, 2,048 MB instances: async domain
# functions, so the thread count bounds only the sync ones (health, openapi) and the offloaded
# token misses do not use it; the concurrency is where one instance's CPU still keeps up.
RECOMMENDED = InstanceLimits(threads=32, concurrency=16)


def _whole_number(environ: Mapping[str, str], name: str, bounds: str) -> int | None:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not _WHOLE_NUMBER.fullmatch(text) or int(text) < 1:
        raise HostConfigError(f"{name} must be a whole number {bounds}")
    return int(text)
