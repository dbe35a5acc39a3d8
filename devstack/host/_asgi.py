"""The HTTP face of the host: an ASGI app in front of a `FunctionsRouter`.

Limits as the Functions host documents them: a request body over 100 MB (104,857,600 bytes)
is answered 413 (before reading it when `Content-Length` says so), a URL over 4 KB (path and
query, 4,096 bytes) 414, and request headers over Kestrel's 32 KB in all (each header's name and
value plus `: ` and CRLF) 431. All with an empty body, like every answer the host makes itself.
The server in front (uvicorn's h11) must be told to read that much: `HOST_MAX_HEADER_READ`.
A response header value that is not ASCII is a 500, as Kestrel refuses to send one.

The function receives the URL as the client sent it (scheme, `Host` header, raw path, raw
query), and the body only when the request declared a `Content-Length`: the host passes a
chunked body to out-of-process workers as empty (azure-functions-host#4926), and so does this.

Per-instance HTTP concurrency (`concurrency`, `_limits`): at most that many requests are inside
the host at once, from the moment one is let in until its response is sent; the others wait in
order of arrival (`_gate`) and none is refused. The wait happens before the function runs, as
at Azure's front end, so it is not spent of the API's own request budget. Two headers that
only the dev host adds tell a benchmark where a request's time went:

- `x-devstack-queue-ms`: how long it waited for a place (0 when there was one at once);
- `x-devstack-worker-wait-ms`: how long the invocation then waited for a worker thread (sync
  functions) or for the event loop (async ones); absent when no function ran.

CORS (`_cors`): a preflight from a browser is answered here, 204, before the gate and before any
function (its log line names `CORS preflight`); every other answer to an allowed origin gets the
CORS headers, whoever gave it.

One log line per request on `devstack.host`: method, raw path (never the query, which
may hold keys), the function that answered, status, duration, time queued. Headers and bodies
are never logged, and nothing about a failure reaches the client beyond its status.
"""

from __future__ import annotations

import logging
import time

import azure.functions as func
from starlette.types import Message, Receive, Scope, Send

from devstack.host._cors import CorsPolicy
from devstack.host._gate import ConcurrencyGate
from devstack.host._http import join_headers, query_params
from devstack.host._limits import DEFAULT_CONCURRENCY
from devstack.host._router import FunctionsRouter, Handled

logger = logging.getLogger("devstack.host")

MAX_BODY_SIZE = 104_857_600
MAX_URL_LENGTH = 4096
MAX_HEADERS_SIZE = 32_768  # Kestrel's MaxRequestHeadersTotalSize
# How much of a request head the HTTP server reads before it gives up with its own 400: enough
# that a request just over MAX_HEADERS_SIZE reaches the host and gets Kestrel's 431.
HOST_MAX_HEADER_READ = 1_048_576
_NO_BODY_STATUSES = frozenset({204, 304})
QUEUE_HEADER = "x-devstack-queue-ms"
WORKER_WAIT_HEADER = "x-devstack-worker-wait-ms"


class _Disconnected(Exception):
    pass


class HostApp:
    """ASGI app; `router` is the in-process handle on the same functions, `gate` the
    per-instance concurrency (`gate.inside`, `gate.waiting`), `cors` the CORS policy."""

    def __init__(
        self,
        router: FunctionsRouter,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_body_size: int = MAX_BODY_SIZE,
        max_url_length: int = MAX_URL_LENGTH,
        max_headers_size: int = MAX_HEADERS_SIZE,
        cors: CorsPolicy | None = None,
    ) -> None:
        self.router = router
        self.cors = cors or CorsPolicy()
        self.gate = ConcurrencyGate(concurrency)
        self.max_body_size = max_body_size
        self.max_url_length = max_url_length
        self.max_headers_size = max_headers_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.router.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = raw_path.decode("utf-8", "replace")
        outcome = "-"
        status = 500
        sent = False
        headers = join_headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        )
        # Kestrel refuses oversized headers before any middleware, the CORS one included.
        oversized = _headers_size(scope) > self.max_headers_size
        preflight = None if oversized else self.cors.preflight(method, headers)
        if preflight is not None:
            await send(_start(204, preflight))
            await send({"type": "http.response.body", "body": b""})
            elapsed = (time.perf_counter() - started) * 1000
            logger.info("%s %s CORS preflight 204 %.1f ms", method, path, elapsed)
            return
        await self.gate.enter()
        queued = time.perf_counter() - started
        try:
            handled = await self._answer(scope, receive, method, raw_path, path, headers)
            outcome = handled.function.name if handled.function else "-"
            status = handled.response.status_code
            start, body = _wire(handled.response, head=method == "HEAD")
            start["headers"].extend(_timing(queued, handled.worker_wait))
            start["headers"].extend(self.cors.response_headers(headers))
            sent = True
            await send(start)
            await send(body)
        except _Disconnected:
            outcome, status = "client disconnected", 499
        except Exception:
            logger.exception("%s %s: the host failed", method, path)
            status = 500
            if not sent:
                cors = self.cors.response_headers(headers)
                await send(_start(500, [(b"content-length", b"0"), *_timing(queued, None), *cors]))
                await send({"type": "http.response.body", "body": b""})
        finally:
            self.gate.leave()
            elapsed = (time.perf_counter() - started) * 1000
            logger.info(
                "%s %s %s %d %.1f ms, queued %.1f ms",
                method, path, outcome, status, elapsed, queued * 1000,
            )  # fmt: skip

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        method: str,
        raw_path: bytes,
        path: str,
        headers: dict[str, str],
    ) -> Handled:
        query: bytes = scope.get("query_string", b"")
        if len(raw_path) + len(query) + (1 if query else 0) > self.max_url_length:
            return Handled(func.HttpResponse(status_code=414), None)
        if _headers_size(scope) > self.max_headers_size:
            return Handled(func.HttpResponse(status_code=431), None)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_size:
            return Handled(func.HttpResponse(status_code=413), None)
        body = await _read_body(receive, self.max_body_size)
        if body is None:
            return Handled(func.HttpResponse(status_code=413), None)
        if body and not (declared.isdigit() and int(declared) > 0):
            # The host hands a worker the body only when Content-Length is set (chunked
            # uploads arrive empty): reproduced so such clients fail here too, not only in Azure.
            logger.warning(
                "%s %s: body without Content-Length dropped, as the host does", method, path
            )
            body = b""
        server = scope.get("server") or ("localhost", None)
        host = headers.get("host") or (f"{server[0]}:{server[1]}" if server[1] else server[0])
        query_text = query.decode("utf-8", "replace")
        url = f"{scope.get('scheme', 'http')}://{host}{path}"
        req = func.HttpRequest(
            method=method,
            url=f"{url}?{query_text}" if query_text else url,
            headers=headers,
            params=query_params(query_text),
            route_params={},
            body=body,
        )
        return await self.router.handle(req)


def _headers_size(scope: Scope) -> int:
    """Kestrel's count: each header's name and value plus `: ` and CRLF."""
    return sum(len(name) + len(value) + 4 for name, value in scope["headers"])


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it outgrows `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _wire(response: func.HttpResponse, *, head: bool) -> tuple[Message, Message]:
    status: int = response.status_code
    body = response.get_body()
    headers = [
        (name.lower().encode("ascii"), value.encode("ascii"))
        for name, value in response.headers.items()
    ]
    if status < 200 or status in _NO_BODY_STATUSES:
        body = b""
    else:
        headers.append((b"content-length", str(len(body)).encode("ascii")))
    return _start(status, headers), {"type": "http.response.body", "body": b"" if head else body}


def _timing(queued: float, worker_wait: float | None) -> list[tuple[bytes, bytes]]:
    headers = [(QUEUE_HEADER.encode("ascii"), f"{queued * 1000:.1f}".encode("ascii"))]
    if worker_wait is not None:
        headers.append((WORKER_WAIT_HEADER.encode("ascii"), f"{worker_wait * 1000:.1f}".encode()))
    return headers


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers}
