"""The dev stack's API data key: generated at run time, kept across runs, handed to the API
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
    first = ensure_material(tmp_path, load_tenant()).api_data_key
    assert len(base64.b64decode(first, validate=True)) == 32
    assert ensure_material(tmp_path, load_tenant()).api_data_key == first  # a restart
    assert ensure_material(tmp_path / "other", load_tenant()).api_data_key != first


def test_a_secrets_file_from_before_the_rename_gets_a_new_key(tmp_path: Path) -> None:
    # Compatibility with the old name: "page_token_key" is dropped, not kept beside the new key.
    secrets_file = tmp_path / "secrets.json"
    ensure_material(tmp_path, load_tenant())
    data = json.loads(secrets_file.read_text())
    old = data.pop("api_data_key")
    secrets_file.write_text(json.dumps({**data, "page_token_key": old}))

    key = ensure_material(tmp_path, load_tenant()).api_data_key
    assert len(base64.b64decode(key, validate=True)) == 32
    rewritten = json.loads(secrets_file.read_text())
    assert rewritten["api_data_key"] == key
    assert "page_token_key" not in rewritten
    assert rewritten["subscription_keys"] == data["subscription_keys"]  # the rest is kept


def test_the_api_and_core_tools_get_it(stack: RunningStack, tmp_path: Path) -> None:
    key = stack.settings["API_DATA_KEY"]
    assert key == stack.material.api_data_key
    assert Settings.from_env(stack.settings).data_key == base64.b64decode(key)

    folder = tmp_path / "devstack"
    folder.mkdir()
    shutil.copy(Path(stack.settings["DEVSTACK_DIR"]) / "stack.env", folder / "stack.env")
    assert read_env(folder / "stack.env")["API_DATA_KEY"] == key
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
    assert written["API_DATA_KEY"] == key
