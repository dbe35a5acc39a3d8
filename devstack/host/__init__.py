"""A local stand-in for the Azure Functions host and Python worker, for HTTP functions only.

It serves any Python v2-model FunctionApp: `create_app("function_app")` imports the module from
the repository root, reads `host.json` beside it, and answers HTTP as `func start` would;
`FunctionsRouter.load(...)` gives the same routing and calling in process, without a socket.

    from devstack.host import create_app
    ServerThread(name="api-host", port=7071).start(
        create_app(), max_header_read=HOST_MAX_HEADER_READ
    )

What it reproduces, and where each rule lives:

- indexing (route defaults, reserved routes, binding and parameter checks): `_functions`;
- route templates and constraints, ASP.NET Core's: `_template`, `_constraints`;
- route order, 404 on a method mismatch, the root page: `_router`;
- the request the worker builds (decoded path, query and header joining): `_http`;
- calling sync functions on the worker's thread pool and async ones on its event loop,
  `context`, turning results into responses: `_worker`, `_context`;
- HTTP limits (100 MB body, 4 KB URL, 32 KB of headers), a body without Content-Length arriving
  empty, request logging, per-instance HTTP concurrency (requests beyond it wait, first come
  first served): `_asgi`, `_gate`;
- the thread count and the concurrency, from PYTHON_THREADPOOL_THREAD_COUNT and
  DEVSTACK_HTTP_CONCURRENCY, with Azure's defaults for a Python app (concurrency 1), and the
  README's recommendation (`RECOMMENDED`): `_limits`;
- host.json (`routePrefix`, `customHeaders`): `_settings`;
- CORS as the host applies `Host.CORS`/platform CORS, from DEVSTACK_CORS and
  DEVSTACK_CORS_CREDENTIALS (preflights answered by the host, never by a function): `_cors`.

Not reproduced: auth levels (every function is anonymous, as under Core Tools; no keys are
checked), function timeouts, bindings other than the HTTP trigger and HTTP outputs,
HTTP streaming (the `azurefunctions-extensions-http-fastapi` types).
"""

from __future__ import annotations

from pathlib import Path

from devstack.host._asgi import (
    HOST_MAX_HEADER_READ,
    MAX_BODY_SIZE,
    MAX_HEADERS_SIZE,
    MAX_URL_LENGTH,
    QUEUE_HEADER,
    WORKER_WAIT_HEADER,
    HostApp,
)
from devstack.host._cors import CREDENTIALS_SETTING as CORS_CREDENTIALS_SETTING
from devstack.host._cors import ORIGINS_SETTING as CORS_SETTING
from devstack.host._cors import CorsPolicy
from devstack.host._errors import FunctionLoadError, HostConfigError, HostError, RouteTemplateError
from devstack.host._functions import HttpFunction
from devstack.host._limits import (
    CONCURRENCY_SETTING,
    DEFAULT_CONCURRENCY,
    RECOMMENDED,
    THREADS_SETTING,
    InstanceLimits,
    worker_default_threads,
)
from devstack.host._router import FunctionsRouter, Handled
from devstack.host._settings import HostSettings, read_host_json


def create_app(
    function_app: str = "function_app",
    *,
    root: Path | None = None,
    limits: InstanceLimits | None = None,
    max_body_size: int = MAX_BODY_SIZE,
    cors: CorsPolicy | None = None,
) -> HostApp:
    """The ASGI app serving the FunctionApp in module `function_app`, imported from `root`
    (default: the repository root); `app.router` is its in-process `FunctionsRouter`.

    `limits`: the worker's thread count and the per-instance HTTP concurrency; None reads them
    from the environment (`InstanceLimits.from_env()`), as the worker and the platform do.
    `cors`: the CORS policy; None reads it from the environment (`CorsPolicy.from_env()`).
    Raises FunctionLoadError when the module cannot be imported or a function cannot be served,
    HostConfigError for host.json, a malformed limit or a malformed CORS setting.
    """
    limits = limits if limits is not None else InstanceLimits.from_env()
    cors = cors if cors is not None else CorsPolicy.from_env()
    router = FunctionsRouter.load(function_app, root=root, threads=limits.threads)
    return HostApp(router, concurrency=limits.concurrency, max_body_size=max_body_size, cors=cors)


__all__ = [
    "CONCURRENCY_SETTING",
    "CORS_CREDENTIALS_SETTING",
    "CORS_SETTING",
    "DEFAULT_CONCURRENCY",
    "HOST_MAX_HEADER_READ",
    "MAX_BODY_SIZE",
    "MAX_HEADERS_SIZE",
    "MAX_URL_LENGTH",
    "QUEUE_HEADER",
    "RECOMMENDED",
    "THREADS_SETTING",
    "WORKER_WAIT_HEADER",
    "CorsPolicy",
    "FunctionLoadError",
    "FunctionsRouter",
    "Handled",
    "HostApp",
    "HostConfigError",
    "HostError",
    "HostSettings",
    "HttpFunction",
    "InstanceLimits",
    "RouteTemplateError",
    "create_app",
    "read_host_json",
    "worker_default_threads",
]
