"""What is wrong with a client's request itself (before anything goes downstream).

    RequestError
    ├── BadInput                a parameter, header or body field is not acceptable, 400
    ├── PayloadTooLarge         the body is over the limit, 413
    ├── UnsupportedMediaType    a body that is not JSON, 415
    ├── TooManyConcurrentRequests
    │                           the caller already has as many requests in flight as this
    │                           instance allows one caller (`shared.http.limits`), 429
    └── RateLimited             the subscription has made all the calls its rate limit allows
                                in this window (`shared.http.rate_limits`), 429

`BadInput.field` names what was wrong and `why` says how, in words a client developer can act
on; neither ever repeats the value that was sent.
"""

from __future__ import annotations


class RequestError(Exception):
    code = "bad_request"


class BadInput(RequestError):
    code = "invalid_input"

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


class PayloadTooLarge(RequestError):
    code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"body over {limit} bytes")
        self.limit = limit


class UnsupportedMediaType(RequestError):
    code = "unsupported_media_type"


class TooManyConcurrentRequests(RequestError):
    code = "too_many_concurrent_requests"
    # The cap frees a place as soon as one of the caller's own requests answers: usually well
    # within a second, so the shortest wait HTTP can say is also the right one.
    retry_after = 1

    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} concurrent requests of this caller")
        self.limit = limit
        self.reason = f"caller already has {limit} requests in flight"


class RateLimited(RequestError):
    code = "rate_limited"

    def __init__(self, calls: int, period_seconds: int, *, retry_after: int, shared: bool) -> None:
        super().__init__(f"over {calls} calls per {period_seconds} s")
        self.calls = calls
        self.period_seconds = period_seconds
        self.retry_after = retry_after  # seconds until the subscription's window renews
        # For the log: whether all instances counted together or this one alone (no store).
        where = "all instances" if shared else "this instance"
        self.reason = f"subscription over {calls} calls per {period_seconds} s ({where})"
