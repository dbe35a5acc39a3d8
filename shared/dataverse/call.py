"""What one client request carries into Dataverse, and what it asks of it, as plain data (kept
apart from the client so that declarations and handlers can name them without importing an HTTP
library).

A handler that calls Dataverse is a generator (`Steps`): it yields each `DataverseRequest` and is
sent back its `Answer`, or has the `DataverseError` thrown in where it yielded, and it returns the
response. The handler never performs the I/O itself, so the same handler runs under a sync
function (`DataverseClient.run`, on a worker thread) and under an async one
(`DataverseClient.run_async`, on the worker's event loop): the logic is written once and only
the I/O edge differs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
Y = TypeVar("Y")
S = TypeVar("S")


class TokenSource(Protocol):
    """The caller's Dataverse token. `stale` is a token Dataverse has just refused with 401
    (revoked, or signed with a key Entra rolled over): the source forgets that one, wherever
    it is cached, and answers a fresh one. Only the given token is forgotten, so callers who
    hit the same 401 at the same moment share one new token instead of each fetching one."""

    def __call__(self, stale: str | None = None) -> str: ...


class AsyncTokenSource(Protocol):
    """`TokenSource` for the event loop: answers a cached token at once, and runs anything that
    may block (MSAL, the shared store) on a thread."""

    def __call__(self, stale: str | None = None) -> Awaitable[str]: ...


@dataclass(frozen=True)
class DataverseRequest:
    """One Web API request: `path` under /api/data/v9.2/, `query` already encoded."""

    method: str
    path: str
    query: str = ""
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: dict[str, Any] | None


# A handler's conversation with Dataverse: yields requests, is sent answers, returns T.
Steps = Generator[DataverseRequest, Answer, T]


@dataclass
class Call:
    """One client request's view of Dataverse: whose token, which correlation id, how long.

    `token_async` is set for requests served on the event loop (async functions)."""

    token: TokenSource
    correlation_id: str
    deadline: float  # time.monotonic() value
    token_async: AsyncTokenSource | None = None
    downstream_ms: float = 0.0
    downstream_calls: int = 0
    outcomes: list[int] = field(default_factory=list)
    retry_waited: float = 0.0  # seconds slept for Retry-After, summed over the whole request


class Cursor(Generic[Y, S, T]):
    """Walks a generator of I/O steps (a handler's `Steps`, a request's own), whoever performs
    them: `next()` is its next step, or None once it has returned (`result()`); `send` or
    `throw` what performing the step gave. Its steps are never None."""

    def __init__(self, steps: Generator[Y, S, T]) -> None:
        self._steps = steps
        self._sent: Any = None
        self._error: BaseException | None = None
        self._done = False
        self._result: Any = None

    def next(self) -> Y | None:
        error, self._error = self._error, None
        try:
            if error is not None:
                return self._steps.throw(error)
            return self._steps.send(self._sent)
        except StopIteration as done:
            self._done, self._result = True, done.value
            return None
        finally:
            self._sent = None

    def send(self, value: S) -> None:
        self._sent = value

    def throw(self, error: BaseException) -> None:
        self._error = error

    def result(self) -> T:
        assert self._done, "the steps have not returned yet"
        return self._result  # type: ignore[no-any-return]
