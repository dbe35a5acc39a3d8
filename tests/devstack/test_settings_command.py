"""`make settings` (`python -m devstack settings`) never replaces a local.settings.json unless
told to: the file may hold a real tenant's settings typed in by hand."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devstack.__main__ import main
from devstack.config import ROOT

HAND_WRITTEN = '{"IsEncrypted": false, "Values": {"API_CLIENT_SECRET": "typed in by hand"}}\n'


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stack folder with a stack.env; local.settings.json goes next to it."""
    stack = tmp_path / ".devstack"
    stack.mkdir()
    (stack / "stack.env").write_text("AZURE_TENANT_ID=t\nDEVSTACK_API_URL=http://x\n")
    monkeypatch.setenv("DEVSTACK_DIR", str(stack))
    return tmp_path


def test_writes_a_new_file(folder: Path) -> None:
    assert main(["settings"]) == 0
    values = json.loads((folder / "local.settings.json").read_text())["Values"]
    assert values["AZURE_TENANT_ID"] == "t"
    assert "DEVSTACK_API_URL" not in values


def test_refuses_to_overwrite(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = folder / "local.settings.json"
    target.write_text(HAND_WRITTEN)
    assert main(["settings"]) == 1
    assert target.read_text() == HAND_WRITTEN
    assert "FORCE=1" in capsys.readouterr().err
    assert set(folder.iterdir()) == {folder / ".devstack", target}  # no backup copy either


def test_force_overwrites(folder: Path) -> None:
    target = folder / "local.settings.json"
    target.write_text(HAND_WRITTEN)
    assert main(["settings", "--force"]) == 0
    assert json.loads(target.read_text())["Values"]["AZURE_TENANT_ID"] == "t"


@pytest.mark.parametrize(("force", "expected"), [("", False), ("FORCE=1", True)])
def test_make_passes_force_on(force: str, expected: bool) -> None:
    dry = subprocess.run(
        ["make", "-n", "settings", *([force] if force else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    command = next(line for line in dry.stdout.splitlines() if "devstack settings" in line)
    assert command.endswith("--force") is expected
