"""The Dataverse emulator's own control routes, next to the shared ones under `/_emulator/`
(loopback only, not logged, no faults; see `devstack.control`).

    GET    /_emulator/limits    -> {"thresholds": T, "defaults": T, "callers": {id: USAGE}}
                                   T = {"requests", "execution_ms", "concurrent", "window_seconds"}
                                   USAGE = {"requests", "execution_ms", "concurrent"}
    PUT    /_emulator/limits    any part of T -> the same shape as GET (thresholds now in force)
    DELETE /_emulator/limits    defaults back, counters cleared -> 204
    GET    /_emulator/users     -> {"users": [{"name", "kind", "systemuserid", "oid"|"appid",
                                               "roles", "privileges": {table: {priv: depth}}}]}
    POST   /_emulator/seed      wipe every table and load the demo data again -> {"seeded": counts}
    POST   /_emulator/keys/refresh   fetch Entra's signing keys now (as after a key rollover;
                                   otherwise only an unknown `kid` does) -> {"kids": [kid, ...]}

`POST /_emulator/reset` (shared) also restores the default limits; it keeps the data.
Bad input answers 400 `{"error": "..."}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from devstack.dataverse.app import Dataverse


def _dataverse(request: Request) -> Dataverse:
    dv: Dataverse = request.app.state.dataverse
    return dv


async def get_limits(request: Request) -> Response:
    return JSONResponse(_dataverse(request).limits.snapshot())


async def put_limits(request: Request) -> Response:
    try:
        data: Any = await request.json()
    except ValueError:
        raise ValueError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    limits = _dataverse(request).limits
    limits.configure(data)
    return JSONResponse(limits.snapshot())


async def delete_limits(request: Request) -> Response:
    _dataverse(request).limits.reset()
    return Response(status_code=204)


async def get_users(request: Request) -> Response:
    users = []
    for p in _dataverse(request).directory.principals:
        entry: dict[str, Any] = {
            "name": p.name,
            "kind": p.kind,
            "systemuserid": p.systemuserid,
            "roles": list(p.roles),
            "privileges": p.privileges,
        }
        entry.update({"oid": p.oid} if p.kind == "user" else {"appid": p.appid})
        users.append(entry)
    return JSONResponse({"users": users})


async def post_seed(request: Request) -> Response:
    counts = await run_in_threadpool(_dataverse(request).reseed)
    return JSONResponse({"seeded": counts})


async def post_keys_refresh(request: Request) -> Response:
    kids = await run_in_threadpool(_dataverse(request).keys.refresh)
    return JSONResponse({"kids": kids})


ROUTES = [
    Route("/_emulator/limits", get_limits, methods=["GET"]),
    Route("/_emulator/limits", put_limits, methods=["PUT"]),
    Route("/_emulator/limits", delete_limits, methods=["DELETE"]),
    Route("/_emulator/users", get_users, methods=["GET"]),
    Route("/_emulator/seed", post_seed, methods=["POST"]),
    Route("/_emulator/keys/refresh", post_keys_refresh, methods=["POST"]),
]
