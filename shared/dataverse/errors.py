"""Why a Dataverse call did not give us what we asked for.

    DataverseError
    ├── BackendForbidden        Dataverse denied the caller (their own security roles), 403
    │   └── RecordAccessDenied  ...for this one record only (access check), answered as 404
    ├── RecordNotFound          no such record, or a referenced record is missing, 404
    ├── PreconditionFailed      the record changed since the caller's etag, 412
    ├── BackendRejected         Dataverse refused the request as malformed, 400
    ├── BackendThrottled        service protection limits, and no time left to wait, 429
    ├── BackendAuthFailed       Dataverse refused *our* token: a configuration problem, 401
    └── BackendUnavailable      5xx, reset, unreadable answer
        └── BackendTimeout      no answer within the time left

`status` is Dataverse's HTTP status and `error_code` its hexadecimal error code (`0x80040220`),
for the logs. Dataverse's own message is never kept: it can name users and echo data.

Dataverse refuses in two steps, with two error codes ("Troubleshoot Dataverse client errors",
learn.microsoft.com/troubleshoot/power-platform/dataverse/user-permissions/client-errors):
the *privilege check* (`0x80040220`, -2147220960, "Principal user ... is missing prvReadContact
privilege") says the caller's roles hold no such privilege on the table at all, the same for
every record; the *access check* (`0x80048306`, -2147187962, "Principal with ID ... does not
have ReadAccess right(s) for record with ID ...", or "SecLib::AccessCheckEx failed. Returned
hr = -2147187962") says the privilege is held but does not reach this record. Only the second
depends on the record, so only it becomes `RecordAccessDenied`, which the API answers exactly
as a missing record: otherwise 403 versus 404 would tell a caller which ids exist. "Not a
member of the organization" (`0x80072560`, no Dataverse user) stays `BackendForbidden`.
"""

from __future__ import annotations


class DataverseError(Exception):
    code = "backend_error"

    def __init__(
        self, reason: str = "", *, status: int | None = None, error_code: str | None = None
    ) -> None:
        super().__init__(reason or self.code)
        self.reason = reason or self.code
        self.status = status
        self.error_code = error_code


class BackendForbidden(DataverseError):
    code = "backend_forbidden"


class RecordAccessDenied(BackendForbidden):
    """The access check failed for one record (`0x80048306`): to the client, no such record."""

    code = "not_found"


class RecordNotFound(DataverseError):
    code = "not_found"


class PreconditionFailed(DataverseError):
    code = "precondition_failed"


class BackendRejected(DataverseError):
    code = "backend_rejected"


class BackendThrottled(DataverseError):
    code = "backend_throttled"

    def __init__(
        self, reason: str = "", *, retry_after: int, error_code: str | None = None
    ) -> None:
        super().__init__(reason, status=429, error_code=error_code)
        self.retry_after = retry_after


class BackendAuthFailed(DataverseError):
    code = "backend_auth_failed"


class BackendUnavailable(DataverseError):
    code = "backend_unavailable"


class BackendTimeout(BackendUnavailable):
    code = "backend_timeout"
