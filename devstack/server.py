"""Serve an ASGI app with uvicorn on a background thread, optionally over TLS.

Used the same way by `make run` and by the test fixtures: bind a socket first (port 0 picks a
free one), then serve on it, so the URL is known before any client starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn


def listen(name: str, port: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """A listening TCP socket; OSError naming `name` and the port when it is taken."""
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only for sockets whose proto
    # says TCP, and without it every response with a body waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(512)
    return sock


class ServerThread:
    """A listening socket now, a server once `start(app)` is called."""

    def __init__(
        self,
        *,
        name: str,
        port: int = 0,
        host: str = "127.0.0.1",
        tls: tuple[Path, Path] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        """`sock`: serve on this listening socket (one a parent process bound and handed down,
        devstack/instances.py) instead of binding `host:port`."""
        self.name = name
        self._sock = sock if sock is not None else listen(name, port, host)
        self.port: int = self._sock.getsockname()[1]
        self.scheme = "https" if tls else "http"
        self._tls = tls
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://localhost:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        assert self._server is not None
        self._loop = asyncio.get_running_loop()
        await self._server.serve(sockets=[self._sock])

    async def _drop_connections(self) -> None:
        """Close every client connection now: a test client's idle keep-alive connection (or
        a TLS peer that never answers close_notify) must not hold the shutdown up."""
        assert self._server is not None
        for connection in list(self._server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()

    def start(
        self, app: Any, timeout: float = 20.0, *, max_header_read: int | None = None
    ) -> ServerThread:
        """Serve `app`; the URL is known before this is called, so the app can be built with it.
        `max_header_read`: how many bytes of a request head to read before answering 400
        (uvicorn's default, 16 KB, when None)."""
        config = uvicorn.Config(
            app,
            h11_max_incomplete_event_size=max_header_read,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=30,
            ssl_certfile=str(self._tls[0]) if self._tls else None,
            ssl_keyfile=str(self._tls[1]) if self._tls else None,
        )
        server = self._server = uvicorn.Server(config)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"{self.name} stopped while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None and self._loop is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._drop_connections(), self._loop).result(2)
            self._server.should_exit = True
            self._thread.join(timeout)
        self._sock.close()
