"""Errors become HTTP responses here, and only here, looked up by exception class.

Each known exception class maps to a status, a stable `code`, a message for the client and,
where the contract asks for them, headers (`WWW-Authenticate`, `Retry-After`). The lookup walks
the exception's MRO, so a subclass without its own entry answers as its parent. Messages are
fixed text or built from our own data (the scopes an endpoint needs, the field that was wrong);
nothing from a token, Entra or Dataverse is ever echoed.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from shared.auth.errors import (
    ApplicationOnly,
    AuthError,
    ClientAppNotAllowed,
    Forbidden,
    InsufficientScope,
    InvalidToken,
    SigningKeysUnavailable,
    SubscriptionKeyError,
    SubscriptionKeyInvalid,
    SubscriptionKeyMissing,
)
from shared.dataverse.errors import (
    BackendAuthFailed,
    BackendForbidden,
    BackendRejected,
    BackendThrottled,
    BackendTimeout,
    BackendUnavailable,
    DataverseError,
    PreconditionFailed,
    RecordAccessDenied,
    RecordNotFound,
)
from shared.downstream.errors import (
    AssertionRejected,
    ClaimsChallenge,
    ConsentRequired,
    CredentialRejected,
    DownstreamTokenError,
    TokenServiceTimeout,
    TokenServiceUnavailable,
)
from shared.http.errors import (
    BadInput,
    PayloadTooLarge,
    RateLimited,
    RequestError,
    TooManyConcurrentRequests,
    UnsupportedMediaType,
)
from shared.settings import SettingsError

log = logging.getLogger("central_api")

INVALID_TOKEN_MESSAGE = "Unauthorized. Access token is missing or invalid."
JSON = "application/json"


@dataclass(frozen=True)
class ErrorContext:
    """What a mapping may need beyond the exception itself."""

    correlation_id: str
    authority: str | None = None  # https://login.microsoftonline.com/{tenant}, for challenges


@dataclass(frozen=True)
class Rendered:
    status: int
    message: str
    headers: Mapping[str, str]
    level: int = logging.INFO  # how loudly the pipeline logs it


Mapper = Callable[[Any, ErrorContext], Rendered]


def _retry(seconds: int | None) -> dict[str, str]:
    return {} if seconds is None else {"Retry-After": str(max(1, int(seconds)))}


def _invalid_token(exc: Exception, ctx: ErrorContext) -> Rendered:
    sent = getattr(exc, "token_sent", True)
    header = 'Bearer error="invalid_token"' if sent else "Bearer"
    return Rendered(401, INVALID_TOKEN_MESSAGE, {"WWW-Authenticate": header})


def _insufficient_scope(exc: InsufficientScope, ctx: ErrorContext) -> Rendered:
    what = "app roles" if exc.application else "scopes"
    scopes = " ".join(exc.required)
    return Rendered(
        403,
        f"Forbidden. The access token does not contain any of the {what} required by this "
        f"endpoint: {', '.join(exc.required)}.",
        {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scopes}"'},
    )


def _claims_challenge(exc: ClaimsChallenge, ctx: ErrorContext) -> Rendered:
    claims = base64.b64encode(exc.claims.encode("utf-8")).decode("ascii")
    authorize = f"{ctx.authority}/oauth2/v2.0/authorize" if ctx.authority else ""
    return Rendered(
        401,
        "Unauthorized. The backend requires additional claims (for example multi-factor "
        "authentication). Acquire a new token with the claims in the WWW-Authenticate header "
        "and call again.",
        {
            "WWW-Authenticate": f'Bearer realm="", authorization_uri="{authorize}", '
            f'error="insufficient_claims", claims="{claims}"'
        },
    )


def _fixed(status: int, message: str, level: int = logging.INFO) -> Mapper:
    return lambda exc, ctx: Rendered(status, message, {}, level)


_NOT_FOUND_MESSAGE = "Not found. No such record, or it is not visible to the caller."
_INVALID_KEY_MESSAGE = (
    "Access denied due to invalid subscription key. Make sure to provide a valid key for an "
    "active subscription."
)

# Most specific first is not required: lookup follows each exception's MRO. Every class of the
# error modules still has its own entry (tests/shared/test_error_mapping.py checks), so that a
# base class never answers for a subclass by accident: `Forbidden` must not fall back to
# `AuthError`'s 401.
MAPPINGS: dict[type[Exception], Mapper] = {
    # Subscription key (the contract's exact texts)
    SubscriptionKeyMissing: _fixed(
        401,
        "Access denied due to missing subscription key. Make sure to include subscription key "
        "when making requests to an API.",
    ),
    SubscriptionKeyInvalid: _fixed(401, _INVALID_KEY_MESSAGE),
    SubscriptionKeyError: _fixed(401, _INVALID_KEY_MESSAGE),
    # Token and authorisation
    InvalidToken: _invalid_token,
    SigningKeysUnavailable: lambda exc, ctx: Rendered(
        503,
        "Service unavailable. The API cannot check access tokens right now; retry later.",
        _retry(exc.retry_after),
        logging.ERROR,
    ),
    InsufficientScope: _insufficient_scope,
    ApplicationOnly: lambda exc, ctx: Rendered(
        403,
        "Forbidden. This endpoint accepts only application tokens (client credentials with an "
        "app role); user-delegated tokens are not supported here.",
        {"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
    ),
    ClientAppNotAllowed: lambda exc, ctx: Rendered(
        403,
        "Forbidden. The calling application is not allowed to use this API"
        + (" with this subscription key." if exc.subscription_bound else "."),
        {},
    ),
    Forbidden: lambda exc, ctx: Rendered(
        403,
        "Forbidden. The access token does not allow this operation.",
        {"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
    ),
    AuthError: _invalid_token,
    # Downstream token (On-Behalf-Of, client credentials)
    ClaimsChallenge: _claims_challenge,
    ConsentRequired: _fixed(
        403,
        "Forbidden. Consent for this API to call the backend on the user's behalf is missing. "
        "Ask the Integration Team to grant admin consent.",
        logging.WARNING,
    ),
    AssertionRejected: _invalid_token,
    CredentialRejected: _fixed(
        500,
        "Internal server error. The API is misconfigured; the operations team has been alerted.",
        logging.CRITICAL,
    ),
    TokenServiceTimeout: lambda exc, ctx: Rendered(
        504,
        "Gateway timeout. The identity platform did not answer in time; retry later.",
        _retry(exc.retry_after),
        logging.WARNING,
    ),
    TokenServiceUnavailable: lambda exc, ctx: Rendered(
        503,
        "Service unavailable. The identity platform is not answering; retry later.",
        _retry(exc.retry_after),
        logging.WARNING,
    ),
    DownstreamTokenError: _fixed(
        502, "Bad gateway. The identity platform gave an unexpected answer.", logging.ERROR
    ),
    # Dataverse
    BackendForbidden: _fixed(
        403,
        "Forbidden. The backend denied this operation for the calling user: their own "
        "permissions in the backend do not allow it.",
    ),
    RecordNotFound: _fixed(404, _NOT_FOUND_MESSAGE),
    # A record the caller may not see answers exactly as one that does not exist (same status,
    # code and message), or the difference would tell which ids exist.
    RecordAccessDenied: _fixed(404, _NOT_FOUND_MESSAGE),
    PreconditionFailed: _fixed(
        412,
        "Precondition failed. The record changed since the etag in If-Match was read; read it "
        "again and retry with the new etag.",
    ),
    BackendRejected: _fixed(
        400, "Bad request. The backend rejected the request as invalid.", logging.WARNING
    ),
    BackendThrottled: lambda exc, ctx: Rendered(
        503,
        "Service unavailable. The backend is throttling requests; retry after the time in "
        "Retry-After.",
        _retry(exc.retry_after),
        logging.WARNING,
    ),
    BackendAuthFailed: _fixed(
        502, "Bad gateway. The backend refused the API's credentials.", logging.CRITICAL
    ),
    BackendTimeout: _fixed(
        504, "Gateway timeout. The backend did not answer in time.", logging.WARNING
    ),
    BackendUnavailable: _fixed(
        502, "Bad gateway. The backend failed or gave an unreadable answer.", logging.ERROR
    ),
    DataverseError: _fixed(
        502, "Bad gateway. The backend gave an unexpected answer.", logging.ERROR
    ),
    # The request itself
    BadInput: lambda exc, ctx: Rendered(400, f"Bad request. {exc.field}: {exc.why}.", {}),
    PayloadTooLarge: lambda exc, ctx: Rendered(
        413, f"Payload too large. The body must be at most {exc.limit} bytes.", {}
    ),
    UnsupportedMediaType: _fixed(415, "Unsupported media type. Send the body as application/json."),
    TooManyConcurrentRequests: lambda exc, ctx: Rendered(
        429,
        f"Too many requests. This caller already has {exc.limit} requests in progress; wait for "
        "one to finish, or retry after the time in Retry-After.",
        _retry(exc.retry_after),
        logging.WARNING,
    ),
    RateLimited: lambda exc, ctx: Rendered(
        429,
        f"Too many requests. This subscription may make {exc.calls} calls every "
        f"{exc.period_seconds} seconds; retry after the time in Retry-After.",
        _retry(exc.retry_after),
        logging.WARNING,
    ),
    RequestError: _fixed(400, "Bad request."),
    # Our own configuration
    SettingsError: _fixed(
        500,
        "Internal server error. The API is misconfigured; the operations team has been alerted.",
        logging.CRITICAL,
    ),
}

_UNEXPECTED = Rendered(500, "Internal server error.", {}, logging.ERROR)


def error_code(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else "internal_error"


def render_error(exc: Exception, ctx: ErrorContext) -> tuple[Rendered, str]:
    """The response for `exc` and its stable code."""
    for cls in type(exc).__mro__:
        mapper = MAPPINGS.get(cls)
        if mapper is not None:
            return mapper(exc, ctx), error_code(exc)
    return _UNEXPECTED, "internal_error"


def json_response(
    status: int, payload: Any, *, headers: Mapping[str, str] | None = None
) -> func.HttpResponse:
    merged = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if headers:
        merged.update(headers)
    body = None if payload is None else json.dumps(payload, ensure_ascii=False)
    return func.HttpResponse(
        body, status_code=status, headers=merged, mimetype=JSON, charset="utf-8"
    )


def error_response(rendered: Rendered, code: str, correlation_id: str) -> func.HttpResponse:
    return json_response(
        rendered.status,
        {
            "statusCode": rendered.status,
            "message": rendered.message,
            "code": code,
            "correlationId": correlation_id,
        },
        headers=rendered.headers,
    )
