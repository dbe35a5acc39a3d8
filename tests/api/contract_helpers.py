"""Helpers for the contract tests (tests/api/test_contract_*.py): fresh tokens, the emulators'
request logs read as "what went downstream", records to work on, and the checks every response
of the contract must pass.

Tokens: `api.user_token(...)` is cached for the whole session, and so is its On-Behalf-Of
exchange inside the API. A test that counts exchanges, or proves that something cost none, signs
a fresh token instead (`fresh_token`): the same claims Entra issued to that user and client app,
with a new `uti` and lifetime, signed by the Entra emulator's active key.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests

from tests.api.conftest import Api

OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_CREDENTIALS = "client_credentials"

# Words that only Dataverse uses: none of them may reach a client (outside a client's own
# echoed field name in a 400).
DATAVERSE_NAMES = re.compile(
    r"@odata|odata\.|contactid|incidentid|bos_|_value\b|emailaddress1|telephone1|statecode|"
    r"fullname|firstname|lastname|prioritycode|caseorigincode|ownerid|systemuser|"
    r"0x8004|Microsoft\.Dynamics",
)
ERROR_KEYS = {"statusCode", "message", "code", "correlationId"}
# The contract's messages, word for word.
INVALID_TOKEN = "Unauthorized. Access token is missing or invalid."
MISSING_KEY = (
    "Access denied due to missing subscription key. Make sure to include subscription key when "
    "making requests to an API."
)
INVALID_KEY = (
    "Access denied due to invalid subscription key. Make sure to provide a valid key for an "
    "active subscription."
)


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def sign(api: Api, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
    body: dict[str, Any] = {"claims": claims}
    if headers is not None:
        body["headers"] = headers
    return str(api.entra_control("POST", "sign", json=body)["token"])


def token_claims(api: Api, user: str = "alice", client: str = "portal") -> dict[str, Any]:
    """The claims of a token Entra issued to `user` through `client` (or to app `client` when
    `user` is None), with a new `uti` and a lifetime starting now."""
    issued = api.app_token(client) if user is None else api.user_token(user, client)
    claims = claims_of(issued)
    now = int(time.time())
    claims.update(uti=uuid.uuid4().hex, iat=now, nbf=now, exp=now + 3600)
    return claims


def fresh_token(
    api: Api, user: str | None = "alice", client: str = "portal", **overrides: Any
) -> str:
    """A token nobody has used yet (so the API has no validation or OBO cached for it)."""
    claims = token_claims(api, user, client)
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return sign(api, claims)


# --- the emulators' logs ------------------------------------------------------------------


@dataclass
class Traffic:
    """What reached Entra and Dataverse while a `with downstream(api) as seen:` block ran."""

    api: Api
    entra_mark: int
    dataverse_mark: int
    entra: list[dict[str, Any]] = field(default_factory=list)
    dataverse: list[dict[str, Any]] = field(default_factory=list)

    def refresh(self) -> None:
        self.entra = self.api.entra_requests(self.entra_mark)
        self.dataverse = self.api.dataverse_requests(self.dataverse_mark)

    def grants(self, grant_type: str, oid: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.entra
            if r["grant_type"] == grant_type
            and (oid is None or (r["caller"] or {}).get("oid") == oid)
        ]

    @property
    def exchanges(self) -> list[dict[str, Any]]:
        """On-Behalf-Of exchanges made by the API (the client app's own sign-ins excluded)."""
        return self.grants(OBO_GRANT)

    @property
    def token_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.entra if r["path"].endswith("/token")]

    def to_table(self, entity_set: str) -> list[dict[str, Any]]:
        pattern = re.compile(rf"/api/data/v9\.2/{re.escape(entity_set)}(\(.*\))?$")
        return [r for r in self.dataverse if pattern.search(r["path"])]


@contextmanager
def downstream(api: Api) -> Iterator[Traffic]:
    entra_mark, dataverse_mark = api.marks()
    seen = Traffic(api, entra_mark, dataverse_mark)
    yield seen
    seen.refresh()


def oid(api: Api, user: str) -> str:
    return api.stack.tenant.user(user).oid


def systemuserid(api: Api, *, user: str | None = None, app: str | None = None) -> str:
    for entry in api.stack.tenant.dataverse_users:
        if (user and entry.user == user) or (app and entry.app == app):
            return entry.systemuserid
    raise LookupError(user or app)


def client_id(api: Api, app: str) -> str:
    return api.stack.tenant.app(app).client_id


def store_rows(api: Api, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows straight from the Dataverse emulator's database: the truth to compare against."""
    return list(api.stack.dataverse_app.state.dataverse.store.query(sql, list(params)))


# --- responses ----------------------------------------------------------------------------


def assert_error(
    response: requests.Response,
    status: int,
    code: str | None = None,
    *,
    message: str | None = None,
    mentions: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The contract's error shape: statusCode, message, code, correlationId (= the header)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["statusCode"] == status
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["code"], str)
    assert re.fullmatch(r"[a-z_]+", body["code"])
    assert body["correlationId"] == response.headers["x-correlation-id"]
    if code is not None:
        assert body["code"] == code, body
    if message is not None:
        assert body["message"] == message
    for word in mentions:
        assert word in body["message"], (word, body["message"])
    if body["code"] != "invalid_input":  # a 400 may name a field the client itself sent
        assert_no_dataverse_names(response)
    return dict(body)


def assert_no_dataverse_names(response: requests.Response) -> None:
    found = DATAVERSE_NAMES.findall(response.text) + [
        h for h in response.headers if h.lower().startswith(("odata", "preference-applied"))
    ]
    assert not found, found


def unique(prefix: str = "Ctest") -> str:
    """A word no seeded record contains (letters only, so it survives any text field)."""
    return prefix + uuid.uuid4().hex[:12].translate(str.maketrans("0123456789", "ghijklmnop"))


def walk(api: Api, path: str, **caller: Any) -> list[list[dict[str, Any]]]:
    """Every page of a list, following nextPageToken; returns the pages."""
    pages: list[list[dict[str, Any]]] = []
    sep = "&" if "?" in path else "?"
    token: str | None = None
    while True:
        url = path if token is None else f"{path}{sep}pageToken={token}"
        response = api.call("GET", url, **caller)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "nextPageToken"}
        pages.append(body["items"])
        token = body["nextPageToken"]
        if token is None:
            return pages
        assert len(pages) < 100, "paging does not end"


def create(api: Api, route: str, body: dict[str, Any], **caller: Any) -> dict[str, Any]:
    response = api.call("POST", f"/api/{route}", json_body=body, **caller)
    assert response.status_code == 201, response.text
    record = dict(response.json())
    assert response.headers["Location"] == f"/api/{route}/{record['id']}"
    assert response.headers["ETag"] == record["etag"]
    return record


def new_customer(api: Api, user: str = "alice", **fields: Any) -> dict[str, Any]:
    """A contact owned by `user` (Alice, the salesperson, may create contacts)."""
    return create(api, "customers", {"lastName": unique(), **fields}, user=user)


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
