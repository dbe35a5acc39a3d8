"""A clock that tests move by hand, for anything that takes a `clock` callable."""

from __future__ import annotations


class ManualClock:
    """`clock()` reads it; set `clock.now` or `advance()` it. Time passes only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
