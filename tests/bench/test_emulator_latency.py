"""`python -m bench.emulator_latency --quick` keeps working (bench/emulator_latency.py).

In a child process with a clean environment, as from a fresh shell. No timing is checked: only
that every target reports a row, answered every request, and that the emulator's own log holds
the fixed 100 ms it was set to for each one (the figure's denominator).
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
def test_a_quick_run_reports_every_target_with_its_logged_latency() -> None:
    env = {k: v for k, v in os.environ.items() if k in SHELL}
    done = subprocess.run(
        [sys.executable, "-m", "bench.emulator_latency", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| E1 |")]
    assert len(rows) == 3, done.stdout
    notes = [line for line in done.stdout.splitlines() if line.startswith("E1, ")]
    assert len(notes) == 3, done.stdout
    for note in notes:
        assert ": 0 errors; 100.0 ms of emulated latency per request" in note, note
