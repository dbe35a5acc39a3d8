"""devstack.valkey: a real valkey-server child process, configured as a cache, always reaped."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from devstack.valkey import ValkeyServer, free_port


def test_runs_as_a_cache_on_localhost_with_a_password(tmp_path: Path) -> None:
    with ValkeyServer(tmp_path, maxmemory="8mb") as server:
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
            config = client.config_get("*")
            assert config["bind"].split() == ["127.0.0.1"]
            assert config["save"] == ""
            assert config["appendonly"] == "no"
            assert config["maxmemory"] == str(8 * 1024 * 1024)
            assert config["maxmemory-policy"] == "allkeys-lru"
            assert config["dir"] == str(tmp_path)
        finally:
            client.close()
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
        finally:
            anonymous.close()
        assert server.password not in repr(server)
        assert (tmp_path / "valkey.conf").stat().st_mode & 0o077 == 0


def test_stop_reaps_and_restart_keeps_port_and_password(tmp_path: Path) -> None:
    server = ValkeyServer(tmp_path).start()
    try:
        process = server._process
        assert process is not None
        url = server.url
        server.restart()
        assert process.returncode is not None  # reaped, not a zombie
        assert server.url == url
        assert server.ping()
        server.pause()
        assert not server.ping(timeout=0.2)
        server.resume()
        assert server.ping()
        server.pause()
    finally:
        server.stop()  # also stops a paused server
    assert not server.running
    server.stop()  # twice is fine


def test_given_port_and_port_in_use(tmp_path: Path) -> None:
    port = free_port()
    with ValkeyServer(tmp_path / "a", port=port) as server:
        assert server.port == port
        with pytest.raises(OSError, match=str(port)):
            ValkeyServer(tmp_path / "b", port=port).start()


def test_session_fixture_serves(valkey: ValkeyServer) -> None:
    assert valkey.running
    assert valkey.ping()
