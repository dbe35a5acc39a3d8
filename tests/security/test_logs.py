"""L1–L6: nothing the API logs, and nothing it answers, carries a token, a key, a name, an
e-mail address, search text or an upstream message; and telemetry is there only when asked for.

The API host serves function_app.py in this process, on threads, so pytest's `caplog` (whose
handler sits on the root logger) sees every record the API, MSAL, requests and urllib3 make
while a test runs. Each test sends canary strings where a secret or personal datum could come
from (tokens valid, malformed and expired; subscription keys in the header and the query string;
search text; body values; Entra's `error_description`; Dataverse's error messages) and then
looks for them in every part of every record: message, args, attributes given as `extra`,
exception text. The demo users' names and UPNs must never appear either; `oid` and `tid` do.

Azure Monitor is checked in subprocesses, each serving requests in-process through the dev
host's router: with APPLICATIONINSIGHTS_CONNECTION_STRING unset nothing of OpenTelemetry is
imported; with it set (pointing at a closed local port, and every outbound connection other
than loopback refused) it is configured once, the request record arrives with its custom
dimensions, outgoing spans carry no query string, and requests still succeed; a connection
string Azure Monitor refuses leaves the API working.

The e-mail-shaped canaries would be scrubbed even if the API logged them (see
`shared.telemetry`). The others are plain words, which scrubbing recognises only inside a URL's
query string, so for them these tests show that the API never logs them at all.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests

from devstack.config import ROOT
from shared import telemetry
from tests.api.conftest import Api
from tests.api.contract_helpers import INVALID_TOKEN
from tests.security.downstream import assert_error
from tests.security.tokens import TokenBuilder, b64, compact

pytestmark = pytest.mark.usefixtures("debug_logs")

LIST = "/api/customers?pageSize=2"
TOKEN_PATH = "*/oauth2/v2.0/token"
CONTACTS_PATH = "/api/data/v9.2/contacts*"


def canary(kind: str = "") -> str:
    return f"cnry{kind}{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="module")
def signed_in(api: Api) -> Api:
    """Alice's and dealer-sync's tokens, taken before any test starts capturing: the test's own
    MSAL client logs its sign-in (with Alice's UPN), which is not the API's doing. One call
    through the API also sets up its logging before the first capture."""
    api.user_token("alice")
    api.app_token("dealer-sync")
    assert api.call("GET", LIST, user="alice").status_code == 200
    return api


@pytest.fixture
def debug_logs(signed_in: Api, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything at DEBUG that the process lets through (libraries keep the caps the API
    configured: lifting them is what `test_query_strings_are_scrubbed_...` does)."""
    caplog.set_level(logging.DEBUG)
    return caplog


# --- looking for canaries --------------------------------------------------------------------


def record_texts(record: logging.LogRecord) -> Iterator[str]:
    """Every text a handler could take from `record`."""
    yield record.getMessage()
    for name, value in vars(record).items():
        yield f"{name}={value!r}"
    if record.exc_info and record.exc_info[0] is not None:
        yield "".join(traceback.format_exception(*record.exc_info))


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(text for record in caplog.records for text in record_texts(record))


def personal_data(api: Api) -> dict[str, str]:
    """The demo users' names and UPNs (which are their e-mail addresses)."""
    found: dict[str, str] = {}
    for key, user in api.stack.tenant.users.items():
        found[f"{key}: name"] = user.name
        found[f"{key}: upn"] = user.upn
    return found


def token_parts(token: str) -> dict[str, str]:
    """A token and each long enough piece of it: any of them in a log is a leak."""
    parts = {"token": token}
    for number, part in enumerate(token.split(".")):
        if len(part) >= 16:
            parts[f"segment {number}"] = part
    return parts


def assert_nothing_leaked(
    api: Api,
    caplog: pytest.LogCaptureFixture,
    secrets: dict[str, str],
    *responses: requests.Response,
) -> None:
    """None of `secrets` (label: value) nor the demo users' personal data is in any record,
    and none of `secrets` is in any response's body or headers. Failures name labels only."""
    text = logged_text(caplog)
    logged = [label for label, value in {**secrets, **personal_data(api)}.items() if value in text]
    assert not logged, f"in the logs: {logged}"
    for response in responses:
        answer = response.text + json.dumps(dict(response.headers))
        echoed = [label for label, value in secrets.items() if value in answer]
        assert not echoed, f"in the {response.status_code} response: {echoed}"


def fault_hits(control: Callable[..., Any], rule_id: int) -> int:
    (rule,) = [f for f in control("GET", "faults")["faults"] if f["id"] == rule_id]
    return int(rule["hits"])


def request_record(caplog: pytest.LogCaptureFixture, response: requests.Response) -> Any:
    """The API's one record for `response`'s request (found by correlation id)."""
    cid = response.headers["x-correlation-id"]
    records = [
        r
        for r in caplog.records
        if r.name == "central_api" and getattr(r, "correlation_id", None) == cid
    ]
    assert len(records) == 1, [r.getMessage() for r in records]
    return records[0]


# --- L1, L4: valid tokens; who called is in the record, by id --------------------------------


def test_valid_tokens_are_never_logged_and_the_record_says_who_called_by_id(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    user_token, app_token = api.user_token("alice"), api.app_token("dealer-sync")
    as_alice = api.call("GET", LIST, user="alice")
    as_app = api.call("GET", "/api/vehicles?pageSize=2", app="dealer-sync")
    assert as_alice.status_code == 200, as_alice.text
    assert as_app.status_code == 200, as_app.text

    alice, tenant = api.stack.tenant.user("alice"), api.stack.tenant
    record = request_record(caplog, as_alice)
    assert record.levelno == logging.INFO
    assert (record.route, record.method, record.status, record.code) == (
        "customers", "GET", 200, "ok",
    )  # fmt: skip
    assert (record.mode, record.oid, record.tid) == ("user", alice.oid, tenant.id)
    assert record.client_app_id == tenant.app("portal").client_id
    assert record.subscription == "demo-portal"
    assert record.params == "pageSize"
    assert record.downstream_outcome == "ok"
    assert record.dataverse_status == "200"
    assert record.downstream_calls == 1
    assert record.downstream_ms > 0
    assert record.duration_ms >= record.downstream_ms
    assert not hasattr(record, "reason")
    assert f"oid={alice.oid}" in record.getMessage()

    record = request_record(caplog, as_app)
    assert (record.mode, record.tid) == ("application", tenant.id)
    assert record.client_app_id == tenant.app("dealer-sync").client_id
    assert record.downstream_outcome == "ok"

    secrets = {
        **token_parts(user_token),
        **{f"app {k}": v for k, v in token_parts(app_token).items()},
    }
    assert_nothing_leaked(api, caplog, secrets, as_alice, as_app)


def test_personal_claims_in_a_valid_token_are_never_logged(
    api: Api, tokens: TokenBuilder, caplog: pytest.LogCaptureFixture
) -> None:
    claims = {
        "name": f"{canary('name')} Person",
        "given_name": canary("given"),
        "family_name": canary("family"),
        "preferred_username": f"{canary('pun')}@demo.example",
        "upn": f"{canary('upn')}@demo.example",
        "email": f"{canary('mail')}@example.org",
        "unique_name": f"{canary('unique')}@demo.example",
    }
    token = tokens.token(**claims)
    response = api.call("GET", LIST, token=token)
    assert response.status_code == 200, response.text
    assert request_record(caplog, response).oid == api.stack.tenant.user("alice").oid
    assert_nothing_leaked(api, caplog, {**claims, **token_parts(token)}, response)


# --- L1, L6: rejected tokens -----------------------------------------------------------------


def _rejected_tokens(tokens: TokenBuilder, mark: str) -> dict[str, str]:
    now = int(time.time())
    key = tokens.key
    header = f'{{"typ":"JWT","alg":"RS256","kid":"{key.kid}","{mark}":1,"{mark}":2}}'
    duplicate_claims = json.dumps(tokens.claims())[:-1] + f', "{mark}": 1, "{mark}": 2}}'
    return {
        "not a JWT": mark,
        "three segments of junk": f"eyJ{mark}.{mark}.{mark}",
        "expired": tokens.token(iat=now - 7200, nbf=now - 7200, exp=now - 3600, name=mark),
        "unknown kid": tokens.sign(tokens.claims(), {"kid": mark}),
        "kid like a path": tokens.sign(tokens.claims(), {"kid": f"../../{mark}"}),
        "duplicate header member": compact(b64(header), tokens.claims(), b"x" * 256),
        "duplicate claim": tokens.sign(duplicate_claims.encode()),
        "wrong issuer": tokens.wrong_issuer(f"https://{mark}.example.net/v2.0"),
        "wrong audience": tokens.wrong_audience(mark),
        "alg none": tokens.sign({**tokens.claims(), "name": mark}, {"alg": "none"}),
        "another tenant": tokens.token(tid=str(uuid.uuid4()), name=mark),
        "claim not a string": tokens.token(oid={"x": mark}),
    }


def test_rejected_tokens_are_never_logged_nor_echoed(
    api: Api, tokens: TokenBuilder, caplog: pytest.LogCaptureFixture
) -> None:
    mark = canary("tok")
    for label, token in _rejected_tokens(tokens, mark).items():
        caplog.clear()
        response = api.call("GET", LIST, token=token)
        assert_error(response, 401, INVALID_TOKEN)
        record = request_record(caplog, response)
        assert record.code == "invalid_token", label
        assert not hasattr(record, "oid"), label
        assert_nothing_leaked(api, caplog, {"canary": mark, **token_parts(token)}, response)


@pytest.mark.parametrize(
    "header",
    ["Basic {}", "Bearer {} {}", "Bearer\t{}", "{}", "Bearer {}\u00e9"],
    ids=["basic", "two-tokens", "tab", "no-scheme", "non-ascii"],
)
def test_malformed_authorization_headers_are_never_logged(
    api: Api, caplog: pytest.LogCaptureFixture, header: str
) -> None:
    mark = canary("auth")
    value = header.format(mark, mark)
    response = api.call("GET", LIST, token=None, headers={"Authorization": value})
    assert_error(response, 401, INVALID_TOKEN)
    assert_nothing_leaked(api, caplog, {"canary": mark}, response)


# --- L2: subscription keys -------------------------------------------------------------------


def test_subscription_keys_are_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    mark = canary("key")
    real = api.subscription_key
    token = api.user_token("alice")
    wrong_key = api.call("GET", LIST, key=mark, token=token)
    assert_error(wrong_key, 401)
    # SUBSCRIPTION_KEY_IN_QUERY is off: a key in the query string is not a key at all.
    in_query = api.call("GET", f"{LIST}&subscription-key={mark}", key=None, token=token)
    real_in_query = api.call("GET", f"{LIST}&subscription-key={real}", key=None, token=token)
    for response in (in_query, real_in_query):
        assert_error(response, 401)
        assert request_record(caplog, response).code == "subscription_key_missing"
    assert request_record(caplog, wrong_key).code == "subscription_key_invalid"
    both = api.call("GET", f"{LIST}&subscription-key={mark}", user="alice")
    assert both.status_code == 200, both.text
    assert request_record(caplog, both).subscription == "demo-portal"
    assert_nothing_leaked(api, caplog, {"canary": mark}, wrong_key, in_query, real_in_query, both)


# --- L5: search text only as its length ------------------------------------------------------


def test_search_text_is_logged_only_as_its_length(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    mark = canary("q")
    text = f"{mark} O'Brien 50% [a-z]_"
    response = api.call("GET", f"/api/customers?q={quote(text)}&pageSize=5", user="alice")
    assert response.status_code == 200, response.text
    record = request_record(caplog, response)
    assert record.search_length == len(text)
    assert record.params == "pageSize,q"
    assert_nothing_leaked(
        api, caplog, {"canary": mark, "quoted": quote(text), "odata": mark.replace("'", "''")}
    )


def test_query_strings_are_scrubbed_even_with_http_libraries_at_debug(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """urllib3 at DEBUG logs every request line, query string included: the record factory
    `shared.telemetry` installs scrubs it before any handler sees it. The async functions'
    Dataverse client (aiohttp) logs no request lines, at DEBUG neither; the sync path's
    (requests, urllib3) is exercised by a Dataverse request from this process."""
    caplog.set_level(logging.DEBUG, logger="urllib3")
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    mark = canary("q")
    response = api.call("GET", f"/api/customers?q={mark}", user="alice")
    assert response.status_code == 200, response.text
    contacts = f"{api.stack.dataverse_url}/api/data/v9.2/contacts"
    assert api.http.get(contacts, params={"$filter": mark}, timeout=30).status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    dataverse_lines = [line for line in lines if "/api/data/v9.2/contacts" in line]
    assert dataverse_lines, lines
    assert all("?[query]" in line for line in dataverse_lines), dataverse_lines
    assert_nothing_leaked(api, caplog, {"canary": mark})


# --- L4: body values -------------------------------------------------------------------------


def test_body_values_are_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    first, last, job = canary("first"), canary("last"), canary("job")
    email = f"{canary('mail')}@example.org"
    created = api.call(
        "POST", "/api/customers", user="alice",
        json_body={"firstName": first, "lastName": last, "email": email},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    customer = created.json()["id"]
    updated = api.call(
        "PATCH", f"/api/customers/{customer}", user="alice", json_body={"jobTitle": job}
    )
    assert updated.status_code == 200, updated.text
    read = api.call("GET", f"/api/customers/{customer}", user="alice")
    assert read.json()["jobTitle"] == job

    bad_email, bad_name = canary("notmail"), canary("bad") * 10
    rejected = api.call(
        "POST", "/api/customers", user="alice",
        json_body={"lastName": bad_name, "email": f"{bad_email} at example"},
    )  # fmt: skip
    assert_error(rejected, 400)
    assert_nothing_leaked(
        api, caplog, {"first": first, "last": last, "job": job, "email": email,
                      "bad email": bad_email, "bad name": bad_name},
    )  # fmt: skip
    assert_nothing_leaked(api, caplog, {"bad email": bad_email, "bad name": bad_name}, rejected)


# --- L3, L6: Entra's error descriptions on the On-Behalf-Of path -----------------------------


def _entra_error(error: str, code: int, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {uuid.uuid4()}\r\n"
        f"Correlation ID: {uuid.uuid4()}\r\nTimestamp: 2026-01-01 00:00:00Z",
        "error_codes": [code],
        "timestamp": "2026-01-01 00:00:00Z",
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
        **extra,
    }


OBO_FAILURES: dict[str, tuple[Callable[[str], dict[str, Any]], int, str]] = {
    "assertion rejected": (
        lambda m: {"status": 400, "body": _entra_error("invalid_grant", 50013, f"{m} bad sig")},
        401, "assertion_rejected",
    ),
    "consent required": (
        lambda m: {"status": 400, "body": _entra_error(
            "invalid_grant", 65001, f"{m} has not consented", suberror="consent_required")},
        403, "consent_required",
    ),
    "interaction required": (
        lambda m: {"status": 400, "body": _entra_error(
            "interaction_required", 50079, f"{m} must use MFA",
            claims='{"access_token":{"capolids":{"essential":true,"values":["p1"]}}}')},
        401, "claims_challenge",
    ),
    "our credential rejected": (
        lambda m: {"status": 401, "body": _entra_error("invalid_client", 7000215, f"{m} secret")},
        500, "credential_rejected",
    ),
    # Retry-After: 0, or MSAL would answer every On-Behalf-Of request of the next 5 s itself.
    "token service failing": (
        lambda m: {"status": 500, "retry_after": 0,
                   "body": _entra_error("server_error", 90033, f"{m} is down")},
        503, "token_service_unavailable",
    ),
    "not JSON": (
        lambda m: {"status": 200, "body": f"<html>{m} proxy error page</html>"},
        503, "token_service_unavailable",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", OBO_FAILURES)
def test_entra_error_descriptions_are_never_logged_nor_echoed(
    faults: Api, tokens: TokenBuilder, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    rule, status, code = OBO_FAILURES[case]
    mark = canary("entra")
    token = tokens.token()  # never exchanged before: the API must ask Entra
    added = faults.entra_control(
        "POST", "faults", json={"path": TOKEN_PATH, "method": "POST", "count": 1, **rule(mark)}
    )
    response = faults.call("GET", LIST, token=token)
    assert_error(response, status)
    assert fault_hits(faults.entra_control, added["id"]) == 1  # Entra did send the canary
    record = request_record(caplog, response)
    assert (record.code, record.downstream_outcome) == (code, code)
    assert not hasattr(record, "dataverse_status")
    assert_nothing_leaked(faults, caplog, {"canary": mark, **token_parts(token)}, response)


# --- L6: Dataverse's error messages ----------------------------------------------------------

DATAVERSE_FAILURES = {400: 400, 403: 403, 404: 404, 412: 412, 500: 502, 503: 502, 429: 503}


@pytest.mark.parametrize("upstream", DATAVERSE_FAILURES)
def test_dataverse_error_messages_are_never_logged_nor_echoed(
    faults: Api, caplog: pytest.LogCaptureFixture, upstream: int
) -> None:
    mark = canary("dv")
    body = {
        "error": {
            "code": "0x80040220",
            "message": f"Principal user (Id={mark}, type=8, name={mark}@demo.example) is missing "
            f"prvReadContact privilege",
        }
    }
    rule: dict[str, Any] = {"path": CONTACTS_PATH, "status": upstream, "body": body, "count": 1}
    if upstream == 429:
        rule["retry_after"] = 3600  # beyond the request budget: no retry, a 503 at once
    added = faults.dataverse_control("POST", "faults", json=rule)
    response = faults.call("GET", LIST, user="alice")
    assert_error(response, DATAVERSE_FAILURES[upstream])
    assert fault_hits(faults.dataverse_control, added["id"]) == 1
    record = request_record(caplog, response)
    assert record.dataverse_status == str(upstream)
    assert record.dataverse_error == "0x80040220"
    assert record.downstream_outcome == record.code
    assert_nothing_leaked(faults, caplog, {"canary": mark}, response)


def test_a_dataverse_retry_shows_every_status_in_order(
    faults: Api, caplog: pytest.LogCaptureFixture
) -> None:
    faults.dataverse_control(
        "POST", "faults",
        json={"path": CONTACTS_PATH, "status": 429, "retry_after": 0, "count": 1,
              "body": {"error": {"code": "0x80072322", "message": "Number of requests exceeded"}}},
    )  # fmt: skip
    response = faults.call("GET", LIST, user="alice")
    assert response.status_code == 200, response.text
    record = request_record(caplog, response)
    assert record.dataverse_status == "429,200"
    assert record.downstream_calls == 2
    assert record.downstream_outcome == "ok"


# --- unexpected exceptions, and the scrubbing itself -----------------------------------------


def test_an_unexpected_exception_is_logged_with_its_frames_but_not_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner, outer = canary("inner"), canary("outer")
    facts: dict[str, Any] = {"route": "customers", "method": "GET", "code": "internal_error"}
    try:
        try:
            {}[inner]  # a KeyError quoting a value, as a real bug would
        except KeyError as exc:
            raise ValueError(f"invalid literal: {outer!r}") from exc
    except ValueError as exc:
        telemetry.log_request(
            facts, status=500, level=logging.ERROR, started=time.perf_counter(), call=None,
            error=exc, unexpected=True,
        )  # fmt: skip
    (record,) = [r for r in caplog.records if r.name == "central_api"]
    assert record.reason == "ValueError"
    text = logging.Formatter().format(record) + "".join(
        traceback.format_exception(*record.exc_info)
    )
    assert "ValueError" in text
    assert "KeyError" in text
    assert "test_an_unexpected_exception_is_logged" in text  # the frames are there
    assert inner not in logged_text(caplog)
    assert outer not in logged_text(caplog)


def test_reasons_that_quote_anything_are_replaced_by_the_type_name() -> None:
    from shared.auth.errors import InvalidToken

    assert telemetry.reason(InvalidToken("token expired")) == "token expired"
    assert telemetry.reason(InvalidToken("duplicate JSON member 'x'")) == "InvalidToken"
    assert telemetry.reason(InvalidToken("x" * 200)) == "InvalidToken"
    assert telemetry.reason(KeyError("alice@demo.example")) == "KeyError"


def test_the_redactor_scrubs_tokens_query_strings_addresses_and_known_secrets(
    tokens: TokenBuilder,
) -> None:
    redactor = telemetry.Redactor()
    secret = canary("secret")
    redactor.remember([secret, "short"])
    token = tokens.token()
    text = (
        f"sent {token} as 'Bearer {token}' and Basic dXNlcjpwYXNz to "
        f"https://org.example/api/data/v9.2/contacts?$filter=contains(fullname,'Ada') "
        f"(GET /x?subscription-key={secret}), from ada.lovelace@example.org, key {secret}, "
        f'{{"access_token": "opaque-value", "refresh_token":"r1"}} client_secret=abc&x=1 short'
    )
    scrubbed = redactor.scrub(text)
    for leaked in (token, "dXNlcjpwYXNz", "Ada'", "ada.lovelace", secret, "opaque-value", "r1",
                   "abc&"):  # fmt: skip
        assert leaked not in scrubbed, leaked
    assert "https://org.example/api/data/v9.2/contacts?[query]" in scrubbed
    assert "short" in scrubbed  # too short to remember: it would match by chance
    assert redactor.scrub("plain words, no secrets?") == "plain words, no secrets?"


def test_library_loggers_are_held_back() -> None:
    for name, level in telemetry.LIBRARY_LEVELS.items():
        assert logging.getLogger(name).level >= level, name


# --- OpenTelemetry / Application Insights ----------------------------------------------------

_SERVE = r"""
import json, logging, os, sys

attempts = []
LOCAL = ("localhost", "127.0.0.1", "::1")

def refuse_the_internet(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple):
        host = str(args[1][0])
    elif event == "socket.getaddrinfo":
        host = str(args[0])
    else:
        return
    if host not in LOCAL and not host.startswith("127."):
        attempts.append(host)
        raise OSError(f"refused by the test: {host}")

sys.addaudithook(refuse_the_internet)
logging.getLogger("central_api").setLevel(logging.INFO)

calls = []
if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
    import azure.monitor.opentelemetry as distro
    real = distro.configure_azure_monitor
    def counting(**kwargs):
        calls.append(sorted(kwargs))
        return real(**kwargs)
    distro.configure_azure_monitor = counting

import azure.functions as func
from devstack.host import FunctionsRouter
from shared import runtime

router = FunctionsRouter.load("function_app")
headers = {
    "Ocp-Apim-Subscription-Key": os.environ["DEVSTACK_SUBSCRIPTION_KEY"],
    "Authorization": "Bearer " + os.environ["LOGTEST_BEARER"],
}

def get(path):
    request = func.HttpRequest("GET", "http://localhost" + path, headers=headers, body=b"")
    return router.dispatch(request)

statuses = [get("/api/customers?pageSize=1").status_code]
runtime.reset()  # settings read again, services built again: telemetry must not be set up twice
statuses.append(get("/api/customers?pageSize=1").status_code)
result = {"statuses": statuses, "configure_calls": calls}
sdk = False
if calls:
    from opentelemetry import trace
    sdk = hasattr(trace.get_tracer_provider(), "add_span_processor")

if sdk:
    from opentelemetry import _logs, trace
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans, logs = InMemorySpanExporter(), InMemoryLogExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(spans))
    _logs.get_logger_provider().add_log_record_processor(SimpleLogRecordProcessor(logs))
    response = get("/api/customers?q=" + os.environ["LOGTEST_CANARY"])
    result["search_status"] = response.status_code
    result["correlation_id"] = response.headers["x-correlation-id"]
    result["handlers"] = sum(
        isinstance(h, LoggingHandler) for h in logging.getLogger("central_api").handlers
    )
    result["spans"] = [
        {"kind": s.kind.name, "attributes": {k: str(v) for k, v in s.attributes.items()}}
        for s in spans.get_finished_spans()
    ]
    result["logs"] = [
        {"body": str(r.log_record.body),
         "attributes": {k: str(v) for k, v in (r.log_record.attributes or {}).items()}}
        for r in logs.get_finished_logs()
    ]

result["modules"] = sorted(
    m for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor"))
)
result["internet"] = attempts
print(json.dumps(result))
"""

# What the distro does whatever the connection string says, switched off: statistics about
# itself and remote configuration (Microsoft's endpoints), and cloud resource detection (the
# Azure VM detector asks the instance metadata service). The audit hook would refuse them.
_OFFLINE = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
}
_DUMMY = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
    "IngestionEndpoint=https://127.0.0.1:9/;LiveEndpoint=https://127.0.0.1:9/"
)


def _serve_in_subprocess(api: Api, tmp_path: Any, **env: str) -> dict[str, Any]:
    environ = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_", "PYTHON_APPLICATIONINSIGHTS"))
    }  # fmt: skip
    environ.update(api.stack.settings)
    environ.update(
        LOGTEST_BEARER=api.user_token("alice"),
        TMPDIR=str(tmp_path),  # where the exporter keeps what it could not send
        PYTHONPATH=str(ROOT),
        **_OFFLINE,
        **env,
    )
    done = subprocess.run(
        [sys.executable, "-c", _SERVE],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def test_without_a_connection_string_nothing_of_opentelemetry_is_imported(
    api: Api, tmp_path: Any
) -> None:
    result = _serve_in_subprocess(api, tmp_path)
    assert result["statuses"] == [200, 200]
    assert result["modules"] == []
    assert result["internet"] == []


def test_a_connection_string_azure_monitor_refuses_leaves_the_api_working(
    api: Api, tmp_path: Any
) -> None:
    result = _serve_in_subprocess(
        api, tmp_path, APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=not-a-guid"
    )
    assert result["statuses"] == [200, 200]
    assert len(result["configure_calls"]) == 1
    assert "Application Insights is not set up" in result["stderr"]
    assert "not-a-guid" not in result["stderr"]
    assert result["internet"] == []


def test_with_a_connection_string_azure_monitor_is_configured_once(api: Api, tmp_path: Any) -> None:
    mark = canary("otel")
    result = _serve_in_subprocess(
        api,
        tmp_path,
        APPLICATIONINSIGHTS_CONNECTION_STRING=_DUMMY,
        LOGTEST_CANARY=mark,
        OTEL_TRACES_SAMPLER="always_on",  # keep every span, for the test to look at
    )
    assert result["statuses"] == [200, 200]
    assert result["search_status"] == 200
    assert len(result["configure_calls"]) == 1
    assert "logger_name" in result["configure_calls"][0]
    assert result["handlers"] == 1
    assert result["internet"] == []

    outgoing = [s for s in result["spans"] if s["kind"] == "CLIENT"]
    urls = [v for s in outgoing for k, v in s["attributes"].items() if "url" in k]
    assert any("/api/data/v9.2/contacts" in url for url in urls), outgoing
    assert not any("?" in url for url in urls), urls
    assert mark not in json.dumps(result["spans"])

    (record,) = [
        r
        for r in result["logs"]
        if r["attributes"].get("correlation_id") == result["correlation_id"]
    ]
    dimensions = record["attributes"]
    assert dimensions["route"] == "customers"
    assert dimensions["status"] == "200"
    assert dimensions["mode"] == "user"
    assert dimensions["oid"] == api.stack.tenant.user("alice").oid
    assert dimensions["tid"] == api.stack.tenant.id
    assert dimensions["subscription"] == "demo-portal"
    assert dimensions["search_length"] == str(len(mark))
    assert dimensions["downstream_outcome"] == "ok"
    assert dimensions["dataverse_status"] == "200"
    assert mark not in json.dumps(result["logs"])
