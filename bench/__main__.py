"""`python -m bench [P1 P4 ...]`: run the figures (all by default) and print the table.

The table goes to stdout, progress to stderr. The exit status is 1 when a target is missed.
A new figure is a module with a `FIGURE` (see `bench.core.Figure`) added to `FIGURES`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from bench import (
    p1_auth,
    p2_handler,
    p3_reuse,
    p4_scale,
    p5_imports,
    p6_load,
    p7_instances,
    p8_l2_hit,
    p9_rate_limit,
    p10_throughput,
    p11_cold_start,
    p12_fairness,
)
from bench.context import BenchContext
from bench.core import Figure, Row, table

FIGURES: list[Figure] = [
    p1_auth.FIGURE,
    p2_handler.FIGURE,
    p3_reuse.FIGURE,
    p4_scale.FIGURE,
    p5_imports.FIGURE,
    p6_load.FIGURE,
    p7_instances.FIGURE,
    p8_l2_hit.FIGURE,
    p9_rate_limit.FIGURE,
    p10_throughput.FIGURE,
    p11_cold_start.FIGURE,
    p12_fairness.FIGURE,
]


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    known = [f.number for f in FIGURES]
    parser.add_argument("figures", nargs="*", metavar="FIGURE", help=f"any of {', '.join(known)}")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: every figure with a few rounds, to check that the bench works; "
        "the numbers mean little and missed targets do not fail it",
    )
    args = parser.parse_args(argv)
    wanted = {name.upper() for name in args.figures} or set(known)
    unknown = wanted - set(known)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")

    rows: list[Row] = []
    notes: list[str] = []
    started = time.monotonic()
    with BenchContext(quick=args.quick) as ctx:
        for figure in FIGURES:
            if figure.number in wanted:
                print(f"{figure.number}: {figure.title}", file=sys.stderr, flush=True)
                result = figure.run(ctx)
                rows += result.rows
                notes += result.notes
    print(table(rows))
    print()
    for note in notes:
        print(note)
    print(f"Machine: {machine()}; {time.monotonic() - started:.0f} s in all.")
    if args.quick:
        print("A quick run (--quick): the figures above are not measurements.")
        return 0
    return 1 if any(row.met is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
