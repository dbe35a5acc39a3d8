"""Call functions and turn what they return into responses, as the Python worker does.

- Sync functions run on a thread pool of `threads` (the worker's PYTHON_THREADPOOL_THREAD_COUNT;
  None: the worker's default, `ThreadPoolExecutor`'s min(32, CPUs + 4), see `_limits`); an
  invocation arriving while every thread is busy waits in the pool's queue, as in the worker.
  Async functions run on one event loop of the worker's own, on its own thread, for every
  caller: HTTP and in-process dispatch alike.
- Each invocation reports how long it waited between being handed to the worker and the function
  starting (`Invocation.worker_wait`): for a thread, or for the event loop to pick it up.
- The `$return` value: a `func.HttpResponse` as built; a `str` is a 200 `text/plain;
  charset=utf-8`; anything else (None, bytes, dict) is the worker's encoding error, so a 500.
  An HTTP output passed as `func.Out` that is left unset gives 204 No Content, the host's
  default answer.
- Response headers as the worker and host pass them on: a `Content-Type` from `mimetype` and
  `charset` when the function set none (`charset` only for `text/*`), every `Set-Cookie` kept,
  any other repeated header reduced to its last value; `Content-Length`, `Transfer-Encoding`
  and `Connection` are the server's, not the function's.
- An exception in the function is logged with its traceback (logger `devstack.host`) and
  answered 500 with an empty body: the host never shows it to the client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from devstack.host._context import InvocationContext, bind_thread, new_context
from devstack.host._functions import HttpFunction

logger = logging.getLogger("devstack.host")

_SERVER_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class _Out(func.Out[Any]):
    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


@dataclass(frozen=True)
class Invocation:
    response: func.HttpResponse
    worker_wait: float  # seconds from the hand-over to the function starting


class Worker:
    def __init__(self, *, threads: int | None, directory: str) -> None:
        self._directory = directory
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="devstack-host")
        self.threads: int = self._pool._max_workers  # what the executor chose when given None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    def submit(self, function: HttpFunction, req: func.HttpRequest) -> Future[Invocation]:
        context = new_context(function.name, self._directory, req.headers)
        outs = {name: _Out() for name in function.out_args}
        kwargs: dict[str, Any] = {function.trigger_arg: req, **outs}
        if function.wants_context:
            kwargs["context"] = context
        handed = time.perf_counter()
        if function.is_async:
            coroutine = self._run_async(function, kwargs, context, outs, handed)
            return asyncio.run_coroutine_threadsafe(coroutine, self._event_loop())
        return self._pool.submit(self._run_sync, function, kwargs, context, outs, handed)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            loop, thread, self._loop = self._loop, self._loop_thread, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="devstack-host-loop", daemon=True
                )
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    def _run_sync(
        self,
        function: HttpFunction,
        kwargs: dict[str, Any],
        context: InvocationContext,
        outs: dict[str, _Out],
        handed: float,
    ) -> Invocation:
        waited = time.perf_counter() - handed
        bind_thread(context)
        try:
            return Invocation(_response(function, function.call(**kwargs), outs), waited)
        except Exception:
            return Invocation(_failed(function, context), waited)

    async def _run_async(
        self,
        function: HttpFunction,
        kwargs: dict[str, Any],
        context: InvocationContext,
        outs: dict[str, _Out],
        handed: float,
    ) -> Invocation:
        waited = time.perf_counter() - handed
        try:
            return Invocation(_response(function, await function.call(**kwargs), outs), waited)
        except Exception:
            return Invocation(_failed(function, context), waited)


def _failed(function: HttpFunction, context: InvocationContext) -> func.HttpResponse:
    logger.exception("function %s failed (invocation %s)", function.name, context.invocation_id)
    return func.HttpResponse(status_code=500)


def _response(function: HttpFunction, result: Any, outs: dict[str, _Out]) -> func.HttpResponse:
    if function.has_return:
        return _encode(result)
    if result is not None:
        raise RuntimeError(f"function {function.name!r} without a $return binding returned a value")
    for out in outs.values():
        if out.get() is not None:
            return _encode(out.get())
    return func.HttpResponse(status_code=204)


def _encode(value: Any) -> func.HttpResponse:
    if isinstance(value, str):
        return func.HttpResponse(value, headers={"Content-Type": "text/plain; charset=utf-8"})
    if isinstance(value, func.HttpResponse):
        return _normalized(value)
    raise TypeError(
        'unable to encode outgoing TypedData: unsupported type "http" '
        f"for Python type {type(value).__name__!r}"
    )


def _normalized(response: func.HttpResponse) -> func.HttpResponse:
    pairs: list[tuple[str, str]] = list(response.headers.items())
    if not any(name.lower() == "content-type" for name, _ in pairs):
        mimetype: str = response.mimetype
        if mimetype.startswith("text/"):
            mimetype = f"{mimetype}; charset={response.charset}"
        pairs.append(("Content-Type", mimetype))
    last: dict[str, tuple[str, str]] = {}
    cookies: list[str] = []
    for name, value in pairs:
        key = name.lower()
        if key == "set-cookie":
            cookies.append(value)
        elif key not in _SERVER_HEADERS:
            last[key] = (name, value)
    result = func.HttpResponse(
        response.get_body(),
        status_code=response.status_code,
        mimetype=response.mimetype,
        charset=response.charset,
    )
    for name, value in [*last.values(), *(("Set-Cookie", c) for c in cookies)]:
        result.headers.add(name, value)
    return result
