"""The sample SPA's place in the stack: its address in the banner, CORS in stack.env and in the
local.settings.json that `make settings` writes, and a malformed CORS setting stopping the start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.__main__ import banner
from devstack.config import ROOT, Ports
from devstack.host import HostConfigError
from devstack.stack import RunningStack, start_stack


def test_the_banner_shows_the_spa_and_its_cors_origin(stack: RunningStack) -> None:
    text = banner(stack.settings)
    line = next(x for x in text.splitlines() if "Sample SPA" in x)
    assert f"{stack.spa_url}/" in line
    assert "the API allows it by CORS" in line


def test_make_settings_gives_core_tools_the_same_cors(stack: RunningStack, tmp_path: Path) -> None:
    folder = tmp_path / ".devstack"
    folder.mkdir()
    (folder / "stack.env").write_text(
        (Path(stack.settings["DEVSTACK_DIR"]) / "stack.env").read_text()
    )
    env = {**os.environ, "DEVSTACK_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "local.settings.json").read_text())
    assert written["Host"] == {"CORS": stack.spa_url, "CORSCredentials": False}
    assert not any(name.startswith("DEVSTACK_") for name in written["Values"])


@pytest.mark.parametrize(
    "bad", [{"DEVSTACK_CORS": "localhost:7070"}, {"DEVSTACK_CORS_CREDENTIALS": "maybe"}]
)
def test_a_malformed_cors_setting_stops_the_start(tmp_path: Path, bad: dict[str, str]) -> None:
    with pytest.raises(HostConfigError, match=next(iter(bad))):
        start_stack(
            tmp_path,
            ports=Ports(0, 0, 0, 0, 0, 0),
            db_path=tmp_path / "dv.sqlite",
            host_settings=bad,
        )
    assert not (tmp_path / "stack.env").exists()  # nothing started
