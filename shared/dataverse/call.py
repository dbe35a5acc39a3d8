"""What one client request carries into Dataverse (kept apart from the client so that
declarations and handlers can name it without importing `requests`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class TokenSource(Protocol):
    """The caller's Dataverse token. `stale` is a token Dataverse has just refused with 401
    (revoked, or signed with a key Entra rolled over): the source forgets that one, wherever
    it is cached, and answers a fresh one. Only the given token is forgotten, so callers who
    hit the same 401 at the same moment share one new token instead of each fetching one."""

    def __call__(self, stale: str | None = None) -> str: ...


@dataclass
class Call:
    """One client request's view of Dataverse: whose token, which correlation id, how long."""

    token: TokenSource
    correlation_id: str
    deadline: float  # time.monotonic() value
    downstream_ms: float = 0.0
    downstream_calls: int = 0
    outcomes: list[int] = field(default_factory=list)
    retry_waited: float = 0.0  # seconds slept for Retry-After, summed over the whole request
