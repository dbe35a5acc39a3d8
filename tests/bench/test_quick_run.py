"""`make bench` keeps working: a quick run (`python -m bench --quick`) of every figure.

The bench runs in a child process with a clean environment, as from a fresh shell, because it
starts its own dev stacks and sets process-wide settings. The numbers are not checked (no test
depends on timing); what is checked is that every figure runs and reports, and the figures that
are counts rather than times: one On-Behalf-Of exchange for one user's token, no more Dataverse
connections than the pool, and no errors under 50 concurrent clients; and across 8 API instances
(P7), one exchange for one user's token with the shared store, one per instance without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHELL = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


@pytest.mark.slow
def test_a_quick_run_reports_every_figure() -> None:
    env = {k: v for k, v in os.environ.items() if k in SHELL}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| P")]
    figures = sorted({row[0].lstrip("| ") for row in rows})
    expected = {"P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "P11", "P12"}
    assert expected <= set(figures), figures
    counted = {row[1]: row[4].rstrip(" |") for row in rows if row[0] in ("| P3", "| P6")}
    assert [met for figure, met in counted.items() if "p99" not in figure] == ["yes"] * 3, rows
    # P7: (measured, target, met) of the rows with the store, then of those without it.
    p7 = [row for row in rows if row[0] == "| P7"]
    instances = [(row[2].split()[0], row[3], row[4].rstrip(" |")) for row in p7]
    assert instances[:2] == [("1", "1", "yes")] * 2, rows
    assert [measured for measured, _, _ in instances[2:]] == ["8", "8"], rows
