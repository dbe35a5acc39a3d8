"""The dev stack's page token key: generated at run time, kept across runs, handed to the API
through stack.env and on to Core Tools through `make settings` (`python -m devstack settings`)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from devstack.config import ROOT, read_env
from devstack.pki import ensure_material
from devstack.stack import RunningStack
from devstack.tenant import load_tenant
from shared.settings import Settings


def test_generated_once_and_kept(tmp_path: Path) -> None:
    first = ensure_material(tmp_path, load_tenant()).page_token_key
    assert len(base64.b64decode(first, validate=True)) == 32
    assert ensure_material(tmp_path, load_tenant()).page_token_key == first  # a restart
    assert ensure_material(tmp_path / "other", load_tenant()).page_token_key != first


def test_the_api_and_core_tools_get_it(stack: RunningStack, tmp_path: Path) -> None:
    key = stack.settings["PAGE_TOKEN_KEY"]
    assert key == stack.material.page_token_key
    assert Settings.from_env(stack.settings).page_token_key == base64.b64decode(key)

    folder = tmp_path / "devstack"
    folder.mkdir()
    shutil.copy(Path(stack.settings["DEVSTACK_DIR"]) / "stack.env", folder / "stack.env")
    assert read_env(folder / "stack.env")["PAGE_TOKEN_KEY"] == key
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "settings"],
        cwd=ROOT,
        env={**os.environ, "DEVSTACK_DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "local.settings.json").read_text())["Values"]
    assert written["PAGE_TOKEN_KEY"] == key
