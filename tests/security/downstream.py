"""What reached Entra and Dataverse while a test ran, and the checks on rejected requests.

    with watch(api) as seen:
        response = api.call(...)
    assert_invalid_token(response)
    assert seen.nothing

`seen.key_fetches` are the API's signing-key fetches (JWKS requests: each fetch reads the two
discovery documents and then the key set; MSAL reads a discovery document too, before its first
token request), `seen.token_calls` its token requests (On-Behalf-Of, client credentials),
`seen.dataverse` its Dataverse requests. Take tokens from Entra *before* the block: a client's
own sign-in is traffic too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.api.conftest import Api
from tests.api.contract_helpers import INVALID_TOKEN

_JWKS_PATHS = ("/discovery/v2.0/keys", "/discovery/keys")


@dataclass
class Traffic:
    entra: list[dict[str, Any]] = field(default_factory=list)
    dataverse: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key_fetches(self) -> list[dict[str, Any]]:
        return [r for r in self.entra if r["path"].endswith(_JWKS_PATHS)]

    @property
    def token_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.entra if r["path"].endswith("/token")]

    @property
    def nothing(self) -> bool:
        return not self.entra and not self.dataverse

    def describe(self) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.entra + self.dataverse]


@contextmanager
def watch(api: Api) -> Iterator[Traffic]:
    entra_mark, dataverse_mark = api.marks()
    seen = Traffic()
    yield seen
    seen.entra = api.entra_requests(entra_mark)
    seen.dataverse = api.dataverse_requests(dataverse_mark)


def assert_error(response: requests.Response, status: int, message: str | None = None) -> Any:
    """The contract's error body (statusCode, message, code, correlationId) with `status`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["statusCode"] == status
    assert set(body) <= {"statusCode", "message", "code", "correlationId"}
    assert body["correlationId"] == response.headers["x-correlation-id"]
    if message is not None:
        assert body["message"] == message, body
    return body


def assert_invalid_token(response: requests.Response, *, token_sent: bool = True) -> None:
    """401, the contract's message, and the RFC 6750 challenge."""
    assert_error(response, 401, INVALID_TOKEN)
    expected = 'Bearer error="invalid_token"' if token_sent else "Bearer"
    assert response.headers["WWW-Authenticate"] == expected


def assert_rejected(api: Api, token: str, path: str = "/api/customers?pageSize=1") -> None:
    """`token` gets the invalid-token 401 and costs nothing downstream (no key fetch, no
    token exchange, no Dataverse call)."""
    with watch(api) as seen:
        response = api.call("GET", path, token=token)
    assert_invalid_token(response)
    assert seen.nothing, seen.describe()
