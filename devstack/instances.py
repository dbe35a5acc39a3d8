"""API host instances as separate OS processes, as Azure runs them when an app scales out.

In Azure every instance of the function app is its own process with its own memory: its own
`shared.runtime.runtime()` (caches, MSAL clients, connection pools), reading its settings from
the environment. The dev stack's first API host runs on a thread of the stack's process; this
module adds more hosts the way Azure does, one process each:

    hosts = HostGroup.start([listen("api-host-2", 7072)], env=os.environ | settings)
    hosts.instances   # [Instance(url="http://localhost:7072", pid=...)]
    hosts.stop()      # SIGTERM to each process group, SIGKILL after a bound, always reaped

The parent binds every listening socket and hands it down (`pass_fds`): a busy port fails in the
parent with the same one-line error as the in-process host, and a port of 0 is known without the
child reporting it. Each child is `python -m devstack host --fd N --no-env-file
--exit-with-parent` (`serve` below): settings from the environment the parent gives it (the
worker's thread count and the HTTP concurrency among them, devstack/host/_limits.py), nothing
printed but one line (its URL and those two), a clean exit on SIGTERM or SIGINT, and an exit of
its own when its parent dies without stopping it (a killed `make run` or test run leaves no host
behind).

A child counts as ready when its HTTP server answers the host's root page (`GET /`): that proves
it imported the function app and serves, without building the API's runtime or fetching
anything, so an instance starts cold as a new Azure instance does.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from devstack.config import ROOT, read_env, stack_dir
from devstack.server import ServerThread, listen

__all__ = [
    "HostGroup",
    "HostStartError",
    "Instance",
    "child_environment",
    "instance_count",
    "listen",
    "serve",
]

START_TIMEOUT = 60.0  # a cold import of the function app on a busy 2-core machine
STOP_TIMEOUT = 10.0
INSTANCES_SETTING = "DEVSTACK_API_INSTANCES"


class HostStartError(RuntimeError):
    """A host process exited, or did not answer, while starting."""


@dataclass(frozen=True)
class Instance:
    """One running API host process."""

    name: str
    url: str
    pid: int
    port: int


def instance_count(environ: Mapping[str, str] = os.environ) -> int:
    """DEVSTACK_API_INSTANCES: how many API hosts `make run` starts (default 1)."""
    raw = environ.get(INSTANCES_SETTING, "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise ValueError(f"{INSTANCES_SETTING} must be a whole number from 1 to 64")
    return int(raw)


def child_environment(base: Mapping[str, str], *layers: Mapping[str, str | None]) -> dict[str, str]:
    """`base` with each layer applied in turn; a value of None removes the setting (an instance
    started without, say, REDIS_URL although the stack has one)."""
    env = dict(base)
    for layer in layers:
        for name, value in layer.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
    return env


class _Host:
    """One child process serving the API on a socket its parent bound."""

    def __init__(
        self,
        name: str,
        sock: socket.socket,
        *,
        env: Mapping[str, str],
        function_app: str,
        log: Path | None,
    ) -> None:
        self.name = name
        self.port: int = sock.getsockname()[1]
        self.url = f"http://localhost:{self.port}"
        self.log = log
        fd = sock.fileno()
        output: IO[bytes] | None = log.open("ab") if log is not None else None
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [
                    sys.executable,
                    "-m",
                    "devstack",
                    "host",
                    "--fd",
                    str(fd),
                    "--name",
                    name,
                    "--function-app",
                    function_app,
                    "--no-env-file",
                    "--exit-with-parent",
                ],
                cwd=ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                pass_fds=(fd,),
                # Its own process group: stopped as a whole, and a terminal's Ctrl-C reaches the
                # parent only, which then stops the hosts in order.
                start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()

    @property
    def instance(self) -> Instance:
        return Instance(self.name, self.url, self.process.pid, self.port)

    def wait_ready(self, deadline: float) -> None:
        while True:
            code = self.process.poll()
            if code is not None:
                raise HostStartError(f"{self.name} exited with {code} while starting{self._tail()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise HostStartError(f"{self.name} did not answer within the start timeout")
            time.sleep(0.05)

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
        except OSError:
            return False
        finally:
            connection.close()
        return True

    def _tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        return ":\n" + "\n".join(lines) if lines else ""

    def signal(self, sig: signal.Signals) -> None:
        if self.process.returncode is None:
            # Not yet reaped, so the group id (= its pid) cannot belong to anyone else.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def reap(self, deadline: float) -> None:
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()


class HostGroup:
    """API hosts as child processes, one per socket; `stop()` ends and reaps every one."""

    def __init__(self, hosts: list[_Host]) -> None:
        self._hosts = hosts

    @classmethod
    def start(
        cls,
        sockets: Iterable[tuple[str, socket.socket]],
        *,
        env: Mapping[str, str],
        function_app: str = "function_app",
        log_dir: Path | None = None,
        timeout: float = START_TIMEOUT,
    ) -> HostGroup:
        """A host process per `(name, listening socket)`, started together, returned once each
        answers. The sockets are closed here (the children keep their copies). `log_dir`: each
        child's output goes to `<name>.log` there; None leaves it on this process's terminal."""
        group = cls([])
        pending = list(sockets)
        try:
            while pending:
                name, sock = pending.pop(0)
                try:
                    log = log_dir / f"{name}.log" if log_dir is not None else None
                    group._hosts.append(
                        _Host(name, sock, env=env, function_app=function_app, log=log)
                    )
                finally:
                    sock.close()
            deadline = time.monotonic() + timeout
            for host in group._hosts:
                host.wait_ready(deadline)
        except BaseException:
            for _, sock in pending:
                sock.close()
            group.stop()
            raise
        return group

    @property
    def instances(self) -> list[Instance]:
        return [host.instance for host in self._hosts]

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to every host at once, then wait; SIGKILL whatever outlives `timeout`."""
        for host in self._hosts:
            host.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for host in self._hosts:
            host.reap(deadline)


# --- the child: python -m devstack host ----------------------------------------------------


def serve(
    *,
    port: int | None,
    fd: int | None,
    name: str,
    env_file: Path | None,
    function_app: str,
    exit_with_parent: bool,
) -> int:
    """Serve the API on `port` (or the inherited listening socket `fd`) until SIGTERM/SIGINT.

    `env_file` is applied over the environment exactly as `make run` exports stack.env before
    its own host starts; without one the settings are the environment's, as the Functions worker
    reads them. So are the host's thread count and concurrency (devstack/host/_limits.py): a
    malformed one is a one-line error and exit status 2, before the socket is served."""
    from devstack.host import HOST_MAX_HEADER_READ, HostConfigError, InstanceLimits, create_app

    if env_file is not None:
        os.environ.update(read_env(env_file))
    try:
        limits = InstanceLimits.from_env()
    except HostConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sock = socket.socket(fileno=fd) if fd is not None else None
    try:
        server = ServerThread(name=name, port=port or 0, sock=sock)
    except OSError as exc:
        print(f"error: {exc}; choose another port with --port", file=sys.stderr)
        return 2
    try:
        server.start(create_app(function_app, limits=limits), max_header_read=HOST_MAX_HEADER_READ)
        print(
            f"{name} listening on {server.url}/api/ (pid {os.getpid()}; {limits.describe()})",
            flush=True,
        )
        if exit_with_parent:
            _exit_with_parent(stop)
        stop.wait()
    finally:
        server.stop()
    return 0


def _exit_with_parent(stop: threading.Event) -> None:
    """Set `stop` when this process's parent is gone (it is re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def default_env_file() -> Path | None:
    path = stack_dir() / "stack.env"
    return path if path.exists() else None
