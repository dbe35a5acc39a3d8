"""Logs and telemetry: the one record each request leaves, and what may never be in any record.

The request record (`log_request`) goes to the `central_api` logger: a one-line message for
people reading a log stream, and the same facts as attributes (`extra`), which Application
Insights stores as custom dimensions: route, method, status, code, reason, mode, oid, tid,
client_app_id, subscription, correlation_id, duration_ms, params (names only) and
search_length (never the text); when the request went downstream, token_ms, downstream_ms
(Dataverse), downstream_calls, downstream_outcome ("ok" or the failure's code),
dataverse_status (every status Dataverse answered, in order: "429,200"), entra_error (the
AADSTS number) and dataverse_error (the 0x... code).

`configure(settings)` runs on every `shared.runtime.build`; the process-wide part happens once:

- libraries that log URLs, bodies or token-cache events are held to WARNING and above (msal to
  CRITICAL: it logs raw token-endpoint answers at ERROR; MSAL's failures reach us as error
  dicts that `shared.downstream` translates anyway);
- a log-record factory scrubs every record made in the process, whoever makes it, before any
  handler sees it: bearer tokens and anything JWT-shaped, URL query strings, e-mail addresses,
  secret-named fields and the configured secret values (subscription keys, client secret,
  API data keys);
- only when APPLICATIONINSIGHTS_CONNECTION_STRING is set, azure-monitor-opentelemetry is
  imported and configured: traces and metrics, and the `central_api` records as logs. Outgoing
  HTTP spans keep scheme, host and path but never a query string (Dataverse queries carry search
  text). The async functions' Dataverse client (aiohttp) has no instrumentation in the
  distribution, so it opens its CLIENT spans itself (`client_span`), in the same conventions.
  With the variable unset nothing of OpenTelemetry is imported.

Unexpected exceptions are logged through `loggable`: type names and stack frames, never their
messages (built-in exceptions quote the values they choke on: names, e-mail addresses).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from shared.dataverse.errors import DataverseError
from shared.downstream.errors import DownstreamTokenError

if TYPE_CHECKING:
    from shared.dataverse.call import Call
    from shared.settings import Settings

log = logging.getLogger("central_api")
T = TypeVar("T")
P = ParamSpec("P")

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
SEARCH_PARAM = "q"
# Most verbose level each library may log at in this process.
LIBRARY_LEVELS: Mapping[str, int] = {
    "msal": logging.CRITICAL,
    "urllib3": logging.WARNING,
    "requests": logging.WARNING,
    "httpx": logging.WARNING,  # the async Dataverse client: a line per request at INFO
    "httpcore": logging.WARNING,
    "azure.core.pipeline.policies.http_logging_policy": logging.WARNING,
}
# Facts in the order the one-line message shows them.
_SUMMARY = ("method", "route", "status", "code", "duration_ms", "token_ms", "downstream_ms",
            "downstream_outcome", "mode", "oid", "tid", "client_app_id", "subscription",
            "reason", "correlation_id")  # fmt: skip
# A reason is our own short text about what was wrong; one that looks like it quotes anything
# (quotes, odd characters, length) is replaced by the exception's type name.
_SAFE_REASON = re.compile(r"[A-Za-z0-9 ,.:;()/_-]{1,120}")  # fullmatch: not even a final "\n"
_DATAVERSE_ERROR = re.compile(r"0x[0-9a-fA-F]{8}")


# --- the request record ----------------------------------------------------------------------


def describe_query(facts: dict[str, Any], params: Mapping[str, str]) -> None:
    """Which parameters a request gave, by name, and how long its search text was."""
    if params:
        facts["params"] = ",".join(sorted(params))
    if SEARCH_PARAM in params:
        facts["search_length"] = len(params[SEARCH_PARAM])


def log_request(
    facts: dict[str, Any],
    *,
    status: int,
    level: int,
    started: float,
    call: Call | None,
    error: Exception | None = None,
    unexpected: bool = False,
) -> None:
    """Complete `facts` and write the request's one record (with `error`'s stack frames when
    it was `unexpected`)."""
    facts["status"] = status
    facts["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    if error is not None:
        facts["reason"] = reason(error)
        _downstream_error_facts(facts, error)
    failed_downstream = isinstance(error, DownstreamTokenError | DataverseError)
    went_downstream = call is not None and (call.downstream_calls > 0 or "token_ms" in facts)
    if error is not None and failed_downstream:
        facts["downstream_outcome"] = error_code(error)
    elif went_downstream:
        facts["downstream_outcome"] = "ok"
    if call is not None and (went_downstream or failed_downstream):
        facts["downstream_ms"] = round(call.downstream_ms, 2)
        facts["downstream_calls"] = call.downstream_calls
    if call is not None and call.outcomes:
        facts["dataverse_status"] = ",".join(str(s) for s in call.outcomes)
    exc_info = loggable(error) if unexpected and error is not None else None
    log.log(level, _summary(facts), extra=facts, exc_info=exc_info)


def timed(get: Callable[P, T], facts: dict[str, Any], key: str) -> Callable[P, T]:
    """`get`, adding the milliseconds each call takes to `facts[key]` (the token exchange's
    share of a request, which the Dataverse client does not count)."""

    def timed_get(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return get(*args, **kwargs)
        finally:
            spent = (time.perf_counter() - started) * 1000
            facts[key] = round(facts.get(key, 0.0) + spent, 2)

    return timed_get


def timed_async(
    get: Callable[P, Awaitable[T]], facts: dict[str, Any], key: str
) -> Callable[P, Awaitable[T]]:
    """`timed` for a coroutine function."""

    async def timed_get(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return await get(*args, **kwargs)
        finally:
            spent = (time.perf_counter() - started) * 1000
            facts[key] = round(facts.get(key, 0.0) + spent, 2)

    return timed_get


def error_code(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else type(exc).__name__


def reason(exc: BaseException) -> str:
    """What was wrong, for the logs: the exception's own `reason` when it is plain text of ours,
    otherwise its type name. Never a message from a library, Entra or Dataverse."""
    text = getattr(exc, "reason", None)
    if isinstance(text, str) and _SAFE_REASON.fullmatch(text):
        return text
    return type(exc).__name__


def _downstream_error_facts(facts: dict[str, Any], exc: BaseException) -> None:
    entra = getattr(exc, "entra_code", None)
    if isinstance(entra, int) and not isinstance(entra, bool):
        facts["entra_error"] = entra
    dataverse = getattr(exc, "error_code", None)
    if isinstance(dataverse, str) and _DATAVERSE_ERROR.fullmatch(dataverse):
        facts["dataverse_error"] = dataverse


def _summary(facts: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={facts[k]}" for k in _SUMMARY if facts.get(k) is not None)


# --- exceptions, without their messages ------------------------------------------------------

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
_stand_in_classes: dict[type[BaseException], type[Exception]] = {}
_MAX_CHAIN = 5


def loggable(exc: BaseException) -> ExcInfo:
    """`exc` as a log may carry it: an exception of the same name and module with the same
    stack frames, chained the same way, but with no message and no attributes."""
    copy = _stand_in(exc, 0)
    return type(copy), copy, copy.__traceback__


def _stand_in(exc: BaseException, depth: int) -> BaseException:
    cls = type(exc)
    stand_in_cls = _stand_in_classes.get(cls)
    if stand_in_cls is None:
        namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        made = type(cls.__name__, (Exception,), namespace)
        stand_in_cls = _stand_in_classes.setdefault(cls, made)
    copy = stand_in_cls().with_traceback(exc.__traceback__)
    if depth < _MAX_CHAIN:
        if exc.__cause__ is not None:
            copy.__cause__ = _stand_in(exc.__cause__, depth + 1)
        if exc.__context__ is not None and not exc.__suppress_context__:
            copy.__context__ = _stand_in(exc.__context__, depth + 1)
    copy.__suppress_context__ = exc.__suppress_context__
    return copy


# --- scrubbing every record in the process ---------------------------------------------------
#
# Every record in the process passes through these, so each must run in time linear in the
# text, whatever the text (a log line can hold a client's input). Python's `re` backtracks and
# retries a failed match at every later position: a pattern that scans a long run and then
# fails, once per position in the run, is quadratic (`eyJeyJeyJ...` or a long word without `@`
# took seconds on 100 KB). So each pattern below either fails within a character or two, or
# starts only where a run starts (a lookbehind), or consumes the run it scanned; quantifiers are
# possessive (`*+`, `++`) so that nothing is scanned twice. tests/security/test_review_smaller.py
# times every pattern on 10 KB and 100 KB of the worst input found for it.

Replacement = str | Callable[[re.Match[str]], str]

# JWT/JWS/JWE compact forms all start with a base64url JSON object: `eyJ`, at least 4 more
# characters, then 1-4 `.segment`s. The second branch takes the rest of a segment that is not
# a token, so the search resumes after it instead of retrying at every later `eyJ` in it (a
# later `eyJ` in the same segment has fewer characters after it and the same next character).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}+(?:\.[A-Za-z0-9_-]*+){1,4}+|eyJ[A-Za-z0-9_-]*+")
# An e-mail address's local part starts where its run starts (the lookbehind), so an address
# that fails at its `@` is not tried again from every later character of the run.
_LOCAL = "A-Za-z0-9._%+-"
_EMAIL = re.compile(rf"(?<![{_LOCAL}])[{_LOCAL}]++@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)+")


# Names whose values are credentials (`ocp-apim-subscription-key` holds `subscription-key`).
_CREDENTIAL_NAMES = (
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "assertion",
    "password",
    "subscription-key",
    "authorization",
)


def _jwt(match: re.Match[str]) -> str:
    text = match.group()
    return "[jwt]" if "." in text else text


# Each pattern with the words it cannot match without (any one of them), so that `scrub`, run on
# every log record, tries a regex only where it could match: most records (one per request) hold
# none of these words, and substring tests are far cheaper than regex scans. For the `(?i)`
# patterns the words are lower case and the test is made on ASCII text only: there `(?i)` means
# ASCII case, while in other text it also matches other characters (U+017F for "s"), so
# non-ASCII text is always scanned.
_PATTERNS: tuple[tuple[tuple[str, ...], bool, re.Pattern[str], Replacement], ...] = (
    (("eyJ",), False, _JWT, _jwt),
    (
        ("bearer", "basic"),
        True,
        re.compile(r"(?i)\b(bearer|basic)\s++[A-Za-z0-9\-._~+/]++=*+"),
        r"\1 [redacted]",
    ),
    # Everything from a `?` that starts a query string to the next whitespace.
    (("?",), False, re.compile(r"\?[^\s?=]*+=\S*+"), "?[query]"),
    (("@",), False, _EMAIL, "[email]"),
    # `name=value`, `"name": "value"` for names that hold credentials.
    (
        _CREDENTIAL_NAMES,
        True,
        re.compile(
            rf"(?i)\b(ocp-apim-subscription-key|{'|'.join(_CREDENTIAL_NAMES)})"
            r"(['\"]?+\s*+[:=]\s*+['\"]?+)[^\s'\"&,}]++"
        ),
        r"\1\2[redacted]",
    ),
)


def _may_match(text: str, words: tuple[str, ...], ignore_case: bool) -> bool:
    if not ignore_case:
        return any(word in text for word in words)
    if not text.isascii():
        return True
    lowered = text.lower()
    return any(word in lowered for word in words)


class Redactor:
    """Scrubs text of tokens, query strings, e-mail addresses and known secret values."""

    def __init__(self) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def remember(self, secrets: Iterable[str]) -> None:
        """Secret values to replace wherever they appear (short ones would match by chance)."""
        with self._lock:
            self._secrets = self._secrets | {s for s in secrets if len(s) >= 8}

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[secret]")
        for words, ignore_case, pattern, replacement in _PATTERNS:
            if _may_match(text, words, ignore_case):
                text = pattern.sub(replacement, text)
        return text

    def clean(self, record: logging.LogRecord) -> None:
        """Scrub a record in place: its message (args folded in only when something changed)
        and the text of its exception."""
        try:
            message = record.getMessage()
        except Exception:  # a broken record: the logging module reports it when it formats
            return
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.scrub(formatted)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)


redactor = Redactor()


def _install_record_factory(redactor: Redactor) -> None:
    previous = logging.getLogRecordFactory()

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redactor.clean(record)
        return record

    logging.setLogRecordFactory(make_record)


# --- configuration ---------------------------------------------------------------------------

_lock = threading.Lock()
_configured = False
_tracing = False  # Azure Monitor is set up: `client_span` makes spans


def configure(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Remember `settings`' secrets; the first time in this process, also cap library log
    levels, install the scrubbing record factory and, when a connection string is set, set up
    Azure Monitor."""
    global _configured
    keys = [key for pair in settings.subscription_keys.values() for key in pair]
    data_keys = (settings.data_key, settings.data_key_previous or b"")
    keys += [base64.b64encode(key).decode("ascii") for key in data_keys if key]
    redactor.remember([*keys, settings.api_client_secret or ""])
    with _lock:
        if _configured:
            return
        _configured = True
        for name, level in LIBRARY_LEVELS.items():
            library = logging.getLogger(name)
            if library.level < level:
                library.setLevel(level)
        _install_record_factory(redactor)
        env = os.environ if environ is None else environ
        connection_string = env.get(CONNECTION_STRING, "").strip()
        if not connection_string:
            return
        try:
            _configure_azure_monitor(connection_string)
        except Exception as exc:  # telemetry never takes the API down with it
            log.error(
                "Application Insights is not set up: %s refused (%s)",
                CONNECTION_STRING,
                type(exc).__name__,
            )


def _configure_azure_monitor(connection_string: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        # Otherwise something else (the Functions worker's own integration) already set the
        # process up; only the URL redaction below is added to it.
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(connection_string=connection_string, logger_name=log.name)
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(_query_redaction())
    global _tracing
    _tracing = True


@contextmanager
def client_span(method: str, url: str) -> Iterator[Callable[[int], None]]:
    """An outgoing HTTP call as a CLIENT span, as the requests instrumentation makes them (the
    query string is dropped as the span starts); yields a function taking the answer's status.
    Nothing at all while Azure Monitor is not set up."""
    if not _tracing:
        yield _no_status
        return
    from opentelemetry import trace

    parts = urlsplit(url)
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "url.full": url,
        "server.address": parts.hostname or "",
        "server.port": parts.port or (443 if parts.scheme == "https" else 80),
    }
    tracer = trace.get_tracer("central_api")
    with tracer.start_as_current_span(
        method, kind=trace.SpanKind.CLIENT, attributes=attributes
    ) as span:
        yield lambda status: span.set_attribute("http.response.status_code", status)


def _no_status(status: int) -> None:
    return None


# Span attributes that hold a URL or its query, across the old and new HTTP conventions.
_URL_ATTRIBUTES = ("http.url", "url.full", "http.target")
_QUERY_ATTRIBUTES = ("url.query",)


def _query_redaction() -> Any:
    """A span processor that drops the query string from the URL attributes of every span as
    it starts (instrumentations set them at creation; spans are exported when they end)."""
    from opentelemetry.sdk.trace import Span, SpanProcessor

    class DropQueryStrings(SpanProcessor):
        def on_start(self, span: Span, parent_context: Any = None) -> None:
            attributes = span.attributes or {}
            for name in _URL_ATTRIBUTES:
                value = attributes.get(name)
                if isinstance(value, str) and "?" in value:
                    span.set_attribute(name, value.split("?", 1)[0])
            for name in _QUERY_ATTRIBUTES:
                if name in attributes:
                    span.set_attribute(name, "")

    return DropQueryStrings()
