"""The Dataverse Web API client: one pooled `requests.Session` per process, shared by every call.

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

The session keeps no cookies: Dataverse sets affinity cookies, and a session shared by every
user must carry nothing from one caller's answer into another caller's request.
"""

from __future__ import annotations

import email.utils
import http.cookiejar
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from shared.dataverse.call import Call
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

API_PATH = "/api/data/v9.2/"
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


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: dict[str, Any] | None


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
        self._session = session or requests.Session()
        self._session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self._adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("https://", self._adapter)
        self._session.mount("http://", self._adapter)

    def connections_opened(self) -> int:
        """How many connections the pool has opened so far (for benchmarks and tests)."""
        pools = self._adapter.poolmanager.pools
        return sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118

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
        url = self.base + path + (f"?{query}" if query else "")
        sent = dict(ODATA_HEADERS)
        sent["x-ms-correlation-request-id"] = call.correlation_id
        sent["x-ms-client-request-id"] = call.correlation_id
        if headers:
            sent.update(headers)
        data = None
        if body is not None:
            sent["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        token = call.token()
        sent["Authorization"] = f"Bearer {token}"
        throttled = 0
        renewed = False
        while True:
            response = self._send(method, url, sent, data, call)
            if response.status_code == 401 and not renewed:
                # Refused before anything was done, so even a POST may go again.
                renewed = True
                token = call.token(stale=token)
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
            self._sleep(wait)

    def _may_wait(self, wait: float, call: Call) -> bool:
        within_bound = call.retry_waited + wait <= self._max_retry_wait
        return within_bound and self._clock() + wait + 0.5 < call.deadline

    def _send(
        self, method: str, url: str, headers: dict[str, str], data: bytes | None, call: Call
    ) -> requests.Response:
        remaining = call.deadline - self._clock()
        if remaining <= 0:
            raise BackendTimeout("request budget spent before calling Dataverse")
        started = time.perf_counter()
        try:
            response = self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                timeout=min(self._timeout, remaining),
                allow_redirects=False,
            )
            response.content  # noqa: B018 - read the body inside the timing and error handling
        except requests.Timeout:
            raise BackendTimeout("Dataverse did not answer in time") from None
        except requests.RequestException as exc:
            raise BackendUnavailable(f"Dataverse unreachable: {type(exc).__name__}") from None
        finally:
            call.downstream_ms += (time.perf_counter() - started) * 1000
            call.downstream_calls += 1
        call.outcomes.append(response.status_code)
        return response

    def _answer(self, response: requests.Response) -> Answer:
        status = response.status_code
        if status < 300:
            return Answer(status, response.headers, _json_body(response))
        raise _error(response)


def _json_body(response: requests.Response) -> dict[str, Any] | None:
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


def _error_code(response: requests.Response) -> str | None:
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


def _error(response: requests.Response) -> DataverseError:
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
