"""The emulators' control plane: request log, fault injection, latency profile, reset.

Each emulator builds its Starlette app with `emulator_app(...)`: `ControlPlane.routes()` (plus
its own extra routes) under `/_emulator/`, and `ControlPlane.wrap` around the rest as middleware,
so that the app handed out is still the Starlette app (its `state`, `router`, test client).
Control routes answer only to loopback clients; they are neither logged nor subject to faults.

Routes:
    GET    /_emulator/requests          recent requests, oldest first (`?since=<seq>` to page)
    DELETE /_emulator/requests          forget them
    GET    /_emulator/faults            active fault rules
    POST   /_emulator/faults            add a rule (see `Fault`); answers the rule with its id
    DELETE /_emulator/faults            remove every rule
    DELETE /_emulator/faults/{id}       remove one rule
    GET    /_emulator/latency           the latency profile in force (devstack/latency.py):
                                        {"profile", "base", "seed", "classes": {class: DELAY}}
                                        DELAY = {"median_ms", "p95_ms", "min_ms", "max_ms"}
    PUT    /_emulator/latency           {"profile"?: "none"|"azure", "classes"?: {class|"*":
                                        DELAY}, "seed"?: int|null} -> the same shape as GET
    DELETE /_emulator/latency           the profile the emulator started with, back -> 204
    POST   /_emulator/reset             clear log and faults, restore the latency profile, and
                                        reset the emulator's own runtime state

Every other request waits its latency class's delay (`Latency`) before its answer is sent: an
`asyncio.sleep` on the event loop, holding no lock and no thread. It is applied when the response
starts, unless the emulator applied it earlier itself (`await emulated_latency(request)`: the
Dataverse emulator does, inside its service-protection bookkeeping, so that a delayed request
counts as in flight there as it does in Azure). A fault's `delay_ms` comes first and adds to it;
a connection reset gets none. The request log records the class and the delay applied
(`latency_class`, `latency_ms`; `duration_ms` is the whole time, delays included), and the ids
the client sent: `correlation_id` (`x-ms-correlation-request-id`, `x-ms-correlation-id` as
Microsoft's Python SDK for Dataverse sends it, or `client-request-id`) and
`client_request_id` (`x-ms-client-request-id`, as Microsoft's SDKs send it, or
`client-request-id`). A request with
`X-Devstack-Latency: none` gets no delay: the Dataverse emulator's own fetch of Entra's signing
keys sends it, since in Azure Dataverse holds them long before a client calls.

Handlers tell the log who the caller was by setting `request.state.caller` (for example
`{"oid": ...}` or `{"appid": ...}`) and, on Entra, `request.state.grant_type` and
`request.state.client_auth` (how the client authenticated: "none", "secret", "certificate" or
"federated"; None when it did not get that far).
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from devstack.latency import Latency

PREFIX = "/_emulator"
LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}
NO_LATENCY_HEADER = "X-Devstack-Latency"  # value "none": no emulated latency for this request
_PENDING = "emulated_latency"  # key of the request's `_PendingDelay` in the ASGI scope's state


@dataclass
class Fault:
    """One fault rule. A request matches when its path matches `path` (a glob, `*` crossing `/`)
    and, if given, its method. Then, unless the rule is used up (`count`) or the dice say no
    (`fraction`):

    - wait `delay_ms` first (a delay with no `status` and no `action` just slows the request);
    - `action = "reset"`: drop the connection without an answer;
    - `action = "garbage"`: answer 200 with a body that is not JSON;
    - `status`: answer it with `body` (JSON value, or text when a string) and `headers`,
      plus `Retry-After` when `retry_after` is set.
    """

    path: str = "*"
    method: str | None = None
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_ms: int = 0
    retry_after: int | None = None
    action: str | None = None
    count: int | None = None
    fraction: float = 1.0
    id: int = 0
    hits: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        allowed = set(cls.__dataclass_fields__) - {"id", "hits"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        for name, types in _FAULT_TYPES.items():
            if name in data and not isinstance(data[name], types):
                raise ValueError(f"fault field {name!r} has the wrong type")
        if not all(isinstance(v, str) for v in data.get("headers", {}).values()):
            raise ValueError("fault headers are strings")
        fault = cls(**data)
        if fault.action not in (None, "reset", "garbage"):
            raise ValueError("action must be 'reset' or 'garbage'")
        if not 0.0 <= fault.fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        return fault

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return fnmatch.fnmatchcase(path, self.path)


_FAULT_TYPES: dict[str, type | tuple[type, ...]] = {
    "path": str,
    "method": (str, type(None)),
    "status": (int, type(None)),
    "headers": dict,
    "delay_ms": int,
    "retry_after": (int, type(None)),
    "action": (str, type(None)),
    "count": (int, type(None)),
    "fraction": (int, float),
}


class ControlPlane:
    def __init__(
        self,
        name: str,
        *,
        on_reset: Callable[[], None] | None = None,
        log_size: int = 20_000,
        latency: Latency | None = None,
    ) -> None:
        self.name = name
        self._on_reset = on_reset
        self.latency = latency or Latency(name)
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._seq = itertools.count(1)
        self._faults: list[Fault] = []
        self._fault_ids = itertools.count(1)
        self._random = random.Random()  # noqa: S311 - dice for fault fractions, not secrets

    # --- state used by tests in-process as well as over HTTP --------------------------------

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self._log if r["seq"] > since]

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            fault.id = next(self._fault_ids)
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        with self._lock:
            self._log.clear()
            self._faults.clear()
        self.latency.restore()
        if self._on_reset:
            self._on_reset()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                if fault.count is not None and fault.hits >= fault.count:
                    continue
                if fault.fraction < 1.0 and self._random.random() >= fault.fraction:
                    continue
                fault.hits += 1
                return fault
        return None

    # --- ASGI ---------------------------------------------------------------------------------

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"].startswith(PREFIX):
                await app(scope, receive, send)
                return
            await self._serve(app, scope, receive, send)

        return wrapped

    async def _serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status: dict[str, int] = {"code": 0}
        method, path = scope["method"], scope["path"]
        latency_class = self.latency.classify(method, path)
        exempt = (_header(scope, NO_LATENCY_HEADER.lower().encode()) or "").lower() == "none"
        pending = _PendingDelay(0.0 if exempt else self.latency.draw(latency_class))
        scope.setdefault("state", {})[_PENDING] = pending

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                await pending.apply()
            await send(message)

        fault = self._take_fault(method, path)
        try:
            if fault is not None:
                if fault.delay_ms:
                    await asyncio.sleep(fault.delay_ms / 1000)
                if fault.action == "reset":
                    status["code"] = -1  # no answer: the connection is dropped
                    _abort_connection(receive)
                    return
                if fault.action == "garbage" or fault.status is not None:
                    await _fault_response(fault)(scope, receive, send_recording)
                    return
            await app(scope, receive, send_recording)
        finally:
            state = scope.get("state", {})
            entry = {
                "seq": 0,
                "time": time.time(),
                "method": scope["method"],
                "path": scope["path"],
                "query": scope.get("query_string", b"").decode("latin-1"),
                "status": status["code"],
                "caller": state.get("caller"),
                "grant_type": state.get("grant_type"),
                "client_auth": state.get("client_auth"),
                "correlation_id": _header(scope, b"x-ms-correlation-request-id")
                or _header(scope, b"x-ms-correlation-id")
                or _header(scope, b"client-request-id"),
                "client_request_id": _header(scope, b"x-ms-client-request-id")
                or _header(scope, b"client-request-id"),
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "latency_class": latency_class,
                "latency_ms": round(pending.applied_ms, 3),
                "fault": fault.id if fault else None,
            }
            with self._lock:
                entry["seq"] = next(self._seq)
                self._log.append(entry)

    def routes(self, extra: list[Route] | None = None) -> list[Route]:
        def guarded(
            handler: Callable[[Request], Awaitable[Response]],
        ) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                host = request.client.host if request.client else ""
                if host not in LOOPBACK:
                    return JSONResponse({"error": "control plane is loopback only"}, 403)
                try:
                    return await handler(request)
                except (ValueError, TypeError) as exc:
                    return JSONResponse({"error": str(exc)}, 400)

            return endpoint

        async def get_requests(request: Request) -> Response:
            since = int(request.query_params.get("since", "0"))
            return JSONResponse({"requests": self.requests(since)})

        async def delete_requests(request: Request) -> Response:
            self.clear_requests()
            return Response(status_code=204)

        async def get_faults(request: Request) -> Response:
            with self._lock:
                return JSONResponse({"faults": [asdict(f) for f in self._faults]})

        async def post_fault(request: Request) -> Response:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("a fault is a JSON object")
            return JSONResponse(asdict(self.add_fault(Fault.from_json(data))), 201)

        async def delete_faults(request: Request) -> Response:
            self.clear_faults()
            return Response(status_code=204)

        async def delete_fault(request: Request) -> Response:
            fault_id = int(request.path_params["id"])
            with self._lock:
                self._faults = [f for f in self._faults if f.id != fault_id]
            return Response(status_code=204)

        async def post_reset(request: Request) -> Response:
            self.reset()
            return Response(status_code=204)

        async def get_latency(request: Request) -> Response:
            return JSONResponse(self.latency.snapshot())

        async def put_latency(request: Request) -> Response:
            try:
                data = await request.json()
            except json.JSONDecodeError:
                raise ValueError("the body must be a JSON object") from None
            self.latency.update(data)
            return JSONResponse(self.latency.snapshot())

        async def delete_latency(request: Request) -> Response:
            self.latency.restore()
            return Response(status_code=204)

        routes = [
            Route(f"{PREFIX}/requests", guarded(get_requests), methods=["GET"]),
            Route(f"{PREFIX}/requests", guarded(delete_requests), methods=["DELETE"]),
            Route(f"{PREFIX}/faults", guarded(get_faults), methods=["GET"]),
            Route(f"{PREFIX}/faults", guarded(post_fault), methods=["POST"]),
            Route(f"{PREFIX}/faults", guarded(delete_faults), methods=["DELETE"]),
            Route(f"{PREFIX}/faults/{{id:int}}", guarded(delete_fault), methods=["DELETE"]),
            Route(f"{PREFIX}/reset", guarded(post_reset), methods=["POST"]),
            Route(f"{PREFIX}/latency", guarded(get_latency), methods=["GET"]),
            Route(f"{PREFIX}/latency", guarded(put_latency), methods=["PUT"]),
            Route(f"{PREFIX}/latency", guarded(delete_latency), methods=["DELETE"]),
        ]
        for route in extra or []:
            routes.append(Route(route.path, guarded(route.endpoint), methods=route.methods))
        return routes


class _PendingDelay:
    """The delay drawn for one request, waited at most once: where the emulator chooses
    (`emulated_latency`), else when the response starts."""

    def __init__(self, ms: float) -> None:
        self.ms = ms
        self.applied_ms = 0.0
        self._done = False

    async def apply(self) -> None:
        if self._done:
            return
        self._done = True
        if self.ms > 0:
            self.applied_ms = self.ms
            await asyncio.sleep(self.ms / 1000)


async def emulated_latency(request: Request) -> None:
    """Wait this request's emulated latency now rather than when its response starts (once)."""
    pending = request.scope.get("state", {}).get(_PENDING)
    if isinstance(pending, _PendingDelay):
        await pending.apply()


def _abort_connection(receive: Receive) -> None:
    """Drop the TCP connection without an answer, as a crashed or reset peer would.

    ASGI has no message for this, so reach the transport through uvicorn's request cycle (the
    owner of `receive`); uvicorn is the only server the dev stack runs on.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionAbortedError("fault injection: connection reset")
    transport.abort()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _fault_response(fault: Fault) -> Response:
    headers = dict(fault.headers)
    if fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    if fault.action == "garbage":
        return Response(b"<html>\x00not json", 200, headers=headers, media_type="application/json")
    assert fault.status is not None
    if fault.body is None or isinstance(fault.body, str):
        return Response(fault.body or "", fault.status, headers=headers, media_type="text/plain")
    return Response(
        json.dumps(fault.body), fault.status, headers=headers, media_type="application/json"
    )


def emulator_app(
    control: ControlPlane,
    *,
    routes: Sequence[BaseRoute],
    control_routes: list[Route],
    exception_handlers: Mapping[Any, ExceptionHandler] | None = None,
) -> Starlette:
    """A Starlette app serving `routes`, behind `control` with its own `control_routes` added."""
    return Starlette(
        routes=[*control.routes(extra=control_routes), *routes],
        middleware=[Middleware(_ControlPlaneMiddleware, control=control)],
        exception_handlers=exception_handlers,
    )


class _ControlPlaneMiddleware:
    """`ControlPlane.wrap` as middleware."""

    def __init__(self, app: ASGIApp, control: ControlPlane) -> None:
        self._wrapped = control.wrap(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._wrapped(scope, receive, send)
