"""HTTP: the request pipeline, request errors, and the one place errors become responses."""

from shared.http.errors import BadInput, PayloadTooLarge, RequestError, UnsupportedMediaType
from shared.http.pipeline import ApiRequest, endpoint
from shared.http.responses import json_response

__all__ = [
    "ApiRequest",
    "BadInput",
    "PayloadTooLarge",
    "RequestError",
    "UnsupportedMediaType",
    "endpoint",
    "json_response",
]
