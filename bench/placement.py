"""Where a figure's processes run: as in Azure, where an instance has its vCPU to itself and
Entra ID, Dataverse and the callers run elsewhere, the API host on one of the bench's cores and
everything else (emulators, store, clients) on the others. Linux affinity is per thread and is
inherited by a child process and by new threads (`os.sched_setaffinity`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cores:
    """How the run's processes are placed: as in Azure, where an instance has its vCPU to
    itself and Entra, Dataverse and the callers run elsewhere, the API host gets one of this
    process's cores (`api`) and the emulators, the store and the clients the others (`rest`).
    On a single core there is nothing to split: everything shares it (`api` == `rest`)."""

    api: frozenset[int]
    rest: frozenset[int]

    @classmethod
    def split(cls) -> Cores:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return cls(frozenset(cores), frozenset(cores))
        return cls(frozenset(cores[:1]), frozenset(cores[1:]))

    @property
    def shared(self) -> bool:
        return self.api == self.rest


@contextlib.contextmanager
def placed(cpus: frozenset[int]) -> Iterator[None]:
    """This thread on `cpus` meanwhile: a process it starts inherits them, every thread of it
    too (Linux affinity is per thread and passes to children and new threads)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def placed_process(cpus: frozenset[int]) -> Iterator[None]:
    """Every thread of this process on `cpus` meanwhile (threads started meanwhile inherit it
    from the thread that starts them); each thread's own placement is put back afterwards."""
    before: dict[int, set[int]] = {}
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
    try:
        yield
    finally:
        for tid, cpus_before in before.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus_before)
