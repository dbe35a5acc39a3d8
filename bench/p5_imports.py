"""P5: time to `import function_app` ÷ time to `import azure.functions` alone.

Each measurement is a fresh interpreter (`python -c`) that times the one import statement with
`perf_counter`, so interpreter start-up counts on neither side. Runs alternate between the two;
one untimed run of each comes first so that bytecode caches exist. The ratio is the median of
the per-pair ratios.

The notes list what importing `function_app` costs beyond `azure.functions`, from one
`python -X importtime` run: each third-party or standard-library module that one of our
modules imports directly, with its cumulative time. Those are the imports to defer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.context import BenchContext
from bench.core import Figure, Result, paired, ratio_row

ROOT = Path(__file__).resolve().parent.parent
RUNS = 21
OURS = ("function_app", "shared")
_TIMED = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


def _env() -> dict[str, str]:
    # The import must not depend on settings (they are read at the first request), so none
    # are passed; nor bytecode-writing tweaks or our own CA.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    return {k: v for k, v in os.environ.items() if k in keep}


def import_seconds(module: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _TIMED.format(module)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip())


@dataclass
class _Node:
    name: str
    cumulative_us: int
    children: list[_Node]


def _import_tree(code: str) -> list[_Node]:
    """The `-X importtime` report as a forest (it prints each module after its children)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    stack: list[tuple[int, _Node]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue  # the header line
        depth = (len(name) - len(name.lstrip())) // 2
        children: list[_Node] = []
        while stack and stack[-1][0] > depth:
            children.insert(0, stack.pop()[1])
        stack.append((depth, _Node(name.strip(), int(cumulative), children)))
    return [node for _, node in stack]


def _ours(name: str) -> bool:
    return name.split(".")[0] in OURS


def heavy_imports(limit: int = 10, floor_ms: float = 1.0) -> list[tuple[str, str, float]]:
    """(our module, what it imports, ms) for the costliest imports our modules make directly,
    beyond what `azure.functions` already loaded."""
    forest = _import_tree("import azure.functions; import function_app")
    found: list[tuple[str, str, float]] = []

    def walk(node: _Node) -> None:
        for child in node.children:
            if _ours(node.name) and not _ours(child.name):
                found.append((node.name, child.name, child.cumulative_us / 1000))
            walk(child)

    for root in forest:
        if root.name == "function_app":
            walk(root)
    found.sort(key=lambda item: -item[2])
    return [item for item in found if item[2] >= floor_ms][:limit]


def run(ctx: BenchContext) -> Result:
    ctx.progress("P5: imports in fresh processes")
    import_seconds("azure.functions")
    import_seconds("function_app")
    measured = paired(
        lambda _: import_seconds("function_app"),
        lambda _: import_seconds("azure.functions"),
        rounds=ctx.scaled(RUNS, 3),
    )
    notes = ["P5: what importing function_app adds beyond azure.functions (-X importtime):"]
    heavy = heavy_imports()
    notes += [f"  {ms:6.1f} ms  {ours} imports {module}" for ours, module, ms in heavy]
    if not heavy:
        notes.append("  nothing over 1 ms")
    return Result(
        [
            ratio_row(
                "P5",
                "import function_app ÷ import azure.functions, fresh processes",
                measured,
                2.0,
                unit="ms",
            )
        ],
        notes,
    )


FIGURE = Figure("P5", "import function_app ÷ import azure.functions", run)
