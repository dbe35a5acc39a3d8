"""Index a FunctionApp the way the Functions host and the Python worker do at start-up.

- The module is imported once (like the worker), with the app's root on `sys.path`; it must hold
  exactly one `FunctionApp` (any `FunctionRegister`: Asgi/WsgiFunctionApp too).
- HTTP-triggered functions are served; others (timer, queue, ...) are skipped with a log line.
- A route defaults to the function name; a leading or trailing `/` is dropped; the route prefix
  is prepended. A route under `admin` or `runtime` is refused, as are two functions on the same
  route with overlapping methods, like the host does.
- The worker's parameter check: the Python parameters must be exactly the binding names (less
  `$return`), plus `context` if wanted. Bindings other than the HTTP trigger and HTTP outputs
  cannot be served here.

The real host starts anyway and marks a refused function as errored; this one refuses to start,
naming every refused function, so a mistake cannot go unnoticed.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
from azure.functions.decorators.constants import HTTP_OUTPUT
from azure.functions.decorators.http import HttpTrigger

from devstack.host._errors import FunctionLoadError, RouteTemplateError
from devstack.host._template import RouteTemplate, parse_template

logger = logging.getLogger("devstack.host")

_RESERVED = ("admin", "runtime")


@dataclass(frozen=True)
class HttpFunction:
    """One HTTP-triggered function, ready to route and call."""

    name: str
    route: str  # as declared, without the prefix
    template: RouteTemplate  # with the prefix
    methods: frozenset[str] | None  # None: every method
    auth_level: str
    trigger_arg: str
    out_args: tuple[str, ...]  # HTTP outputs passed as func.Out, other than $return
    has_return: bool
    wants_context: bool
    is_async: bool
    call: Callable[..., Any]

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


def load_module(name: str, root: Path) -> ModuleType:
    folder = str(root)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise FunctionLoadError(name, f"cannot import the module: {exc!r}") from exc


def find_function_app(module: ModuleType) -> func.FunctionRegister:
    apps = {id(v): v for v in vars(module).values() if isinstance(v, func.FunctionRegister)}
    if len(apps) != 1:
        raise FunctionLoadError(
            module.__name__, f"expected exactly one FunctionApp instance, found {len(apps)}"
        )
    return next(iter(apps.values()))


def index_functions(app: func.FunctionRegister, route_prefix: str) -> list[HttpFunction]:
    """The app's HTTP functions; FunctionLoadError names every function that cannot be served."""
    # get_functions() remembers the names it has seen and refuses to run twice; the worker calls
    # it once per process, the dev host once per router.
    app.functions_bindings = None
    try:
        functions = app.get_functions()
    except ValueError as exc:
        raise FunctionLoadError("function app", str(exc)) from exc
    served: list[HttpFunction] = []
    errors: list[FunctionLoadError] = []
    for function in functions:
        name = function.get_function_name() or function.get_user_function().__name__
        trigger = function.get_trigger()
        if not isinstance(trigger, HttpTrigger):
            kind = trigger.get_binding_name() if trigger else "no"
            logger.info("function %s: %s trigger, not served by the dev host", name, kind)
            continue
        try:
            candidate = _http_function(function, trigger, name, route_prefix)
            _check_conflicts(candidate, served)
            served.append(candidate)
        except FunctionLoadError as exc:
            errors.append(exc)
    if errors:
        raise FunctionLoadError(
            ", ".join(e.function for e in errors), "; ".join(e.reason for e in errors)
        )
    return served


def _http_function(
    function: func.Function, trigger: HttpTrigger, name: str, prefix: str
) -> HttpFunction:
    route = (trigger.route or name).strip("/")
    if route.lower().startswith(_RESERVED):
        raise FunctionLoadError(name, "the route conflicts with the host's built-in routes")
    try:
        template = parse_template(f"{prefix}/{route}" if prefix and route else prefix or route)
    except RouteTemplateError as exc:
        raise FunctionLoadError(name, exc.message) from exc
    outputs = [b for b in function.get_bindings() if b is not trigger]
    unsupported = [b for b in outputs if b.get_binding_name() != HTTP_OUTPUT]
    if unsupported:
        kinds = ", ".join(f"{b.get_binding_name()} ({b.name})" for b in unsupported)
        raise FunctionLoadError(name, f"bindings the dev host cannot serve: {kinds}")
    out_args = tuple(b.name for b in outputs if b.name != "$return")
    user = function.get_user_function()
    params = set(inspect.signature(user).parameters)
    bound = {trigger.name, *out_args}
    wants_context = "context" in params and "context" not in bound
    if missing := sorted(bound - params):
        raise FunctionLoadError(name, f"bindings without a Python parameter: {missing}")
    if extra := sorted(params - bound - {"context"}):
        raise FunctionLoadError(name, f"Python parameters without a binding: {extra}")
    methods = (
        None if trigger.methods is None else frozenset(_text(m).upper() for m in trigger.methods)
    )
    return HttpFunction(
        name=name,
        route=route,
        template=template,
        methods=methods,
        auth_level=_text(trigger.auth_level or "function").lower(),
        trigger_arg=trigger.name,
        out_args=out_args,
        has_return=len(out_args) < len(outputs),
        wants_context=wants_context,
        is_async=inspect.iscoroutinefunction(user),
        call=user,
    )


def _text(value: object) -> str:
    """An enum's value (HttpMethod, AuthLevel) or the string given instead."""
    return str(getattr(value, "value", value))


def _check_conflicts(candidate: HttpFunction, served: list[HttpFunction]) -> None:
    for other in served:
        if other.route.lower() != candidate.route.lower():
            continue
        if candidate.methods is None or other.methods is None or candidate.methods & other.methods:
            raise FunctionLoadError(
                candidate.name, f"the route conflicts with the route of function {other.name!r}"
            )
