"""The host's exception tree.

    HostError               anything the host refuses; `code` is short and stable
    ├── FunctionLoadError   the function app cannot be served as written (import, bindings, route)
    ├── RouteTemplateError  a route template the ASP.NET Core template parser would reject
    └── HostConfigError     host.json is unreadable or holds a value of the wrong type, or
                            PYTHON_THREADPOOL_THREAD_COUNT / DEVSTACK_HTTP_CONCURRENCY is
                            malformed (`_limits`)

Errors raised while a function runs are never wrapped: the host logs them and answers 500.
"""

from __future__ import annotations


class HostError(Exception):
    code = "host_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FunctionLoadError(HostError):
    """`function` is the function's name, or the module's when no function is involved."""

    code = "function_load"

    def __init__(self, function: str, reason: str) -> None:
        super().__init__(f"{function}: {reason}")
        self.function = function
        self.reason = reason


class RouteTemplateError(HostError):
    code = "route_template"

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"route template {template!r}: {reason}")
        self.template = template
        self.reason = reason


class HostConfigError(HostError):
    code = "host_config"
