"""JWT time claims: reading them safely and printing them the way Entra's messages do."""

from __future__ import annotations

import datetime as dt
import math


def numeric_date(value: object) -> float | None:
    """A JWT NumericDate as a float, or None when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def iso(timestamp: float) -> str:
    """`2024-10-02T22:05:03.0000000Z`, as in AADSTS time-range messages."""
    try:
        moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return str(timestamp)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
