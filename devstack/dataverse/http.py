"""The HTTP face of the emulator: one endpoint for everything under `/api/data/v9.2/`.

Every request goes through the same steps: bearer token (401 with `WWW-Authenticate` on any
failure) -> system user (403 "not a member of the organization") -> service protection limits
(429 with `Retry-After`) -> the emulated latency (devstack/latency.py) -> one operation
(`operations.handle`) or a `$batch` of them (`batch.execute`) in a worker thread. Errors become
HTTP here and only here, from the `DataverseError` class; anything unexpected is logged and
answered as a generic 500 without details. A `$batch` is one request for the limits, and its
whole execution time counts, as in Dataverse (api-limits.md).

Every response carries a new `x-ms-service-request-id` (and the same value as `REQ_ID`), as
Dataverse's do, and echoes the client's `x-ms-client-request-id` when it sent a sane one (the
Azure convention); the control plane's request log records the client's id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.control import emulated_latency
from devstack.dataverse import batch
from devstack.dataverse.errors import DataverseError, SegmentNotFound, Throttled, Unauthorized
from devstack.dataverse.operations import Operation, handle
from devstack.dataverse.replies import Reply, encode, error_reply
from devstack.dataverse.security import Identity, Principal

if TYPE_CHECKING:
    from devstack.dataverse.app import Dataverse

log = logging.getLogger(__name__)

API_PREFIX = "/api/data/v9.2"
METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"]
CLIENT_REQUEST_ID = "x-ms-client-request-id"
_SANE_ID = re.compile(r"[A-Za-z0-9._:{}-]{1,128}")


# --- the pipeline ------------------------------------------------------------------------------


async def api(request: Request) -> Response:
    response = await _serve(request)
    response.headers.update(request_ids(request))
    return response


def request_ids(request: Request) -> dict[str, str]:
    service_id = str(uuid.uuid4())
    ids = {"x-ms-service-request-id": service_id, "REQ_ID": service_id}
    client_id = request.headers.get(CLIENT_REQUEST_ID, "")
    if _SANE_ID.fullmatch(client_id):
        ids[CLIENT_REQUEST_ID] = client_id
    return ids


async def _serve(request: Request) -> Response:
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
        op = Operation(
            method=request.method,
            path=str(request.scope["path"]).removeprefix(API_PREFIX).removeprefix("/"),
            params=request.query_params.multi_items(),
            headers=request.headers,
            body=await request.body(),
        )
        run = batch.execute if op.path == "$batch" and op.method == "POST" else handle
        reply = await run_in_threadpool(run, dv, principal, op)
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


# --- responses ---------------------------------------------------------------------------------


def reply_response(reply: Reply) -> Response:
    headers, body = encode(reply)
    media_type = headers.pop("Content-Type", None)
    return Response(body, reply.status, headers=headers, media_type=media_type)


def error_response(exc: DataverseError, dv: Dataverse) -> Response:
    if isinstance(exc, Unauthorized):
        headers = {
            "OData-Version": "4.0",
            "WWW-Authenticate": f"Bearer authorization_uri={dv.entra_url}/{dv.tenant.id}"
            f"/oauth2/authorize, resource_id={dv.base_url}/",
        }
        return Response(status_code=401, headers=headers)
    return reply_response(error_reply(exc))


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
