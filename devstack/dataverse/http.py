"""The HTTP face of the emulator: one endpoint for everything under `/api/data/v9.2/`.

Every request goes through the same steps: bearer token (401 with `WWW-Authenticate` on any
failure) -> system user (403 "not a member of the organization") -> service protection limits
(429 with `Retry-After`) -> the emulated latency (devstack/latency.py) -> parse the resource and
headers -> one call to `Reads` or `Writes` in a worker thread. Errors become HTTP here and only
here, from the `DataverseError` class; anything unexpected is logged and answered as a generic 500
without details.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.control import emulated_latency
from devstack.dataverse import metadata
from devstack.dataverse.errors import (
    DataverseError,
    MethodNotAllowed,
    NotFound,
    NotImplementedByEmulator,
    SegmentNotFound,
    Throttled,
    Unauthorized,
)
from devstack.dataverse.options import parse_options
from devstack.dataverse.render import Annotations
from devstack.dataverse.replies import Conditions, Prefer, Reply
from devstack.dataverse.resources import FUNCTIONS, Resource, resolve
from devstack.dataverse.security import Identity, Principal

if TYPE_CHECKING:
    from devstack.dataverse.app import Dataverse

log = logging.getLogger(__name__)

API_PREFIX = "/api/data/v9.2"
ODATA_JSON = "application/json; odata.metadata=minimal"
METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"]
_ETAG = re.compile(r'(?:W/)?"(\d+)"')


# --- the pipeline ------------------------------------------------------------------------------


async def api(request: Request) -> Response:
    dv: Dataverse = request.app.state.dataverse
    try:
        identity = await run_in_threadpool(
            dv.validator.validate, request.headers.get("authorization")
        )
        principal = _principal(request, dv, identity)
    except DataverseError as exc:
        return error_response(exc, dv)
    caller = principal.systemuserid
    try:
        dv.limits.enter(caller)
    except Throttled as exc:
        response = error_response(exc, dv)
        response.headers.update(dv.limits.headers(caller))
        return response
    started = time.perf_counter()
    try:
        # Inside the limits' bookkeeping, as in Azure: a waiting request is in flight (the
        # concurrent-request limit) and its wait is execution time.
        await emulated_latency(request)
        body = await request.body()
        reply = await run_in_threadpool(_handle, dv, principal, request, body)
        response = reply_response(reply)
    except DataverseError as exc:
        response = error_response(exc, dv)
    except Exception:
        log.exception("Dataverse emulator: unexpected error on %s", request.url.path)
        response = error_response(DataverseError("An unexpected error occurred."), dv)
    finally:
        dv.limits.leave(caller, (time.perf_counter() - started) * 1000)
    response.headers.update(dv.limits.headers(caller))
    return response


def _principal(request: Request, dv: Dataverse, identity: Identity) -> Principal:
    who = {"oid": identity.oid} if identity.kind == "user" else {"appid": identity.appid}
    request.state.caller = who  # logged even when the next line refuses the caller
    principal = dv.directory.resolve(identity)
    request.state.caller = {**who, "systemuserid": principal.systemuserid}
    return principal


def _handle(dv: Dataverse, principal: Principal, request: Request, body: bytes) -> Reply:
    path = str(request.scope["path"]).removeprefix(API_PREFIX).removeprefix("/")
    method = request.method
    resource = resolve(path, dv.tables)
    params = request.query_params.multi_items()
    prefer = parse_prefer(request.headers.getlist("prefer"))
    conditions = parse_conditions(
        request.headers.get("if-match"), request.headers.get("if-none-match")
    )
    reads, writes = dv.reads, dv.writes
    if resource.kind == "service":
        _allow(method, "GET")
        return Reply(200, metadata.service_document(dv.api_root, dv.tables))
    if resource.kind == "metadata":
        _allow(method, "GET")
        return Reply(200, text=metadata.csdl(dv.tables), media_type="application/xml")
    if resource.kind == "function":
        assert resource.name is not None
        if method != FUNCTIONS[resource.name]:
            raise NotFound(
                f"No HTTP resource was found that matches the request URI '{dv.api_root}/{path}'.",
                code="",
            )
        if resource.name == "WhoAmI":
            return reads.whoami(principal)
        return writes.close_incident(principal, body)
    table = resource.table
    assert table is not None
    collection = resource.kind in ("collection", "count") and method == "GET"
    options = parse_options(params, table, dv.tables, collection=collection)
    if resource.kind == "collection":
        if method == "GET":
            return reads.query(principal, table, options, prefer)
        _allow(method, "POST")
        return writes.create(principal, table, body, options, prefer)
    if resource.kind == "count":
        _allow(method, "GET")
        return reads.count(principal, table, options)
    key = _key(resource)
    if resource.kind == "property":
        if method in ("PUT", "DELETE"):
            raise NotImplementedByEmulator(f"{method} of a single property (use PATCH)")
        _allow(method, "GET")
        assert resource.name is not None
        return reads.property(principal, table, key, resource.name)
    if method == "GET":
        return reads.retrieve(principal, table, key, options, prefer, conditions)
    if method == "PATCH":
        return writes.upsert(principal, table, key, body, options, prefer, conditions)
    if method == "DELETE":
        return writes.delete(principal, table, key, conditions)
    if method == "PUT":
        raise NotImplementedByEmulator("PUT on a record (use PATCH)")
    raise MethodNotAllowed(method)


def _key(resource: Resource) -> str:
    assert resource.key is not None
    return resource.key


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(method)


# --- request headers ---------------------------------------------------------------------------


def parse_prefer(values: list[str]) -> Prefer:
    """`Prefer` preferences, from any number of headers, comma separated, values maybe quoted."""
    found: dict[str, str] = {}
    for header in values:
        for item in re.findall(r'(?:[^,"]|"[^"]*")+', header):
            name, _, value = item.strip().partition("=")
            found[name.strip().lower()] = value.strip()
    raw_annotations = found.get("odata.include-annotations")
    return Prefer(
        return_representation=found.get("return") == "representation",
        maxpagesize=found.get("odata.maxpagesize"),
        annotations=Annotations.parse(raw_annotations),
        annotations_header=raw_annotations,
    )


def parse_conditions(if_match: str | None, if_none_match: str | None) -> Conditions:
    def condition(value: str | None) -> str | frozenset[int] | None:
        if value is None or value.strip().lower() in ("", "null"):
            return None
        if value.strip() == "*":
            return "*"
        return frozenset(int(v) for v in _ETAG.findall(value))

    return Conditions(if_match=condition(if_match), if_none_match=condition(if_none_match))


# --- responses ---------------------------------------------------------------------------------


def reply_response(reply: Reply) -> Response:
    headers = {"OData-Version": "4.0", **reply.headers}
    if reply.text is not None:
        return Response(reply.text, reply.status, headers=headers, media_type=reply.media_type)
    if reply.body is None:
        return Response(status_code=reply.status, headers=headers)
    return Response(_json(reply.body), reply.status, headers=headers, media_type=ODATA_JSON)


def error_response(exc: DataverseError, dv: Dataverse) -> Response:
    headers = {"OData-Version": "4.0"}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = (
            f"Bearer authorization_uri={dv.entra_url}/{dv.tenant.id}/oauth2/authorize, "
            f"resource_id={dv.base_url}/"
        )
        return Response(status_code=401, headers=headers)
    if isinstance(exc, Throttled):
        headers["Retry-After"] = str(exc.retry_after)
    body = {"error": {"code": exc.code, "message": exc.message}}
    return Response(_json(body), exc.status, headers=headers, media_type=ODATA_JSON)


def _json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def not_found(request: Request) -> Response:
    """Anything outside the Web API's root."""
    dv: Dataverse = request.app.state.dataverse
    segment = str(request.scope["path"]).strip("/").split("/")[0]
    return error_response(SegmentNotFound(segment), dv)


ROUTES = [
    Route(API_PREFIX, api, methods=METHODS),
    Route(API_PREFIX + "/{rest:path}", api, methods=METHODS),
    Route("/{rest:path}", not_found, methods=METHODS),
]
