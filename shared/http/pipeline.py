"""The request pipeline every protected endpoint runs through, in the contract's order:

1. correlation id (the client's `x-correlation-id` when it is sane, else a new one);
2. subscription key (before anything else, so a keyless request costs nothing downstream);
3. the subscription's rate limit (`shared.http.rate_limits`, across instances when there is a
   shared store): counted once per request, before the token is validated, so that a refused
   request costs no signature check, no token exchange and no Dataverse call;
4. bearer token -> `Principal` (signature, issuer, audience, lifetime, tenant, mode), and whether
   its client app may call (with this subscription key: `shared.auth.clients`);
5. the endpoint's `Policy` (scopes or app roles; application-only endpoints);
6. the query parameters against the endpoint's allowlist;
7. the caller's place under the per-caller cap on concurrent requests (`shared.http.limits`,
   per instance), held for as long as the handler runs and released however it ends; over the
   cap the request answers 429 before any token exchange or Dataverse call;
8. the handler, with a `Call` that fetches the Dataverse token for *this* principal (OBO or
   client credentials) only when Dataverse is actually called;
9. any exception -> `shared.http.responses`, the one place errors become HTTP.

One log record per request (`shared.telemetry.log_request`): route template, status, code,
mode, oid, tid, client app id, subscription name, latency, downstream latency and outcome.
Never a token, a key, a query string, a name or an e-mail address.

**Sync or async functions, one pipeline.** `endpoint(..., asynchronous=True)` gives an `async
def` function, which the Python worker runs on its event loop; otherwise a sync one, run on the
worker's thread pool. Both run the same steps in the same order (`_Invocation`); only the I/O
edge differs:

- steps 2 to 6 never block, except the two that may wait on the network: counting a rate limit
  in the shared store, and validating a token while this instance has no fresh signing keys
  (its first request, or once a day: the keys may be fetched). `_admission` yields those as
  calls to make; a sync function makes them in place, an async one on a thread
  (`asyncio.to_thread`), so the loop never waits. A token naming a key the instance does not
  know yet still fetches the keys on the loop (at most once per 5 minutes);
- a handler that calls Dataverse yields its requests (`shared.dataverse.call.Steps`); they are
  sent by `DataverseClient.run` on the thread, or `run_async` on the loop;
- the Dataverse token: on the loop a cached one is taken at once (`DownstreamTokens.cached_*`),
  and only a miss (MSAL, the store) goes to a thread.

Every request counts in `shared.inflight.IN_FLIGHT` while it is served (per instance).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from shared import telemetry
from shared.auth.clients import check_client_app
from shared.auth.errors import InvalidToken
from shared.auth.policy import Policy, authorize
from shared.auth.principal import Principal
from shared.dataverse.call import AsyncTokenSource, Call, Cursor, Steps, TokenSource
from shared.http.errors import BadInput, PayloadTooLarge, UnsupportedMediaType
from shared.http.limits import caller_key
from shared.http.responses import ErrorContext, error_response, render_error
from shared.inflight import IN_FLIGHT
from shared.runtime import Runtime, runtime

CORRELATION_HEADER = "x-correlation-id"
SUBSCRIPTION_HEADER = "Ocp-Apim-Subscription-Key"
SUBSCRIPTION_QUERY = "subscription-key"
MAX_BODY_BYTES = 64 * 1024
MAX_QUERY_FIELDS = 20
# Whole-string checks use `fullmatch`: `match` with `$` also accepts a final "\n".
_CORRELATION = re.compile(r"[A-Za-z0-9._-]{8,64}")
_PARAM_NAME = re.compile(r"[A-Za-z0-9$@._-]{1,40}")


# RFC 6750 b64token, one space after a case-insensitive scheme; nothing else on the line.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]+=*)")

# A handler answers at once, or as a conversation with Dataverse (`Steps`), whichever way the
# function runs.
Handler = Callable[["ApiRequest"], "func.HttpResponse | Steps[func.HttpResponse]"]
# What `_admission` yields: a call that may block on the network, to make before it goes on.
Blocking = Callable[[], object]


@dataclass(frozen=True)
class ApiRequest:
    """What a handler sees: the parsed request and who is calling; never raw claims."""

    method: str
    params: Mapping[str, str]
    route_params: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    principal: Principal
    call: Call
    runtime: Runtime

    def json_body(self) -> dict[str, Any]:
        if len(self.body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(MAX_BODY_BYTES)
        content_type = self.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise UnsupportedMediaType
        try:
            value = json.loads(self.body.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BadInput("body", "is not valid JSON") from None
        if not isinstance(value, dict):
            raise BadInput("body", "must be a JSON object")
        return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def correlation_id(req: func.HttpRequest) -> str:
    given = req.headers.get(CORRELATION_HEADER)
    if isinstance(given, str) and _CORRELATION.fullmatch(given):
        return given
    return str(uuid.uuid4())


def query_params(req: func.HttpRequest, allowed: frozenset[str]) -> dict[str, str]:
    """The query string, each allowed parameter at most once; anything else is a 400."""
    raw = urlsplit(req.url).query
    try:
        pairs = parse_qsl(
            raw,
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise BadInput("query", "is not a valid query string") from None
    pairs = [(n, v) for n, v in pairs if n != SUBSCRIPTION_QUERY]  # the key check's business
    unknown = list(dict.fromkeys(_shown(n) for n, _ in pairs if n not in allowed))
    if unknown:
        if len(unknown) == 1:
            raise BadInput(unknown[0], "is not a parameter of this endpoint")
        raise BadInput(", ".join(unknown[:5]), "are not parameters of this endpoint")
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise BadInput(name, "must be given at most once")
        params[name] = value
    return params


def _shown(name: str) -> str:
    """A client's parameter name, fit to repeat in a message (odd ones are not repeated)."""
    return name if _PARAM_NAME.fullmatch(name) else "query"


def _subscription_key(req: func.HttpRequest, rt: Runtime) -> str | None:
    key = req.headers.get(SUBSCRIPTION_HEADER)
    if key is None and rt.settings.subscription_key_in_query:
        key = req.params.get(SUBSCRIPTION_QUERY)
    return key if isinstance(key, str) else None


def bearer_token(req: func.HttpRequest) -> str:
    header = req.headers.get("Authorization")
    if header is None:
        raise InvalidToken("no Authorization header", token_sent=False)
    match = _BEARER.fullmatch(header)
    if match is None:
        raise InvalidToken("Authorization is not one Bearer token")
    return match.group(1)


def _token_getter(rt: Runtime, principal: Principal, assertion: str) -> TokenSource:
    """`assertion` is this request's bearer token, the one `principal` was validated from: the
    On-Behalf-Of assertion. The principal does not keep it, so a cache of principals holds no
    tokens."""
    if principal.is_application:
        return rt.downstream.for_app

    def for_user(stale: str | None = None) -> str:
        return rt.downstream.for_user(assertion, stale)

    return for_user


def _async_token_getter(rt: Runtime, principal: Principal, assertion: str) -> AsyncTokenSource:
    """`_token_getter` for the event loop: a token this instance holds at once, anything else
    (MSAL, the shared store) on a thread."""
    downstream = rt.downstream
    if principal.is_application:

        async def for_app(stale: str | None = None) -> str:
            held = downstream.cached_for_app() if stale is None else None
            return held if held is not None else await asyncio.to_thread(downstream.for_app, stale)

        return for_app

    async def for_user(stale: str | None = None) -> str:
        held = downstream.cached_for_user(assertion) if stale is None else None
        if held is not None:
            return held
        return await asyncio.to_thread(downstream.for_user, assertion, stale)

    return for_user


class _Invocation:
    """One request's way through the pipeline, the same for sync and async functions."""

    def __init__(self, req: func.HttpRequest, route: str, on_loop: bool) -> None:
        self.req = req
        self.on_loop = on_loop
        self.started = time.perf_counter()
        self.cid = correlation_id(req)
        self.facts: dict[str, Any] = {
            "route": route,
            "method": req.method,
            "correlation_id": self.cid,
        }
        self.authority: str | None = None
        self.call: Call | None = None

    def _admission(
        self, policy: Policy, params: frozenset[str]
    ) -> Generator[Blocking, object, ApiRequest]:
        """Steps 1 to 6, in the contract's order, up to the handler's `ApiRequest`."""
        req, facts = self.req, self.facts
        rt = runtime()
        self.authority = rt.settings.authority
        subscription = rt.subscriptions.check(_subscription_key(req, rt))
        facts["subscription"] = subscription
        if rt.rate_limits.counts_in_store(subscription):
            yield partial(rt.rate_limits.check, subscription)
        else:
            rt.rate_limits.check(subscription)
        bearer = bearer_token(req)
        if rt.keys.fresh:
            principal = rt.validator.validate(bearer)
        else:  # may fetch the keys: the first request of an instance, or keys a day old
            validated = yield partial(rt.validator.validate, bearer)
            assert isinstance(validated, Principal)
            principal = validated
        facts.update(
            mode=principal.mode.value,
            oid=principal.oid,
            tid=principal.tid,
            client_app_id=principal.client_app_id,
        )
        check_client_app(principal.client_app_id, subscription, rt.settings)
        authorize(principal, policy)
        self.call = Call(
            token=telemetry.timed(_token_getter(rt, principal, bearer), facts, "token_ms"),
            correlation_id=self.cid,
            deadline=time.monotonic() + rt.settings.request_budget_seconds,
            token_async=(
                telemetry.timed_async(_async_token_getter(rt, principal, bearer), facts, "token_ms")
                if self.on_loop
                else None
            ),
        )
        request = ApiRequest(
            method=req.method,
            params=query_params(req, params),
            route_params=req.route_params,
            headers={k.lower(): v for k, v in req.headers.items()},
            body=req.get_body() or b"",
            principal=principal,
            call=self.call,
            runtime=rt,
        )
        telemetry.describe_query(facts, request.params)
        return request

    def admit(self, policy: Policy, params: frozenset[str]) -> ApiRequest:
        steps = Cursor(self._admission(policy, params))
        while (blocking := steps.next()) is not None:
            steps.send(blocking())
        return steps.result()

    async def admit_async(self, policy: Policy, params: frozenset[str]) -> ApiRequest:
        steps = Cursor(self._admission(policy, params))
        while (blocking := steps.next()) is not None:
            steps.send(await asyncio.to_thread(blocking))
        return steps.result()

    def answered(self, response: func.HttpResponse) -> func.HttpResponse:
        self.facts["code"] = "ok"
        return self._logged(response, logging.INFO, None)

    def failed(self, exc: Exception) -> func.HttpResponse:
        rendered, code = render_error(exc, ErrorContext(self.cid, self.authority))
        self.facts["code"] = code
        return self._logged(error_response(rendered, code, self.cid), rendered.level, exc)

    def _logged(
        self, response: func.HttpResponse, level: int, error: Exception | None
    ) -> func.HttpResponse:
        response.headers[CORRELATION_HEADER] = self.cid
        telemetry.log_request(
            self.facts,
            status=response.status_code,
            level=level,
            started=self.started,
            call=self.call,
            error=error,
            unexpected=self.facts["code"] == "internal_error",
        )
        return response


def endpoint(
    policy: Policy,
    handler: Handler,
    *,
    name: str,
    route: str,
    params: frozenset[str] = frozenset(),
    asynchronous: bool = False,
) -> Callable[[func.HttpRequest], func.HttpResponse | Awaitable[func.HttpResponse]]:
    """A Functions entry point running `handler` behind the whole pipeline; `params` is the
    allowlist of query parameters, checked after authorisation and before the handler.
    `asynchronous`: an `async def` function, run on the worker's event loop (see above)."""

    def function(req: func.HttpRequest) -> func.HttpResponse:
        with IN_FLIGHT:
            invocation = _Invocation(req, route, on_loop=False)
            try:
                request = invocation.admit(policy, params)
                # Last before the handler, so that only requests that will go downstream count,
                # and a request refused here has cost no token exchange and no Dataverse call.
                with request.runtime.callers.held(caller_key(request.principal)):
                    answer = handler(request)
                    response = (
                        answer
                        if isinstance(answer, func.HttpResponse)
                        else request.runtime.dataverse.run(answer, request.call)
                    )
            except Exception as exc:
                return invocation.failed(exc)
            return invocation.answered(response)

    async def async_function(req: func.HttpRequest) -> func.HttpResponse:
        with IN_FLIGHT:
            invocation = _Invocation(req, route, on_loop=True)
            try:
                request = await invocation.admit_async(policy, params)
                with request.runtime.callers.held(caller_key(request.principal)):
                    answer = handler(request)
                    response = (
                        answer
                        if isinstance(answer, func.HttpResponse)
                        else await request.runtime.dataverse.run_async(answer, request.call)
                    )
            except Exception as exc:
                return invocation.failed(exc)
            return invocation.answered(response)

    chosen = async_function if asynchronous else function
    chosen.__name__ = chosen.__qualname__ = name
    return chosen
