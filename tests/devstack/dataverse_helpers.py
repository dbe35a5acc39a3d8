"""Helpers for the Dataverse emulator tests: one token builder with named evil variants, and a
small Web API client over real HTTPS.

Tokens are minted as Entra mints them for Dataverse (v1: `iss` `{entra}/{tid}/`, `aud` the
organisation URL, `appid`), signed with the tenant's active key through the Entra emulator's
in-process handle. The client ignores `REQUESTS_CA_BUNDLE` (the sandbox sets it, and `requests`
would prefer it over the dev CA).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests

from devstack.pki import new_rsa_key
from devstack.tenant import Tenant

API = "/api/data/v9.2"


@dataclass
class Tokens:
    entra: Any  # devstack.entra.Entra
    tenant: Tenant
    dataverse_url: str

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": self.dataverse_url,
            "iss": f"{self.entra.base_url}/{self.tenant.id}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": self.tenant.id,
            "ver": "1.0",
            "uti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        token: str = self.entra.sign(claims, headers)
        return token

    def user(self, name: str = "alice", **overrides: Any) -> str:
        person = self.tenant.user(name)
        return self.sign(
            self.claims(
                oid=person.oid,
                sub=f"sub-{name}",
                upn=person.upn,
                name=person.display_name,
                scp="user_impersonation",
                appid=self.tenant.app("central-api").client_id,
                appidacr="1",
                **overrides,
            )
        )

    def app(self, name: str = "central-api", **overrides: Any) -> str:
        client_id = self.tenant.app(name).client_id
        return self.sign(
            self.claims(
                appid=client_id,
                appidacr="1",
                oid=str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                sub=str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                idtyp="app",
                roles=[],
                **overrides,
            )
        )

    # --- evil variants ------------------------------------------------------------------------

    def expired(self) -> str:
        now = int(time.time())
        return self.user(iat=now - 7200, nbf=now - 7200, exp=now - 3600)

    def not_yet_valid(self) -> str:
        now = int(time.time())
        return self.user(iat=now, nbf=now + 3600, exp=now + 7200)

    def wrong_audience(self) -> str:
        return self.user(aud="https://other.crm4.dynamics.com")

    def wrong_issuer(self) -> str:
        return self.user(iss=f"https://sts.windows.net/{self.tenant.id}/")

    def other_tenant(self) -> str:
        return self.user(tid=str(uuid.uuid4()))

    def no_expiry(self) -> str:
        return self.user(exp=None)

    def bad_signature(self) -> str:
        """Signed by a stranger's key under the tenant's real `kid`."""
        kid = self.entra.keys.active.kid
        claims = self.claims(oid=self.tenant.user("alice").oid, scp="user_impersonation")
        return jwt.encode(claims, new_rsa_key(), algorithm="RS256", headers={"kid": kid})

    def tampered(self) -> str:
        header, payload, signature = self.user().split(".")
        flipped = ("A" if signature[5] != "A" else "B").join((signature[:5], signature[6:]))
        return ".".join((header, payload, flipped))

    def unknown_kid(self) -> str:
        claims = self.claims(oid=self.tenant.user("alice").oid, scp="user_impersonation")
        return self.sign(claims, {"kid": "no-such-key"})

    def alg_none(self) -> str:
        claims = self.claims(oid=self.tenant.user("alice").oid, scp="user_impersonation")
        return jwt.encode(
            claims, None, algorithm="none", headers={"kid": self.entra.keys.active.kid}
        )

    def neither_user_nor_app(self) -> str:
        return self.sign(self.claims(oid=self.tenant.user("alice").oid))


@dataclass
class Api:
    """The Web API as one caller sees it. Paths are relative to `/api/data/v9.2/`."""

    url: str
    ca_bundle: Path
    token: str | None
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.trust_env = False
        self.session.verify = str(self.ca_bundle)

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        sent = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        target = path if path.startswith("https://") else f"{self.url}{API}/{path}"
        return self.session.request(method, target, headers=sent, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def values(self, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        response = self.get(path, **kwargs)
        assert response.status_code == 200, response.text
        values: list[dict[str, Any]] = response.json()["value"]
        return values

    def create(self, entity_set: str, body: dict[str, Any]) -> str:
        """POST, and the new record's id from `OData-EntityId`."""
        response = self.post(entity_set, body)
        assert response.status_code == 204, response.text
        return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")

    def close(self) -> None:
        self.session.close()


def assert_error(response: requests.Response, status: int, code: str, message: str = "") -> None:
    """Dataverse's error shape: `{"error": {"code", "message"}}`, no stack trace."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert message in body["error"]["message"], body
    assert "Traceback" not in response.text


def logged(
    control: Any, since: int, keep: Callable[[dict[str, Any]], bool], count: int = 1
) -> list[dict[str, Any]]:
    """The request log's entries after `since` that `keep` accepts, once there are `count`.

    The control plane appends an entry after the response has gone out, so a client that has
    its answer may look before the entry is there: poll (a generous guard, not a timing).
    """
    deadline = time.monotonic() + 10.0
    while True:
        found = [r for r in control.requests(since) if keep(r)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.01)
