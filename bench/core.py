"""What every figure shares: side-by-side timing, result rows, and the table.

A figure is a function from a `BenchContext` to a `Result`: one or more rows of the table, plus
notes printed under it. Ratios are always measured side by side in one run: rounds of A and of
B alternate (A first in even rounds, B first in odd ones), and the figure is the median of the
per-round ratios (the lower median, so that it is one round's A ÷ B, shown beside it): a slow
patch of the machine weighs on both sides of a round alike.

Figures that time round trips to a server process on this machine (P8, P9) place the two
processes on CPUs first (`placed`): where the kernel puts them decides what a round trip costs,
so it must be the same on every run, not the scheduler's choice of the moment.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from bench.context import BenchContext

T = TypeVar("T")


@dataclass(frozen=True)
class Row:
    number: str
    figure: str
    measured: str
    target: str
    met: bool | None  # None: reported, with no target to meet


@dataclass(frozen=True)
class Result:
    rows: list[Row]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Figure:
    number: str
    title: str
    run: Callable[[BenchContext], Result]


@dataclass(frozen=True)
class Paired:
    """The median of the per-round A/B ratios, and that round's A and B (seconds per operation)."""

    a: float
    b: float
    ratio: float

    def describe(self, unit: str = "µs") -> str:
        scale = {"µs": 1e6, "ms": 1e3}[unit]
        return f"{self.ratio:.2f} ({self.a * scale:.1f} {unit} ÷ {self.b * scale:.1f} {unit})"


def per_item(action: Callable[[T], object], items: Sequence[T]) -> float:
    """Seconds per item for `action` over `items`, with the garbage collector held off the way
    `timeit` does it (collected before, not during)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for item in items:
            action(item)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / len(items)


def paired(a: Callable[[int], float], b: Callable[[int], float], *, rounds: int) -> Paired:
    """Run `a(round)` and `b(round)` alternately `rounds` times; each returns one measurement."""
    a_values: list[float] = []
    b_values: list[float] = []
    for r in range(rounds):
        if r % 2 == 0:
            a_values.append(a(r))
            b_values.append(b(r))
        else:
            b_values.append(b(r))
            a_values.append(a(r))
    rounds_by_ratio = sorted(zip(a_values, b_values, strict=True), key=lambda ab: ab[0] / ab[1])
    a_median, b_median = rounds_by_ratio[(len(rounds_by_ratio) - 1) // 2]  # the lower median
    return Paired(a_median, b_median, a_median / b_median)


@contextlib.contextmanager
def placed(server_pid: int, *, apart: bool) -> Iterator[bool]:
    """For the duration, the calling thread on one CPU and process `server_pid` on another
    (`apart`) or on the same one; then both as they were. Yields False, placing nothing, where
    there is only one CPU to use.

    On a virtual machine the two placements give two different round trips: on one CPU a round
    trip is two context switches; on two, each side wakes the other's CPU, which costs more
    (about 120 µs against 50 µs for a GET here). Apart is how a client and its store run in a
    deployment, where the store is another machine."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield False
        return
    mine, theirs = os.sched_getaffinity(0), os.sched_getaffinity(server_pid)
    os.sched_setaffinity(0, {cpus[0]})  # pid 0: the calling thread only
    os.sched_setaffinity(server_pid, {cpus[1] if apart else cpus[0]})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, mine)
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(server_pid, theirs)


def ratio_row(number: str, figure: str, measured: Paired, limit: float, unit: str = "µs") -> Row:
    return Row(number, figure, measured.describe(unit), f"≤ {limit:.1f}", measured.ratio <= limit)


def table(rows: Iterable[Row]) -> str:
    lines = ["| # | Figure | Measured | Target | Met |", "|---|---|---|---|---|"]
    for row in rows:
        met = "—" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.number} | {row.figure} | {row.measured} | {row.target} | {met} |")
    return "\n".join(lines)
