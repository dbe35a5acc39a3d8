"""P2: in-process handler latency for `GET /api/customers/{id}` ÷ the same OData request sent
straight to the Dataverse emulator with a ready token.

Both sides run in this process against the dev stack's Dataverse emulator over TLS, with warm
caches and kept-alive connections:

- A, the handler: the function the host would call (found through the dev host's in-process
  router, as the Functions worker finds it), called with a `func.HttpRequest` carrying Alice's
  token and a subscription key. The deployed functions are async since issue 12; A is the sync
  build of the same handler and pipeline (`bench.p10_sync_app`), so that both sides send with
  the same HTTP client (requests) and the ratio is the API's own work, not a difference of
  clients (the async path's CPU per request is P10's). It runs the whole pipeline: key,
  validated-token memory, principal, policy, the On-Behalf-Of cache, the Dataverse call and the
  JSON it renders.
- B, the floor: the OData request the handler sent (path and query read back from the
  emulator's request log), with the Dataverse token the API holds for Alice and the same
  headers, on a `requests.Session` of its own.

What A costs beyond B is the API's own work per request.
"""

from __future__ import annotations

import uuid
from typing import Any

import azure.functions as func
import requests

from bench.context import BenchContext
from bench.core import Figure, Result, paired, per_item, ratio_row
from devstack.client import DevClient
from devstack.host import FunctionsRouter
from shared.dataverse.client import ODATA_HEADERS

BATCH = 20
ROUNDS = 40
WARMUP = 50
USER = "alice"


def run(ctx: BenchContext) -> Result:
    from shared import health
    from shared.runtime import reset, runtime

    stack = ctx.stack
    reset()  # settings from the stack's environment; caches start empty
    health.forget()
    client = DevClient.from_stack(stack.material.folder)
    token = client.user_token(USER)

    listed = client.call("GET", "/api/customers?pageSize=1", token=token)
    listed.raise_for_status()
    customer_id = listed.json()["items"][0]["id"]
    path = f"/api/customers/{customer_id}"

    router = FunctionsRouter.load("bench.p10_sync_app", threads=1)
    resolved = router.resolve("GET", path)
    assert resolved is not None, f"no function serves GET {path}"
    function, route_params = resolved
    assert not function.is_async, "the customers function is sync"
    assert not function.wants_context, "it takes only the request"

    def handler_request() -> func.HttpRequest:
        return func.HttpRequest(
            method="GET",
            url=client.api_url + path,
            headers={
                "Authorization": f"Bearer {token}",
                "Ocp-Apim-Subscription-Key": client.subscription_key,
                "x-correlation-id": str(uuid.uuid4()),
            },
            params={},
            route_params=dict(route_params),
            body=b"",
        )

    def handler(req: func.HttpRequest) -> None:
        response = function.call(**{function.trigger_arg: req})
        if response.status_code != 200:
            raise AssertionError(f"GET {path} answered {response.status_code}")

    ctx.progress("P2: warming the handler")
    for _ in range(ctx.scaled(WARMUP, 5)):
        handler(handler_request())
    log = stack.dataverse_app.state.dataverse.control.requests(0)
    sent = log[-1]
    assert sent["path"].endswith(f"({customer_id})"), sent["path"]
    odata_url = stack.dataverse_url.rstrip("/") + sent["path"]
    if sent["query"]:
        odata_url += "?" + sent["query"]

    rt = runtime()
    exchanges = rt.downstream.obo_exchanges
    dataverse_token = rt.downstream.for_user(token)  # the token the handler sends: a cache hit
    assert rt.downstream.obo_exchanges == exchanges
    floor = requests.Session()
    floor.verify = str(stack.ca_bundle)
    floor.trust_env = False

    def floor_headers() -> dict[str, Any]:
        correlation = str(uuid.uuid4())
        return {
            **ODATA_HEADERS,
            "x-ms-correlation-request-id": correlation,
            "x-ms-client-request-id": correlation,
            "Authorization": f"Bearer {dataverse_token}",
        }

    def direct(headers: dict[str, Any]) -> None:
        response = floor.get(odata_url, headers=headers, timeout=10)
        response.content  # noqa: B018 - read the body, as the API's client does
        if response.status_code != 200:
            raise AssertionError(f"Dataverse answered {response.status_code}")

    for _ in range(ctx.scaled(WARMUP, 5)):
        direct(floor_headers())

    ctx.progress("P2: handler and direct OData request, side by side")
    # Requests and headers are built before the clock starts, on both sides alike.
    result = paired(
        lambda _: per_item(handler, [handler_request() for _ in range(BATCH)]),
        lambda _: per_item(direct, [floor_headers() for _ in range(BATCH)]),
        rounds=ctx.scaled(ROUNDS, 3),
    )
    floor.close()
    router.close()
    return Result(
        [
            ratio_row(
                "P2",
                "GET /api/customers/{id} in-process handler ÷ the same OData request direct",
                result,
                1.3,
                unit="ms",
            )
        ]
    )


FIGURE = Figure("P2", "in-process handler latency ÷ the same OData request direct", run)
