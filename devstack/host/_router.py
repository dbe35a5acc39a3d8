"""Route a `func.HttpRequest` to the function the Functions host would pick, and call it.

Routes are tried in the host's order (its `WebJobsRouteBuilder`), segment by segment: a literal
before a parameter, a parameter with more constraints before one with fewer, then the longer
template first; ties go to the template without a catch-all, then to registration order. The
first route whose template and method both match wins, so a request whose method matches no
route on its path is a 404, not a 405, as the host answers (HEAD and OPTIONS included: they
reach only functions that list them). Auth levels are not enforced: every function is
anonymous here, as under Core Tools.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from functools import cmp_to_key
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from devstack.host._functions import HttpFunction, find_function_app, index_functions, load_module
from devstack.host._http import path_segments, query_params
from devstack.host._settings import HostSettings, read_host_json
from devstack.host._template import Literal, Parameter
from devstack.host._worker import Worker

logger = logging.getLogger("devstack.host")

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Handled:
    response: func.HttpResponse
    function: HttpFunction | None  # None: answered by the host itself (404, home page, 500)
    worker_wait: float | None = None  # seconds the invocation waited for a thread (or the loop)


class FunctionsRouter:
    """The app's HTTP functions behind one `dispatch`; the HTTP server goes through it too.

    `dispatch(req)` takes a request as a test would build it: `url` is the full URL (or just the
    path and query); `params` may be left empty to have them read from the URL's query;
    `route_params` are filled in from the route. The answer is what the HTTP server would send.

    `threads`: the worker's thread pool for sync functions (PYTHON_THREADPOOL_THREAD_COUNT); None
    is the worker's own default. The environment is not read here: `create_app` reads it.
    In-process dispatch has no per-instance concurrency limit; that is the HTTP server's.
    """

    def __init__(
        self,
        function_app: func.FunctionRegister,
        *,
        settings: HostSettings | None = None,
        root: Path | None = None,
        threads: int | None = None,
    ) -> None:
        self.settings = settings or HostSettings()
        self.root = (root or ROOT).resolve()
        indexed = index_functions(function_app, self.settings.route_prefix)
        self.functions: tuple[HttpFunction, ...] = tuple(sorted(indexed, key=cmp_to_key(_compare)))
        self._worker = Worker(threads=threads, directory=str(self.root))
        for function in self.functions:
            methods = ",".join(sorted(function.methods)) if function.methods is not None else "*"
            logger.debug("%s: [%s] /%s", function.name, methods, function.template.text)

    @classmethod
    def load(
        cls,
        function_app: str = "function_app",
        *,
        root: Path | None = None,
        threads: int | None = None,
    ) -> FunctionsRouter:
        """Import the module `function_app` from `root` (the repository root by default) and
        route to its FunctionApp with the settings of `root/host.json`."""
        folder = (root or ROOT).resolve()
        settings = read_host_json(folder)
        app = find_function_app(load_module(function_app, folder))
        return cls(app, settings=settings, root=folder, threads=threads)

    def resolve(self, method: str, url: str) -> tuple[HttpFunction, dict[str, str]] | None:
        """The function that serves `method url` and its route values, or None (a 404)."""
        path = path_segments(urlsplit(url).path.encode("utf-8"))
        for function in self.functions:
            if function.allows(method):
                values = function.template.match(path)
                if values is not None:
                    return function, values
        return None

    def dispatch(self, req: func.HttpRequest) -> func.HttpResponse:
        function, routed = self._route(req)
        if function is None:
            return self._finish(self._host_answer(req))
        try:
            response = self._worker.submit(function, routed).result().response
        except Exception:
            response = _host_failure(function)
        return self._finish(response)

    async def dispatch_async(self, req: func.HttpRequest) -> func.HttpResponse:
        return (await self.handle(req)).response

    async def handle(self, req: func.HttpRequest) -> Handled:
        """`dispatch_async`, also saying which function answered."""
        function, routed = self._route(req)
        if function is None:
            return Handled(self._finish(self._host_answer(req)), None)
        try:
            invocation = await asyncio.wrap_future(self._worker.submit(function, routed))
        except Exception:
            return Handled(self._finish(_host_failure(function)), function)
        return Handled(self._finish(invocation.response), function, invocation.worker_wait)

    @property
    def threads(self) -> int:
        """The size of the worker's thread pool for sync functions."""
        return self._worker.threads

    def close(self) -> None:
        self._worker.close()

    def _route(self, req: func.HttpRequest) -> tuple[HttpFunction | None, func.HttpRequest]:
        match = self.resolve(req.method, req.url)
        if match is None:
            return None, req
        function, values = match
        routed = func.HttpRequest(
            method=req.method,
            url=req.url,
            headers=dict(req.headers),
            params=dict(req.params) or query_params(urlsplit(req.url).query),
            route_params=values,
            body=req.get_body(),
        )
        return function, routed

    def _host_answer(self, req: func.HttpRequest) -> func.HttpResponse:
        """The root page (GET / when no function serves it) or an empty 404."""
        at_root = not path_segments(urlsplit(req.url).path.encode("utf-8"))
        if not at_root or req.method not in ("GET", "HEAD"):
            return func.HttpResponse(status_code=404)
        functions = [
            {
                "name": f.name,
                "methods": sorted(f.methods) if f.methods is not None else None,
                "route": "/" + f.template.text,
            }
            for f in self.functions
        ]
        body = json.dumps({"state": "Running", "functions": functions})
        response = func.HttpResponse(body)
        response.headers.add("Content-Type", "application/json; charset=utf-8")
        return response

    def _finish(self, response: func.HttpResponse) -> func.HttpResponse:
        for name, value in self.settings.custom_headers.items():
            if name not in response.headers:
                response.headers.add(name, value)
        return response


def _host_failure(function: HttpFunction) -> func.HttpResponse:
    logger.exception("function %s: the invocation failed in the host", function.name)
    return func.HttpResponse(status_code=500)


def _compare(x: HttpFunction, y: HttpFunction) -> int:
    """The host's route order (see the module's docstring); negative when `x` goes first."""
    xs, ys = x.template.segments, y.template.segments
    for index, segment in enumerate(xs):
        if index >= len(ys):
            return -1
        a, b = segment.first, ys[index].first
        if isinstance(a, Literal) != isinstance(b, Literal):
            return -1 if isinstance(a, Literal) else 1
        if isinstance(a, Parameter) and isinstance(b, Parameter):
            if len(a.constraints) != len(b.constraints):
                return len(b.constraints) - len(a.constraints)
        elif isinstance(a, Literal) and isinstance(b, Literal) and a.text.upper() != b.text.upper():
            return -1 if a.text.upper() < b.text.upper() else 1
    if len(ys) > len(xs):
        return 1
    return int(x.template.has_catch_all) - int(y.template.has_catch_all)
