"""The request pipeline every protected endpoint runs through, in the contract's order:

1. correlation id (the client's `x-correlation-id` when it is sane, else a new one);
2. subscription key (before anything else, so a keyless request costs nothing downstream);
3. bearer token -> `Principal` (signature, issuer, audience, lifetime, tenant, mode);
4. the endpoint's `Policy` (scopes or app roles; application-only endpoints);
5. the handler, with a `Call` that fetches the Dataverse token for *this* principal (OBO or
   client credentials) only when Dataverse is actually called;
6. any exception -> `shared.http.responses`, the one place errors become HTTP.

One log record per request: route template, status, code, mode, oid, tid, client app id,
subscription name, latency and downstream latency. Never a token, a key, a query string, a
name or an e-mail address.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from shared.auth.errors import InvalidToken
from shared.auth.policy import Policy, authorize
from shared.auth.principal import Principal
from shared.dataverse.call import Call
from shared.http.errors import BadInput, PayloadTooLarge, UnsupportedMediaType
from shared.http.responses import ErrorContext, error_response, render_error
from shared.runtime import Runtime, runtime

log = logging.getLogger("central_api")

CORRELATION_HEADER = "x-correlation-id"
SUBSCRIPTION_HEADER = "Ocp-Apim-Subscription-Key"
SUBSCRIPTION_QUERY = "subscription-key"
MAX_BODY_BYTES = 64 * 1024
MAX_QUERY_FIELDS = 20
_CORRELATION = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# RFC 6750 b64token, one space after a case-insensitive scheme; nothing else on the line.
_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]+=*)$")

Handler = Callable[["ApiRequest"], func.HttpResponse]


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
    if isinstance(given, str) and _CORRELATION.match(given):
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
    params: dict[str, str] = {}
    for name, value in pairs:
        if name == SUBSCRIPTION_QUERY:
            continue  # consumed by the subscription check (or refused there)
        if name not in allowed:
            raise BadInput(name[:40], "is not a parameter of this endpoint")
        if name in params:
            raise BadInput(name, "must be given at most once")
        params[name] = value
    return params


def _subscription_key(req: func.HttpRequest, rt: Runtime) -> str | None:
    key = req.headers.get(SUBSCRIPTION_HEADER)
    if key is None and rt.settings.subscription_key_in_query:
        key = req.params.get(SUBSCRIPTION_QUERY)
    return key if isinstance(key, str) else None


def bearer_token(req: func.HttpRequest) -> str:
    header = req.headers.get("Authorization")
    if header is None:
        raise InvalidToken("no Authorization header", token_sent=False)
    match = _BEARER.match(header)
    if match is None:
        raise InvalidToken("Authorization is not one Bearer token")
    return match.group(1)


def _token_getter(rt: Runtime, principal: Principal) -> Callable[[], str]:
    if principal.is_application:
        return rt.downstream.for_app
    return lambda: rt.downstream.for_user(principal.token)


def endpoint(
    policy: Policy,
    handler: Handler,
    *,
    name: str,
    route: str,
    params: frozenset[str] = frozenset(),
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """A Functions entry point running `handler` behind the whole pipeline; `params` is the
    allowlist of query parameters, checked after authorisation and before the handler."""

    def function(req: func.HttpRequest) -> func.HttpResponse:
        started = time.perf_counter()
        cid = correlation_id(req)
        facts: dict[str, Any] = {"route": route, "method": req.method, "correlation_id": cid}
        authority: str | None = None
        call: Call | None = None
        try:
            rt = runtime()
            authority = rt.settings.authority
            facts["subscription"] = rt.subscriptions.check(_subscription_key(req, rt))
            principal = rt.validator.validate(bearer_token(req))
            facts.update(
                mode=principal.mode.value,
                oid=principal.oid,
                tid=principal.tid,
                client_app_id=principal.client_app_id,
            )
            authorize(principal, policy)
            call = Call(
                token=_token_getter(rt, principal),
                correlation_id=cid,
                deadline=time.monotonic() + rt.settings.request_budget_seconds,
            )
            request = ApiRequest(
                method=req.method,
                params=query_params(req, params),
                route_params=req.route_params,
                headers={k.lower(): v for k, v in req.headers.items()},
                body=req.get_body() or b"",
                principal=principal,
                call=call,
                runtime=rt,
            )
            response = handler(request)
            facts["code"] = "ok"
            level = logging.INFO
        except Exception as exc:
            rendered, code = render_error(exc, ErrorContext(cid, authority))
            response = error_response(rendered, code, cid)
            facts["code"] = code
            facts["reason"] = getattr(exc, "reason", None) or type(exc).__name__
            level = rendered.level
            if rendered.status == 500 and level < logging.CRITICAL:
                log.exception("unexpected error", extra={"correlation_id": cid})
        response.headers[CORRELATION_HEADER] = cid
        facts["status"] = response.status_code
        facts["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        if call is not None:
            facts["downstream_ms"] = round(call.downstream_ms, 2)
            facts["downstream_calls"] = call.downstream_calls
        log.log(level, _summary(facts), extra=facts)
        return response

    function.__name__ = function.__qualname__ = name
    return function


def _summary(facts: Mapping[str, Any]) -> str:
    order = ("method", "route", "status", "code", "duration_ms", "downstream_ms", "mode",
             "oid", "tid", "client_app_id", "subscription", "reason", "correlation_id")  # fmt: skip
    return " ".join(f"{k}={facts[k]}" for k in order if facts.get(k) is not None)
