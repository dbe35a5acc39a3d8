"""The document's shared components: parameters, headers and error responses, referenced by
`#/components/...` from every operation."""

from __future__ import annotations

from typing import Any

from shared.domains.model import GUID
from shared.domains.paging import MAX_PAGE_TOKEN_LENGTH
from shared.domains.service import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from shared.http.pipeline import CORRELATION_HEADER

PARAMETERS: dict[str, Any] = {
    "Id": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The record's id: a GUID in its canonical 36-character form.",
        "schema": {"type": "string", "format": "uuid", "pattern": GUID.pattern},
    },
    "PageSize": {
        "name": "pageSize",
        "in": "query",
        "required": False,
        "description": f"Records per page (default {DEFAULT_PAGE_SIZE}).",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_SIZE,
            "default": DEFAULT_PAGE_SIZE,
        },
    },
    "PageToken": {
        "name": "pageToken",
        "in": "query",
        "required": False,
        "description": "`nextPageToken` of the previous page, opaque. Valid only for the caller "
        "who received it, with the same other parameters (`pageSize` may change), for a limited "
        "time; otherwise 400, and paging starts again from the first page.",
        "schema": {
            "type": "string",
            "maxLength": MAX_PAGE_TOKEN_LENGTH,
            "pattern": "^[A-Za-z0-9_-]+$",
        },
    },
    "IfMatch": {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": "The `etag` of the version you read: the update is refused with 412 if "
        "the record changed since. Without it (or with `*`) the update applies to whatever "
        "version is current. An update never creates a record.",
        "schema": {"type": "string", "pattern": r'^(\*|(W/)?"[\x21\x23-\x7e]{1,64}")$'},
    },
    "CorrelationId": {
        "name": CORRELATION_HEADER,
        "in": "header",
        "required": False,
        "description": "Your id for this request (8 to 64 letters, digits, `.`, `_`, `-`), "
        "echoed in the response and written to the logs; any other value is replaced by a new "
        "id, not refused.",
        "schema": {"type": "string"},
    },
}

HEADERS: dict[str, Any] = {
    "CorrelationId": {
        "description": "The request's correlation id (yours, or a new one).",
        "required": True,
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": "The record's version, as in its `etag` field.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Location": {
        "description": "The new record's URL.",
        "required": True,
        "schema": {"type": "string"},
    },
    "WWWAuthenticate": {
        "description": "Why the token was not accepted (`invalid_token`, `insufficient_scope` "
        "with the scopes needed, or `insufficient_claims` with the claims to request).",
        "schema": {"type": "string"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before retrying, when known.",
        "schema": {"type": "integer", "minimum": 1},
    },
}


def _error(description: str, *headers: str) -> dict[str, Any]:
    named = {CORRELATION_HEADER: {"$ref": "#/components/headers/CorrelationId"}}
    for header in headers:
        named[header] = {"$ref": f"#/components/headers/{header.replace('-', '')}"}
    return {
        "description": description,
        "headers": named,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


ERROR_NAMES = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "403": "Forbidden",
    "404": "NotFound",
    "412": "PreconditionFailed",
    "413": "PayloadTooLarge",
    "415": "UnsupportedMediaType",
    "429": "TooManyRequests",
    "500": "InternalServerError",
    "502": "BadGateway",
    "503": "ServiceUnavailable",
    "504": "GatewayTimeout",
}

RESPONSES: dict[str, Any] = {
    "BadRequest": _error(
        "A parameter, header or body field is not acceptable; the message names it and says "
        "why. Nothing was sent to the backend. Also: the backend refused the request as invalid."
    ),
    "Unauthorized": _error(
        "The subscription key is missing or unknown, or the access token is missing, invalid or "
        'expired: get a new token. With `error="insufficient_claims"` in WWW-Authenticate '
        "the backend needs more (for example MFA): sign the user in again requesting the "
        "claims it carries.",
        "WWW-Authenticate",
    ),
    "Forbidden": _error(
        "The token lacks the scopes or app roles this operation needs (`insufficient_scope`; "
        "the message and WWW-Authenticate name them), this operation takes application tokens "
        "only (`application_only`), the client application that obtained the token may not "
        "call this API, or not with this subscription key (`client_app_not_allowed`), consent "
        "for the backend is missing (`consent_required`), or the backend denied the calling "
        "user (`backend_forbidden`: a privilege the user lacks, or a record the user may read "
        "but not change; a record the user may not see at all is a 404, never this 403).",
        "WWW-Authenticate",
    ),
    "NotFound": _error(
        "`not_found`: no such record, or the caller may not see it; both answer the same, so "
        "that the answer tells nobody which ids exist. An update never creates a record."
    ),
    "PreconditionFailed": _error(
        "The record changed since the etag in If-Match was read: read it again and retry."
    ),
    "PayloadTooLarge": _error("The body is larger than the API accepts (64 KiB)."),
    "UnsupportedMediaType": _error("Send the body as `application/json`."),
    "TooManyRequests": _error(
        "`rate_limited`: this subscription has made as many calls as its rate limit allows in "
        "the current window; Retry-After says how many seconds are left in it. Calls refused "
        "this way do not count. `too_many_concurrent_requests`: this caller (the user, or the "
        "application for application tokens) already has as many requests in progress as the "
        "API allows one caller at once; wait for one of them to finish, or retry after "
        "Retry-After seconds. Either way nothing was sent to the backend.",
        "Retry-After",
    ),
    "InternalServerError": _error("The API is misconfigured or failed; quote the correlation id."),
    "BadGateway": _error("The backend or the identity platform failed or answered nonsense."),
    "ServiceUnavailable": _error(
        "The backend is throttling requests, or the identity platform is not answering: retry "
        "after Retry-After seconds.",
        "Retry-After",
    ),
    "GatewayTimeout": _error(
        "The backend or the identity platform did not answer in time; retry later.",
        "Retry-After",
    ),
}
