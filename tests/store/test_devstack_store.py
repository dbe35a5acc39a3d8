"""The dev stack runs the shared store: `start_stack` starts a valkey-server, `stack.env`
carries its URL, the banner shows it without its password, stopping the stack stops it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.__main__ import banner
from devstack.config import Ports, read_env
from devstack.stack import RunningStack, start_stack
from devstack.valkey import ValkeyServer


def test_stack_env_carries_the_store(stack: RunningStack) -> None:
    written = read_env(Path(stack.settings["DEVSTACK_DIR"]) / "stack.env")
    assert stack.valkey is not None
    assert written["REDIS_URL"] == stack.valkey.url
    assert written["DEVSTACK_REDIS_URL"] == stack.valkey.url


def test_banner_shows_the_store_but_not_its_password(stack: RunningStack) -> None:
    assert stack.valkey is not None
    text = banner(stack.settings)
    assert f"redis://127.0.0.1:{stack.valkey.port}/0" in text
    assert stack.valkey.password not in text


def test_redis_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Ports().redis == 7379
    monkeypatch.setenv("DEVSTACK_REDIS_PORT", "8379")
    assert Ports.from_env().redis == 8379


def test_stopping_the_stack_stops_the_store(tmp_path: Path) -> None:
    running = start_stack(
        tmp_path, ports=Ports(0, 0, 0, 0, 0, 0), db_path=tmp_path / "dv.sqlite", with_api=False
    )
    valkey = running.valkey
    try:
        assert isinstance(valkey, ValkeyServer)
        assert valkey.ping()
        assert valkey.folder == tmp_path / "valkey"
    finally:
        running.stop()
    assert not valkey.running
    assert not valkey.ping(timeout=0.2)
