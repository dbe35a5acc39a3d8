"""shared.http.responses.MAPPINGS is complete: every exception class of the error modules maps,
through its own entry, to the contract's status, with the contract's headers, and with a message
that repeats nothing from the exception.

The classes are found by walking the modules, so a new error class fails here until it has a
mapping and an expected status below.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import re
from types import ModuleType
from typing import Any

import pytest

import shared.auth.errors
import shared.dataverse.errors
import shared.downstream.errors
import shared.http.errors
from shared.http.responses import (
    INVALID_TOKEN_MESSAGE,
    MAPPINGS,
    ErrorContext,
    error_response,
    render_error,
)
from shared.settings import SettingsError

MODULES: list[ModuleType] = [
    shared.auth.errors,
    shared.downstream.errors,
    shared.dataverse.errors,
    shared.http.errors,
]

# The contract's status for each class ("Request pipeline", "Bad input", "Errors from
# downstream"); base classes that are never raised themselves answer as their family would.
EXPECTED: dict[str, int] = {
    "AuthError": 401,
    "SubscriptionKeyError": 401,
    "SubscriptionKeyMissing": 401,
    "SubscriptionKeyInvalid": 401,
    "InvalidToken": 401,
    "SigningKeysUnavailable": 503,
    "Forbidden": 403,
    "InsufficientScope": 403,
    "ApplicationOnly": 403,
    "ClientAppNotAllowed": 403,
    "DownstreamTokenError": 502,
    "ClaimsChallenge": 401,
    "ConsentRequired": 403,
    "AssertionRejected": 401,
    "CredentialRejected": 500,
    "TokenServiceUnavailable": 503,
    "TokenServiceTimeout": 504,
    "DataverseError": 502,
    "BackendForbidden": 403,
    "RecordNotFound": 404,
    "RecordAccessDenied": 404,
    "PreconditionFailed": 412,
    "BackendRejected": 400,
    "BackendThrottled": 503,
    "BackendAuthFailed": 502,
    "BackendUnavailable": 502,
    "BackendTimeout": 504,
    "RequestError": 400,
    "BadInput": 400,
    "PayloadTooLarge": 413,
    "UnsupportedMediaType": 415,
    "TooManyConcurrentRequests": 429,
    "RateLimited": 429,
    "SettingsError": 500,
}
SECRET = "SECRET-7f3a"  # given to every exception; must never reach a client
CTX = ErrorContext("cid-0001", "https://login.example/tenant-id")


def error_classes() -> list[type[Exception]]:
    found: list[type[Exception]] = [SettingsError]
    for module in MODULES:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Exception) and cls.__module__ == module.__name__:
                found.append(cls)
    return found


CLASSES = error_classes()
_ARGUMENTS: dict[str, Any] = {
    "reason": SECRET,
    "message": SECRET,
    "claims": json.dumps({"access_token": {"capolids": {"essential": True, "values": ["p1"]}}}),
    "required": ("customer.readwrite",),
    "application": False,
    "retry_after": 7,
    "field": "lastName",
    "why": "must be a string",
    "limit": 65536,
    "calls": 300,
    "period_seconds": 60,
    "shared": True,
    "token_sent": True,
    "entra_code": 50079,
    "status": 500,
    "error_code": "0x80040216",
}


def make(cls: type[Exception]) -> Exception:
    """An instance of `cls`, its constructor's parameters filled from _ARGUMENTS."""
    parameters = inspect.signature(cls.__init__).parameters
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, p in list(parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            if cls.__init__ is BaseException.__init__ or p.kind is p.VAR_POSITIONAL:
                args = [SECRET]
            continue
        if name not in _ARGUMENTS:
            assert p.default is not p.empty, f"{cls.__name__}({name}=?): add it to _ARGUMENTS"
            continue
        if p.kind is p.KEYWORD_ONLY:
            kwargs[name] = _ARGUMENTS[name]
        else:
            args.append(_ARGUMENTS[name])
    return cls(*args, **kwargs)


def test_the_walk_finds_every_class_and_the_table_names_exactly_them() -> None:
    assert len(CLASSES) >= 30
    assert sorted(c.__name__ for c in CLASSES) == sorted(EXPECTED)


def test_every_mapping_is_for_a_class_of_the_error_modules() -> None:
    assert set(MAPPINGS) == set(CLASSES)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_each_class_maps_through_its_own_entry_to_the_contracts_status(
    cls: type[Exception],
) -> None:
    assert cls in MAPPINGS, f"{cls.__name__} would answer as one of its bases"
    exc = make(cls)
    rendered, code = render_error(exc, CTX)
    assert rendered.status == EXPECTED[cls.__name__]
    assert code == cls.code if hasattr(cls, "code") else code == "internal_error"  # type: ignore[attr-defined]
    assert re.fullmatch(r"[a-z_]+", code)
    # Nothing the exception carries reaches the client: only our own words (and the field
    # name for bad input, which the client sent).
    assert SECRET not in rendered.message
    assert SECRET not in json.dumps(dict(rendered.headers))
    assert rendered.message.endswith(".")
    if rendered.status >= 500:
        assert rendered.level >= logging.WARNING


def test_codes_are_distinct() -> None:
    # But for one on purpose: a record the caller may not see answers as a missing record does
    # (docs/security.md, "Existence oracle"; tests/security/test_review_existence.py).
    same = shared.dataverse.errors.RecordAccessDenied
    codes = [render_error(make(cls), CTX)[1] for cls in CLASSES if cls is not same]
    assert len(set(codes)) == len(codes)


def test_an_unknown_exception_is_a_plain_500() -> None:
    rendered, code = render_error(RuntimeError(SECRET), CTX)
    assert (rendered.status, rendered.message, code) == (
        500,
        "Internal server error.",
        "internal_error",
    )
    assert dict(rendered.headers) == {}


def test_invalid_token_challenges() -> None:
    missing, _ = render_error(shared.auth.errors.InvalidToken("x", token_sent=False), CTX)
    sent, _ = render_error(shared.auth.errors.InvalidToken("x"), CTX)
    assertion, _ = render_error(shared.downstream.errors.AssertionRejected(), CTX)
    assert missing.headers == {"WWW-Authenticate": "Bearer"}
    assert sent.headers == assertion.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    assert missing.message == sent.message == assertion.message == INVALID_TOKEN_MESSAGE


def test_scope_403_names_what_is_required() -> None:
    exc = shared.auth.errors.InsufficientScope(
        ("customer.read", "customer.readwrite"), application=False
    )
    rendered, _ = render_error(exc, CTX)
    assert "customer.read, customer.readwrite" in rendered.message
    assert "scopes" in rendered.message
    assert rendered.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="customer.read customer.readwrite"'
    )
    app, _ = render_error(
        shared.auth.errors.InsufficientScope(("vehicle.readwrite",), application=True), CTX
    )
    assert "app roles" in app.message
    assert "vehicle.readwrite" in app.message


def test_claims_challenge_header() -> None:
    claims = _ARGUMENTS["claims"]
    rendered, _ = render_error(shared.downstream.errors.ClaimsChallenge(claims), CTX)
    header = rendered.headers["WWW-Authenticate"]
    assert header.startswith('Bearer realm="", ')
    values = dict(re.findall(r'(\w+)="([^"]*)"', header))
    assert values["authorization_uri"] == "https://login.example/tenant-id/oauth2/v2.0/authorize"
    assert values["error"] == "insufficient_claims"
    assert base64.b64decode(values["claims"]).decode() == claims


@pytest.mark.parametrize(
    "exc",
    [
        shared.dataverse.errors.BackendThrottled(retry_after=30),
        shared.downstream.errors.TokenServiceUnavailable(retry_after=30),
        shared.downstream.errors.TokenServiceTimeout(retry_after=30),
        shared.auth.errors.SigningKeysUnavailable("x", retry_after=30),
    ],
    ids=lambda e: type(e).__name__,
)
def test_retry_after_is_passed_on_when_known(exc: Exception) -> None:
    rendered, _ = render_error(exc, CTX)
    assert rendered.headers["Retry-After"] == "30"


def test_no_retry_after_when_unknown() -> None:
    rendered, _ = render_error(shared.downstream.errors.TokenServiceUnavailable(), CTX)
    assert "Retry-After" not in rendered.headers


def test_error_response_shape() -> None:
    rendered, code = render_error(shared.http.errors.BadInput("pageSize", "must be 1-200"), CTX)
    response = error_response(rendered, code, "cid-0001")
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert json.loads(response.get_body()) == {
        "statusCode": 400,
        "message": "Bad request. pageSize: must be 1-200.",
        "code": "invalid_input",
        "correlationId": "cid-0001",
    }
    assert response.headers["Cache-Control"] == "no-store"
