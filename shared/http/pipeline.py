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

from shared import telemetry
from shared.auth.clients import check_client_app
from shared.auth.errors import InvalidToken
from shared.auth.policy import Policy, authorize
from shared.auth.principal import Principal
from shared.dataverse.call import Call, TokenSource
from shared.http.errors import BadInput, PayloadTooLarge, UnsupportedMediaType
from shared.http.limits import caller_key
from shared.http.responses import ErrorContext, error_response, render_error
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
            rt.rate_limits.check(facts["subscription"])
            bearer = bearer_token(req)
            principal = rt.validator.validate(bearer)
            facts.update(
                mode=principal.mode.value,
                oid=principal.oid,
                tid=principal.tid,
                client_app_id=principal.client_app_id,
            )
            check_client_app(principal.client_app_id, facts["subscription"], rt.settings)
            authorize(principal, policy)
            call = Call(
                token=telemetry.timed(_token_getter(rt, principal, bearer), facts, "token_ms"),
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
            telemetry.describe_query(facts, request.params)
            # Last before the handler, so that only requests that will go downstream count, and
            # a request refused here has cost no token exchange and no Dataverse call.
            with rt.callers.held(caller_key(principal)):
                response = handler(request)
            facts["code"] = "ok"
            level, error = logging.INFO, None
        except Exception as exc:
            rendered, code = render_error(exc, ErrorContext(cid, authority))
            response = error_response(rendered, code, cid)
            facts["code"] = code
            level, error = rendered.level, exc
        response.headers[CORRELATION_HEADER] = cid
        telemetry.log_request(
            facts,
            status=response.status_code,
            level=level,
            started=started,
            call=call,
            error=error,
            unexpected=facts["code"] == "internal_error",
        )
        return response

    function.__name__ = function.__qualname__ = name
    return function
