"""What one client request carries into Dataverse (kept apart from the client so that
declarations and handlers can name it without importing `requests`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Call:
    """One client request's view of Dataverse: whose token, which correlation id, how long."""

    token: Callable[[], str]
    correlation_id: str
    deadline: float  # time.monotonic() value
    downstream_ms: float = 0.0
    downstream_calls: int = 0
    outcomes: list[int] = field(default_factory=list)
