"""P10's emulators and shared store, in a process of their own, apart from the load's clients.

Under `make run` the emulators share one Python process (and its GIL) with whatever else runs in
it; in P10's first form that was the load's clients too, and at 32 and 64 requests in flight that
process, not the API, was the limit (0.8 of a core for it, 0.27 for the API). Here a spawned child
runs `start_stack(with_api=False)`: the Entra and Dataverse emulators and the managed-identity
endpoint on threads of its own, and its valkey-server (a process of its own, the child's child).
The parent talks to it over a pipe, never through shared state:

- `"cpu"`: the child's CPU seconds (utime + stime of all its threads, `time.process_time()`);
- `("token", user)`: a token for `user`, issued anew (see `BenchContext.new_stack_token`);
- `("reads", since)`: the Dataverse emulator's request log after `since` (seq, latency class,
  latency_ms only), and its last seq.

Its settings (URLs, the CA bundle, the store's URL and password) come back once, at start, as the
API hosts' environment.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

TOKEN_LIFETIME = 3600
START_TIMEOUT = 120.0


def _serve(conn: Connection, folder: str) -> None:
    import jwt

    from devstack.client import DevClient
    from devstack.config import Ports
    from devstack.stack import start_stack

    stack = start_stack(
        Path(folder),
        ports=Ports(0, 0, 0, 0, 0, 0),
        db_path=Path(folder) / "dataverse.sqlite",
        with_api=False,
    )
    entra = stack.entra_app.state.entra
    control = stack.dataverse_app.state.dataverse.control
    claims: dict[str, dict[str, Any]] = {}
    valkey_pid = stack.valkey.pid if stack.valkey else None
    conn.send({"settings": stack.settings, "valkey_pid": valkey_pid})
    try:
        while True:
            message = conn.recv()
            if message == "cpu":
                conn.send(time.process_time())
            elif message == "seq":
                log = control.requests(0)  # a copy of the log; only at the window's edges
                conn.send(log[-1]["seq"] if log else 0)
            elif message[0] == "token":
                user = message[1]
                if user not in claims:
                    issued = DevClient.from_stack(Path(folder)).user_token(user)
                    claims[user] = jwt.decode(issued, options={"verify_signature": False})
                now = int(time.time())
                fresh = {**claims[user], "uti": uuid.uuid4().hex[:22]}
                fresh.update(iat=now, nbf=now, exp=now + TOKEN_LIFETIME)
                conn.send(str(entra.sign(fresh)))
            elif message[0] == "reads":
                log = control.requests(message[1])
                conn.send(
                    [
                        (entry["seq"], entry.get("latency_class"), entry.get("latency_ms"))
                        for entry in log
                    ]
                )
            else:
                break
    except EOFError:
        pass
    finally:
        stack.stop()


class EmulatorProcess:
    """The emulators and the store in a spawned child (nothing of this process goes along)."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="central-api-bench-p10-")
        spawn = multiprocessing.get_context("spawn")
        self._conn, child = spawn.Pipe()
        self.process = spawn.Process(target=_serve, args=(child, self._folder.name), daemon=True)
        self.process.start()
        child.close()
        if not self._conn.poll(START_TIMEOUT):
            self.stop()
            raise RuntimeError("P10's emulators did not start in time")
        started: dict[str, Any] = self._conn.recv()
        self.settings: dict[str, str] = started["settings"]
        self.valkey_pid: int | None = started["valkey_pid"]
        self.folder = Path(self._folder.name)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def token(self, user: str) -> str:
        self._conn.send(("token", user))
        return str(self._conn.recv())

    def last_seq(self) -> int:
        self._conn.send("seq")
        return int(self._conn.recv())

    def cpu_seconds(self) -> float:
        self._conn.send("cpu")
        return float(self._conn.recv())

    def reads(self, since: int) -> list[tuple[int, str | None, float | None]]:
        self._conn.send(("reads", since))
        answer: list[tuple[int, str | None, float | None]] = self._conn.recv()
        return answer

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send("stop")
        self._conn.close()
        self.process.join(15)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self._folder.cleanup()
