"""The Dataverse Web API client: one pooled `requests.Session` per process for sync functions,
one pooled `aiohttp.ClientSession` for async ones (per event loop: the worker has one), each
shared by every call.

What a request does (the token, the retries below, the mapping of answers) is written once, as a
generator of I/O steps (`_steps`: get a token, send, sleep); `request` performs those steps on
the calling thread, `request_async` on the event loop. `run`/`run_async` do the same for a
handler's whole conversation with Dataverse (`shared.dataverse.call.Steps`). While the
start-up warm-up imports aiohttp (`prepare`), `request_async` sends through the sync session on
a worker thread instead of waiting for that import (a fresh instance's first requests).

Each call carries a `Call`: how to get the bearer token for *this* caller (asked for only when
the request is about to go out, so bad input never costs a token exchange), the correlation id
that travels to Dataverse, and the deadline of the client's request.

- A service-protection 429 is waited out only while the request's waits for `Retry-After`, all
  added up, stay within `max_retry_wait` (DATAVERSE_MAX_RETRY_WAIT_SECONDS, 0: never wait) and
  the deadline. Otherwise the 429 is raised at once, with its `Retry-After`, without sleeping
  first: a worker thread asleep for a throttled caller is a thread no other caller can use.
- A 401 means Dataverse refused the token itself (revoked, or signed with a key Entra has
  rolled over). The token is handed back to `call.token(stale=...)`, which drops it from its
  cache and gets a new one, and the request is sent once more; a second 401 is raised.
- Dataverse's answers are mapped to `shared.dataverse.errors` here and nowhere else: by status,
  and for 403 also by error code (record-level access check or not, see that module).

The sessions keep no cookies: Dataverse sets affinity cookies, and a session shared by every
user must carry nothing from one caller's answer into another caller's request. They read the
environment once, when the client is built (`_session_for`): a proxy for Dataverse's host
(HTTPS_PROXY, NO_PROXY), used by both clients, and the CA bundle; requests would otherwise
read it again on every request. With a CA bundle of its own (REQUESTS_CA_BUNDLE or
CURL_CA_BUNDLE, as requests and so MSAL read it) both clients trust it; without one, the sync
client trusts requests' default CAs (certifi's) and the async one the system's. Each client
loads its CAs once, into one TLS context for all its connections (`_tls_context`,
`_sync_tls_context`; urllib3 would load the file again for every new connection).

aiohttp rather than httpx for the async client: measured on this code's own request (a TLS GET
to the Dataverse emulator, 16 at a time), aiohttp spends about 0.17 ms of CPU per request,
requests 1.2 to 1.7 ms and httpx 2.5 ms; an instance's throughput is bounded by its CPU per
request (bench/README.md, P10). Its session keeps every connection it opened for reuse (one per
request in flight at most, so at most the instance's HTTP concurrency); DATAVERSE_POOL_SIZE
bounds the sync pool only. `close()` closes it on its loop: aiohttp warns about a session left
to the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http.cookiejar
import json
import os
import re
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import requests
from requests.adapters import HTTPAdapter

from shared import telemetry
from shared.dataverse.call import Answer, Call, Cursor, DataverseRequest, Steps
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

if TYPE_CHECKING:
    import aiohttp
    from requests.adapters import _HostParams, _PoolKwargs  # the stubs' names for them

T = TypeVar("T")

API_PATH = "/api/data/v9.2/"
CLOSE_TIMEOUT = 5.0  # seconds to wait for the async client to close on its loop
MAX_ATTEMPTS = 3  # sends of one request that Dataverse may answer 429
# The access check failed for one record: "Principal with ID ... does not have ReadAccess
# right(s) for record with ID ..." (-2147187962; learn.microsoft.com, "Troubleshoot Dataverse
# client errors"). A missing privilege is 0x80040220, not a member 0x80072560: both stay 403.
RECORD_ACCESS_DENIED = "0x80048306"
_ERROR_CODE = re.compile(r"0x[0-9a-fA-F]{8}")  # fullmatch
ODATA_HEADERS = {  # on every request, with the bearer and the correlation id
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
}


__all__ = ["Answer", "DataverseClient"]


@dataclass(frozen=True)
class _Token:
    stale: str | None


@dataclass(frozen=True)
class _Send:
    method: str
    url: str
    headers: dict[str, str]
    data: bytes | None


@dataclass(frozen=True)
class _Sleep:
    seconds: float


_Step = _Token | _Send | _Sleep


class _Reply(Protocol):
    """What the answer mapping reads of a response: a requests one, or `_AsyncReply`."""

    status_code: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    def json(self, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class _AsyncReply:
    """An aiohttp answer, read in full, in the shape of a requests response."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self, **kwargs: Any) -> Any:
        return json.loads(self.content, **kwargs)


class DataverseClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        pool_size: int = 32,
        max_retry_wait: float = 2.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base = base_url.rstrip("/") + API_PATH
        self._timeout = timeout
        self._max_retry_wait = max_retry_wait
        self._clock = clock
        self._sleep = sleep
        self._session = session or _session_for(self.base)
        self._session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        # The same proxy for the async client (aiohttp reads no environment of its own here).
        self._proxy: str | None = requests.utils.select_proxy(self.base, self._session.proxies)
        self._adapter = _OneContextAdapter(
            self._sync_tls_context, pool_connections=2, pool_maxsize=pool_size, max_retries=0
        )
        self._session.mount("https://", self._adapter)
        self._session.mount("http://", self._adapter)
        self._pool_size = pool_size
        # One async session per event loop (the worker has one; its connections belong to it).
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, aiohttp.ClientSession
        ] = weakref.WeakKeyDictionary()
        self._async_lock = threading.Lock()
        self._async_opened = 0
        self._tls: ssl.SSLContext | None = None
        self._sync_tls: ssl.SSLContext | None = None
        # `prepare` coming (`defer`) or under way: async requests go through the sync pool.
        self._preparing = threading.Event()

    def defer(self) -> None:
        """Say that `prepare` is coming (the warm-up, which runs it when no request is being
        served): until it has run, async requests send through the sync pool rather than
        import aiohttp on the event loop. The sync pool's TLS context is built now."""
        self._preparing.set()
        self._sync_tls_context()

    def prepare(self) -> None:
        """Import aiohttp and build the TLS context every async session uses (the start-up
        warm-up, `shared/warmup.py`, last): together well over 100 ms of CPU (aiohttp's
        import loads the system's CA store), which a fresh instance's first request spent in
        series after its On-Behalf-Of exchange and before its Dataverse call. While it runs,
        an async request does not wait for it: it sends through the sync pool on a worker
        thread (`request_async`), so the first request never waits for this import. The
        connection itself is not opened early: it belongs to the worker's event loop, and
        opening one through aiohttp takes a request."""
        self._preparing.set()
        try:
            import aiohttp  # noqa: F401 - imported now, used by the next async request

            self._tls_context()
        finally:
            self._preparing.clear()

    def _tls_context(self) -> ssl.SSLContext:
        """One TLS context for every loop's session: loading the CA bundle is the slow part,
        and an `SSLContext` is bound to no loop. The bundle is the sync session's
        (`_session_for`: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE), else the system's CAs."""
        with self._async_lock:
            if self._tls is None:
                verify = self._session.verify
                bundle = verify if isinstance(verify, str) else None
                self._tls = ssl.create_default_context(cafile=bundle)
            return self._tls

    def _sync_tls_context(self) -> ssl.SSLContext:
        """The sync pool's one TLS context (`_OneContextAdapter`), with the session's CA bundle,
        else requests' own (certifi's). Its own, not the async one: urllib3 sets options on
        the context it is given."""
        with self._async_lock:
            if self._sync_tls is None:
                verify = self._session.verify
                bundle = (
                    verify if isinstance(verify, str) else requests.utils.DEFAULT_CA_BUNDLE_PATH
                )
                self._sync_tls = ssl.create_default_context(cafile=bundle)
            return self._sync_tls

    def connections_opened(self) -> int:
        """How many connections the pools have opened so far, sync and async (for benchmarks
        and tests)."""
        pools = self._adapter.poolmanager.pools
        opened: int = sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118
        return opened + self._async_opened

    def request(
        self,
        method: str,
        path: str,
        call: Call,
        *,
        query: str = "",
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One Web API request on this thread (token, retries, the answer or its error)."""
        steps = Cursor(self._steps(DataverseRequest(method, path, query, body, headers), call))
        while (step := steps.next()) is not None:
            if isinstance(step, _Token):
                steps.send(call.token(step.stale))
            elif isinstance(step, _Send):
                steps.send(self._send(step, call))
            else:
                self._sleep(step.seconds)
        return steps.result()

    async def request_async(self, wanted: DataverseRequest, call: Call) -> Answer:
        """`request` on the event loop: the token from `call.token_async` (a cached one at
        once), the HTTP exchange on the async client, Retry-After waited out asleep."""
        steps = Cursor(self._steps(wanted, call))
        while (step := steps.next()) is not None:
            if isinstance(step, _Token):
                if call.token_async is not None:
                    steps.send(await call.token_async(step.stale))
                else:
                    steps.send(await asyncio.to_thread(call.token, step.stale))
            elif isinstance(step, _Send):
                if self._preparing.is_set():  # the warm-up is importing aiohttp right now
                    steps.send(await asyncio.to_thread(self._send, step, call))
                else:
                    steps.send(await self._send_async(step, call))
            else:
                await asyncio.sleep(step.seconds)
        return steps.result()

    def run(self, steps: Steps[T], call: Call) -> T:
        """Serve a handler's requests in turn on this thread; its return value."""
        handler = Cursor(steps)
        while (wanted := handler.next()) is not None:
            try:
                handler.send(self._request(wanted, call))
            except DataverseError as exc:
                handler.throw(exc)
        return handler.result()

    async def run_async(self, steps: Steps[T], call: Call) -> T:
        """`run` on the event loop."""
        handler = Cursor(steps)
        while (wanted := handler.next()) is not None:
            try:
                handler.send(await self.request_async(wanted, call))
            except DataverseError as exc:
                handler.throw(exc)
        return handler.result()

    def _request(self, wanted: DataverseRequest, call: Call) -> Answer:
        return self.request(
            wanted.method,
            wanted.path,
            call,
            query=wanted.query,
            body=wanted.body,
            headers=wanted.headers,
        )

    def _steps(self, wanted: DataverseRequest, call: Call) -> Generator[_Step, Any, Answer]:
        """The request as I/O steps, whichever way they are performed."""
        url = self.base + wanted.path + (f"?{wanted.query}" if wanted.query else "")
        sent = dict(ODATA_HEADERS)
        sent["x-ms-correlation-request-id"] = call.correlation_id
        sent["x-ms-client-request-id"] = call.correlation_id
        if wanted.headers:
            sent.update(wanted.headers)
        data = None
        if wanted.body is not None:
            sent["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(wanted.body, ensure_ascii=False).encode("utf-8")
        token = yield _Token(None)
        sent["Authorization"] = f"Bearer {token}"
        throttled = 0
        renewed = False
        while True:
            response = yield _Send(wanted.method, url, sent, data)
            if response.status_code == 401 and not renewed:
                # Refused before anything was done, so even a POST may go again.
                renewed = True
                token = yield _Token(token)
                sent["Authorization"] = f"Bearer {token}"
                continue
            if response.status_code != 429:
                return self._answer(response)
            throttled += 1
            wait = _retry_after(response.headers.get("Retry-After"))
            if throttled == MAX_ATTEMPTS or not self._may_wait(wait, call):
                raise BackendThrottled(
                    "service protection limit",
                    retry_after=max(1, round(wait)),
                    error_code=_error_code(response),
                )
            call.retry_waited += wait
            yield _Sleep(wait)

    def _may_wait(self, wait: float, call: Call) -> bool:
        within_bound = call.retry_waited + wait <= self._max_retry_wait
        return within_bound and self._clock() + wait + 0.5 < call.deadline

    def _remaining(self, call: Call) -> float:
        remaining = call.deadline - self._clock()
        if remaining <= 0:
            raise BackendTimeout("request budget spent before calling Dataverse")
        return min(self._timeout, remaining)

    def _send(self, step: _Send, call: Call) -> requests.Response:
        timeout = self._remaining(call)
        started = time.perf_counter()
        try:
            response = self._session.request(
                step.method,
                step.url,
                headers=step.headers,
                data=step.data,
                timeout=timeout,
                allow_redirects=False,
            )
            response.content  # noqa: B018 - read the body inside the timing and error handling
        except requests.Timeout:
            raise BackendTimeout("Dataverse did not answer in time") from None
        except requests.RequestException as exc:
            raise BackendUnavailable(f"Dataverse unreachable: {type(exc).__name__}") from None
        finally:
            _count(call, started)
        call.outcomes.append(response.status_code)
        return response

    async def _send_async(self, step: _Send, call: Call) -> _AsyncReply:
        import aiohttp

        timeout = self._remaining(call)
        session = self._client_async()
        started = time.perf_counter()
        try:
            with telemetry.client_span(step.method, step.url) as answered:
                async with session.request(
                    step.method,
                    step.url,
                    headers=step.headers,
                    data=step.data,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                    allow_redirects=False,
                    proxy=self._proxy,
                ) as response:
                    reply = _AsyncReply(response.status, response.headers, await response.read())
                answered(reply.status_code)
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors (ServerTimeoutError too)
            raise BackendTimeout("Dataverse did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"Dataverse unreachable: {type(exc).__name__}") from None
        finally:
            _count(call, started)
        call.outcomes.append(reply.status_code)
        return reply

    def _client_async(self) -> aiohttp.ClientSession:
        """The async session of the running loop, built on its first request."""
        loop = asyncio.get_running_loop()
        session = self._async_clients.get(loop)
        if session is not None:
            return session
        import aiohttp

        async def opened(*_: object) -> None:
            self._async_opened += 1

        counting = aiohttp.TraceConfig()
        counting.on_connection_create_end.append(opened)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._tls_context(), limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
            trace_configs=[counting],
        )
        # aiohttp sends an idempotent request again, once, when a kept-alive connection drops
        # (its private switch; no public one). This client's retries are its own (above), as
        # for the sync pool, which never resends: a request is sent once per attempt.
        session._retry_connection = False
        with self._async_lock:
            self._async_clients[loop] = session
        return session

    def close(self) -> None:
        """Close both pools: each async client on its loop, waited for unless that is this
        thread's loop (a runtime replaced while the worker runs leaves no sockets behind)."""
        self._session.close()
        with self._async_lock:
            clients = list(self._async_clients.items())
            self._async_clients.clear()
        for loop, client in clients:
            _close_on(client, loop)

    def _answer(self, response: _Reply) -> Answer:
        status = response.status_code
        if status < 300:
            return Answer(status, response.headers, _json_body(response))
        raise _error(response)


class _OneContextAdapter(HTTPAdapter):
    """requests' adapter, but the CA bundle is loaded once, into one TLS context for every
    connection of the pool (`DataverseClient._sync_tls_context`), rather than into the context
    again for every new connection, as urllib3 does when requests hands it the bundle's path
    (tens of milliseconds of CPU per connection, in a fresh instance's first request too)."""

    def __init__(self, context: Callable[[], ssl.SSLContext], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._context = context

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[_HostParams, _PoolKwargs]:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        if verify:
            pool.pop("ca_certs", None)
            pool.pop("ca_cert_dir", None)
            pool["ssl_context"] = self._context()
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if verify:  # the pool's context holds the CAs already: no path to load them from again
            conn.ca_certs = conn.ca_cert_dir = None


def _session_for(url: str) -> requests.Session:
    """A session that reads the environment once, here, rather than on every request as
    requests does by default (`trust_env`: the proxy variables, scanned across the whole
    environment twice a request, and ~/.netrc, looked for on disk): a proxy for Dataverse's
    host (HTTPS_PROXY, NO_PROXY) and the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) apply as
    before. App settings do not change under a running worker."""
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


def _close_on(session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_running():
        return  # a stopped loop runs nothing more; its sockets close with it or the collector
    closing = asyncio.run_coroutine_threadsafe(session.close(), loop)
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is not loop:
        with contextlib.suppress(Exception):
            closing.result(CLOSE_TIMEOUT)


def _count(call: Call, started: float) -> None:
    call.downstream_ms += (time.perf_counter() - started) * 1000
    call.downstream_calls += 1


def _json_body(response: _Reply) -> dict[str, Any] | None:
    if response.status_code == 204:
        return None
    if not response.content:
        # Every 2xx the API asks for carries a body (reads, and writes with
        # `Prefer: return=representation`); only 204 No Content is empty.
        raise BackendUnavailable(f"Dataverse answered {response.status_code} without a body")
    try:
        value = response.json()
    except ValueError:
        raise BackendUnavailable("Dataverse answered with something other than JSON") from None
    if not isinstance(value, dict):
        raise BackendUnavailable("Dataverse answered with JSON that is not an object")
    return value


def _error_code(response: _Reply) -> str | None:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None


_BY_STATUS: dict[int, type[DataverseError]] = {
    400: BackendRejected,
    401: BackendAuthFailed,
    403: BackendForbidden,
    404: RecordNotFound,
    412: PreconditionFailed,
}


def _error(response: _Reply) -> DataverseError:
    status = response.status_code
    code = _error_code(response)
    kind = _BY_STATUS.get(status, BackendUnavailable)
    if status == 403 and code is not None and code.lower() == RECORD_ACCESS_DENIED:
        kind = RecordAccessDenied
    return kind(f"Dataverse answered {status}", status=status, error_code=code)


def _retry_after(value: str | None) -> float:
    """Seconds to wait; Dataverse sends whole or fractional seconds, HTTP allows a date."""
    if not value:
        return 5.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return 5.0
    return max(0.0, when - time.time())
