"""A FunctionApp exercising the dev host: one Blueprint per concern, as function_app.py does.

Served by tests/devstack/test_host_server.py with the host.json beside it (prefix `svc/v1`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def as_json(value: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(value), status_code=status, mimetype="application/json")


def describe(req: func.HttpRequest, name: str) -> func.HttpResponse:
    return as_json(
        {
            "function": name,
            "method": req.method,
            "url": req.url,
            "params": dict(req.params),
            "route_params": dict(req.route_params),
            "headers": dict(req.headers),
            "body": base64.b64encode(req.get_body()).decode("ascii"),
        }
    )


echo = func.Blueprint()


@echo.route(route="echo/{*rest}")
def echo_all(req: func.HttpRequest) -> func.HttpResponse:
    return describe(req, "echo_all")


@echo.function_name("named_function")
@echo.route()
def renamed(req: func.HttpRequest) -> func.HttpResponse:
    return describe(req, "named_function")


@echo.route(route="/slashed/")
def slashed(req: func.HttpRequest) -> func.HttpResponse:
    return describe(req, "slashed")


precedence = func.Blueprint()


def _named(bp: func.Blueprint, route: str, name: str, **kwargs: Any) -> None:
    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return describe(req, name)

    handler.__name__ = name
    bp.route(route=route, **kwargs)(handler)


for _route, _name in [
    ("items/{id}", "item_any"),
    ("items/{*rest}", "item_rest"),
    ("items/{id:int}", "item_int"),
    ("items/{id:guid}", "item_guid"),
    ("items/new", "item_new"),
    ("items/{id:int:min(100)}", "item_big"),
    ("items/{id}/children", "item_children"),
]:
    _named(precedence, _route, _name)

constraints = func.Blueprint()

for _kind, _constraint in [
    ("int", "int"),
    ("long", "long"),
    ("bool", "bool"),
    ("guid", "guid"),
    ("alpha", "alpha"),
    ("datetime", "datetime"),
    ("decimal", "decimal"),
    ("double", "double"),
    ("length", "length(3)"),
    ("between", "length(2,4)"),
    ("minlength", "minlength(2)"),
    ("maxlength", "maxlength(2)"),
    ("min", "min(10)"),
    ("max", "max(10)"),
    ("range", "range(5,7)"),
    ("regex", r"regex(^[a-z]{{2}}\d$)"),
    ("chained", "int:range(1,9)"),
]:
    _named(constraints, f"c/{_kind}/{{v:{_constraint}}}", f"c_{_kind}")

_named(constraints, "opt/{a}/{b?}", "optional")
_named(constraints, "dflt/{a=zed}", "defaulted")
_named(constraints, "files/{name}.{ext?}", "file_name")
_named(constraints, "CaSe/Literal", "case_literal")

methods = func.Blueprint()
_named(methods, "m/get", "m_get", methods=["GET"])
_named(methods, "m/write", "m_write", methods=["POST", "PUT", "PATCH", "DELETE"])
_named(methods, "m/head", "m_head", methods=["HEAD", "GET", "OPTIONS"])
_named(methods, "m/shared/new", "m_shared_new", methods=["GET"])
_named(methods, "m/shared/{id}", "m_shared_id", methods=["POST"])

responses = func.Blueprint()


@responses.route(route="r/status/{code:int}")
def r_status(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        b"" if req.route_params["code"] in ("204", "304") else b"x",
        status_code=int(req.route_params["code"]),
    )


@responses.route(route="r/custom")
def r_custom(req: func.HttpRequest) -> func.HttpResponse:
    response = func.HttpResponse(
        "héllo", status_code=201, mimetype="text/html", charset="iso-8859-1"
    )
    response.headers.add("X-Repeated", "first")
    response.headers.add("X-Repeated", "second")
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; HttpOnly")
    response.headers.add("Content-Length", "999")
    return response


@responses.route(route="r/binary")
def r_binary(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(bytes(range(256)) * 4, mimetype="application/octet-stream")


@responses.route(route="r/typed")
def r_typed(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("{}", headers={"content-type": "application/problem+json"})


@responses.route(route="r/own-header")
def r_own_header(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("", headers={"X-Content-Type-Options": "mine"})


@responses.route(route="r/str")
def r_str(req: func.HttpRequest) -> str:
    return "plain text"


@responses.route(route="r/dict")
def r_dict(req: func.HttpRequest) -> Any:
    return {"not": "allowed"}


@responses.route(route="r/none")
def r_none(req: func.HttpRequest) -> Any:
    return None


@responses.route(route="r/non-ascii-header")
def r_non_ascii_header(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("", headers={"X-Name": "café"})


@responses.route(route="r/out", binding_arg_name="res")
def r_out(req: func.HttpRequest, res: func.Out[func.HttpResponse]) -> None:
    res.set(func.HttpResponse("via out", status_code=202))


@responses.route(route="r/out-unset", binding_arg_name="res")
def r_out_unset(req: func.HttpRequest, res: func.Out[func.HttpResponse]) -> None:
    return None


failures = func.Blueprint()


@failures.route(route="fail/sync")
def fail_sync(req: func.HttpRequest) -> func.HttpResponse:
    raise ValueError("secret detail from the function")


@failures.route(route="fail/async")
async def fail_async(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(0)
    raise RuntimeError("secret async detail")


concurrency = func.Blueprint()


@concurrency.route(route="sleep/sync")
def sleep_sync(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(float(req.params.get("s", "0.5")))
    return as_json({"thread": threading.current_thread().name})


@concurrency.route(route="sleep/async")
async def sleep_async(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(float(req.params.get("s", "0.5")))
    return as_json({"thread": threading.current_thread().name})


contexts = func.Blueprint()


def _context(context: func.Context) -> dict[str, Any]:
    return {
        "invocation_id": context.invocation_id,
        "function_name": context.function_name,
        "function_directory": context.function_directory,
        "trace_parent": context.trace_context.trace_parent,
        "trace_state": context.trace_context.trace_state,
        "thread_invocation_id": getattr(context.thread_local_storage, "invocation_id", None),
    }


@contexts.route(route="ctx/sync", trigger_arg_name="request")
def ctx_sync(request: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return as_json(_context(context))


@contexts.route(route="ctx/async")
async def ctx_async(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return as_json(_context(context))


@contexts.timer_trigger(schedule="0 0 * * * *", arg_name="timer", run_on_startup=False)
def not_http(timer: func.TimerRequest) -> None:
    return None


for _blueprint in (
    echo,
    precedence,
    constraints,
    methods,
    responses,
    failures,
    concurrency,
    contexts,
):
    app.register_functions(_blueprint)
