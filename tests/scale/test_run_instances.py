"""`DEVSTACK_API_INSTANCES=N make run`: N API hosts on consecutive ports, one process each after
the first, sharing the emulators; stack.env and the banner list them; stopping the stack, or
killing it outright, leaves no host process behind.

Each test runs `python -m devstack run` itself, as `make run` does, in a folder of its own (a
copy of the session's key material, so nothing is generated again) on free ports.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devstack.client import DevClient
from devstack.config import ROOT, read_env
from devstack.instances import instance_count
from devstack.pki import Material

pytestmark = pytest.mark.slow

START_TIMEOUT = 120.0  # three cold hosts and two emulators on a busy 2-core machine


def consecutive_free_ports(count: int) -> int:
    """A base port with `count` free ports from it, below the ephemeral range so that the
    kernel does not hand one of them to a client meanwhile."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        probes: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return base
    raise RuntimeError("no free consecutive ports")


def child_pids(parent: int) -> set[int]:
    """Processes whose parent is `parent` (Linux /proc): API hosts 2..N and the store."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    found.add(int(entry.name))
    return found


def host_pids(parent: int) -> set[int]:
    """The API host processes among `parent`'s children (not its valkey-server)."""
    found = set()
    for pid in child_pids(parent):
        with contextlib.suppress(OSError):
            if b"valkey-server" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := {p for p in pids if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@dataclass
class Run:
    process: subprocess.Popen[bytes]
    folder: Path
    output: Path

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def wait_running(self) -> dict[str, str]:
        deadline = time.monotonic() + START_TIMEOUT
        while "dev stack is running" not in self.text():
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.1)
        return read_env(self.folder / "stack.env")


RunStack = Callable[[int | str, int], Run]


@pytest.fixture
def run_stack(material: Material, tmp_path: Path) -> Iterator[RunStack]:
    """`run_stack(instances, api_port)` starts `python -m devstack run` in its own process group;
    whatever is left of it is killed when the test ends."""
    started: list[Run] = []

    def start(instances: int | str, api_port: int) -> Run:
        folder = tmp_path / f"stack{len(started)}"
        shutil.copytree(
            material.folder,
            folder,
            ignore=shutil.ignore_patterns("stack.env", "*.sqlite*", "ca-bundle.pem"),
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(tmp_path)),
            "LANG": "C.UTF-8",
            "DEVSTACK_DIR": str(folder),
            "DEVSTACK_ENTRA_PORT": "0",
            "DEVSTACK_DATAVERSE_PORT": "0",
            "DEVSTACK_REDIS_PORT": "0",
            "DEVSTACK_IDENTITY_PORT": "0",
            "DEVSTACK_API_PORT": str(api_port),
            "DEVSTACK_API_INSTANCES": str(instances),
        }
        output = tmp_path / f"run{len(started)}.out"
        with output.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "devstack", "run"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run = Run(process, folder, output)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait()


def customers(url: str, token: str, key: str) -> requests.Response:
    with requests.Session() as http:
        http.trust_env = False
        return http.get(
            f"{url}/api/customers",
            params={"pageSize": 1},
            headers={"Ocp-Apim-Subscription-Key": key, "Authorization": f"Bearer {token}"},
            timeout=60,
        )


def test_three_instances_on_consecutive_ports_all_answer_and_stop_together(
    run_stack: RunStack,
) -> None:
    base = consecutive_free_ports(3)
    run = run_stack(3, base)
    settings = run.wait_running()

    urls = [f"http://localhost:{base + n}" for n in range(3)]
    assert settings["DEVSTACK_API_URLS"].split(",") == urls
    assert settings["DEVSTACK_API_URL"] == urls[0]
    for url in urls:
        assert f"{url}/api/" in run.text()  # the banner shows every host

    children = child_pids(run.process.pid)
    assert len(host_pids(run.process.pid)) == 2  # hosts 2, 3; the first runs in the stack itself
    assert len(children) == 3  # and the store's valkey-server

    client = DevClient.from_stack(run.folder)
    token = client.user_token("alice")
    for url in urls:
        response = customers(url, token, settings["DEVSTACK_SUBSCRIPTION_KEY"])
        assert response.status_code == 200, (url, response.text)

    os.kill(run.process.pid, signal.SIGINT)  # Ctrl-C
    assert run.process.wait(60) == 0, run.text()
    assert wait_until_gone(children, 10) == set()
    for url in urls:
        with pytest.raises(requests.ConnectionError):
            customers(url, token, settings["DEVSTACK_SUBSCRIPTION_KEY"])


def test_hosts_and_store_exit_when_the_stack_is_killed_outright(run_stack: RunStack) -> None:
    run = run_stack(2, 0)
    run.wait_running()
    children = child_pids(run.process.pid)
    assert len(host_pids(run.process.pid)) == 1
    assert len(children) == 2  # host 2 and the valkey-server

    os.kill(run.process.pid, signal.SIGKILL)  # no chance to stop anything
    run.process.wait(30)
    # They notice within half a second and stop gracefully; on a loaded machine (the whole
    # suite at once) that has taken more than 10 s: the test is that they go, not how fast.
    assert wait_until_gone(children, 45) == set()


def test_a_busy_port_for_a_later_instance_is_a_one_line_error(run_stack: RunStack) -> None:
    base = consecutive_free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        run = run_stack(2, base)
        assert run.process.wait(60) == 2
    lines = run.text().strip().splitlines()
    assert len(lines) == 1, lines
    assert "api-host-2" in lines[0]
    assert f":{base + 1}" in lines[0]
    assert "DEVSTACK_API_PORT" in lines[0]


@pytest.mark.parametrize("value", ["0", "two", "-1", "65", "1.5"])
def test_a_bad_instance_count_names_the_setting(value: str) -> None:
    with pytest.raises(ValueError, match=r"^DEVSTACK_API_INSTANCES must be"):
        instance_count({"DEVSTACK_API_INSTANCES": value})
    assert instance_count({}) == 1


def test_make_run_refuses_a_bad_instance_count_in_one_line(run_stack: RunStack) -> None:
    run = run_stack("two", 0)
    assert run.process.wait(60) == 2
    assert run.text().strip() == "error: DEVSTACK_API_INSTANCES must be a whole number from 1 to 64"
