"""How many requests this instance is serving (per instance: nothing of it is shared).

The pipeline counts every request in `IN_FLIGHT` while it is served; the start-up warm-up keeps
its last, CPU-heavy step for a moment when none is (shared/warmup.py). A module of its own,
importing nothing of the API, so that the warm-up can wait on it without importing the pipeline.
"""

from __future__ import annotations

import threading


class InFlight:
    """How many requests this process is serving, and a wait for none (per instance)."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition(threading.Lock())

    def __enter__(self) -> None:
        with self._changed:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._count -= 1
            if not self._count:
                self._changed.notify_all()

    @property
    def count(self) -> int:
        return self._count

    def wait_quiet(self, timeout: float) -> bool:
        """Wait until no request is being served, at most `timeout` seconds; whether none is."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._count, timeout)


IN_FLIGHT = InFlight()
