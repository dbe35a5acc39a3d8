"""Dataverse: the Web API client (`shared.dataverse.client`, imported when first needed, since it
pulls in `requests`), OData query text, and the errors Dataverse's answers become."""

from shared.dataverse.call import Call, TokenSource
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

__all__ = [
    "BackendAuthFailed",
    "BackendForbidden",
    "BackendRejected",
    "BackendThrottled",
    "BackendTimeout",
    "BackendUnavailable",
    "Call",
    "DataverseError",
    "PreconditionFailed",
    "RecordAccessDenied",
    "RecordNotFound",
    "TokenSource",
]
