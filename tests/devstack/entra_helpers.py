"""Shared helpers for the Entra emulator tests: real MSAL clients, a JWKS-backed validator, and
one token builder with named evil variants.
"""

from __future__ import annotations

import ssl
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import msal
import requests

from devstack.entra import msal_session
from devstack.pki import Material, SigningKey, load_client_cert, thumbprints
from devstack.tenant import Tenant

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OMIT = "<omit>"  # a form override that leaves the field out

AADSTS_ERROR_FIELDS = {
    "error",
    "error_description",
    "error_codes",
    "timestamp",
    "trace_id",
    "correlation_id",
    "error_uri",
}


# --- MSAL ----------------------------------------------------------------------------------------


class MsalApps:
    """Builds MSAL apps the way the API does, each fresh (MSAL throttles and caches error answers
    per app object), and closes their HTTP sessions: the server's shutdown waits on them."""

    def __init__(self, entra_url: str, tenant: Tenant, ca_bundle: Path) -> None:
        self._entra_url = entra_url
        self._authority = f"{entra_url}/{tenant.id}"
        self._ca_bundle = str(ca_bundle)
        self._apps: list[msal.ClientApplication] = []

    def confidential(
        self, client_id: str, credential: Any, *, for_password_grant: bool = False
    ) -> msal.ConfidentialClientApplication:
        """As the API builds it (`verify=`), unless it will use the password grant, which needs
        the user-realm shim (see `devstack.entra.compat`)."""
        transport: dict[str, Any] = (
            {"http_client": msal_session(self._entra_url, self._ca_bundle)}
            if for_password_grant
            else {"verify": self._ca_bundle}
        )
        app = msal.ConfidentialClientApplication(
            client_id,
            client_credential=credential,
            authority=self._authority,
            instance_discovery=False,
            token_cache=msal.TokenCache(),
            **transport,
        )
        self._apps.append(app)
        return app

    def public(self, client_id: str) -> msal.PublicClientApplication:
        """As a script signing users in builds it: with the user-realm shim."""
        app = msal.PublicClientApplication(
            client_id,
            authority=self._authority,
            instance_discovery=False,
            http_client=msal_session(self._entra_url, self._ca_bundle),
            token_cache=msal.TokenCache(),
        )
        self._apps.append(app)
        return app

    def close(self) -> None:
        for app in self._apps:
            app.http_client.close()


def ropc(
    app: msal.ClientApplication, username: str, password: str, scopes: list[str]
) -> dict[str, Any]:
    """ROPC, tolerating only MSAL's deprecation warning for public clients."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="This API has been deprecated for public client flows",
            category=DeprecationWarning,
        )
        result: dict[str, Any] = app.acquire_token_by_username_password(
            username, password, scopes=scopes
        )
    return result


def cert_credential(pem_path: Path, *, sha256: bool) -> dict[str, str]:
    """MSAL's certificate credential: SHA-1 `thumbprint` (RS256) or the certificate (PS256)."""
    pem = pem_path.read_text()
    if sha256:
        return {"private_key": pem, "public_certificate": pem}
    _, cert = load_client_cert(pem_path)
    from cryptography.hazmat.primitives import hashes

    return {"private_key": pem, "thumbprint": cert.fingerprint(hashes.SHA1()).hex()}


def assert_entra_error(
    body: dict[str, Any], error: str, code: int, *, suberror: str | None = None
) -> None:
    """An error answer in Entra's shape, with the expected error and AADSTS code."""
    assert set(body) >= AADSTS_ERROR_FIELDS, body
    assert body["error"] == error, body
    assert body["error_codes"] == [code], body
    description = body["error_description"]
    assert description.startswith(f"AADSTS{code}: "), description
    assert f"\r\nTrace ID: {body['trace_id']}\r\n" in description
    assert f"\r\nCorrelation ID: {body['correlation_id']}\r\n" in description
    assert description.endswith(f"\r\nTimestamp: {body['timestamp']}")
    assert body["error_uri"].endswith(f"/error?code={code}")
    assert body.get("suberror") == suberror
    assert "Traceback" not in description


# --- raw token requests --------------------------------------------------------------------------


def api_scope(tenant: Tenant, scope: str = ".default") -> str:
    """A scope of the central API, under its identifier URI."""
    return f"{tenant.app('central-api').identifier_uris[0]}/{scope}"


def client_credentials_form(tenant: Tenant, material: Material, **overrides: str) -> dict[str, str]:
    """dealer-sync asks for a central-API token with its secret; an override of `OMIT` leaves
    that field out."""
    form = {
        "grant_type": "client_credentials",
        "client_id": tenant.app("dealer-sync").client_id,
        "client_secret": material.client_secret("dealer-sync"),
        "scope": api_scope(tenant),
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v != OMIT}


def password_form(tenant: Tenant, username: str, password: str, **extra: str) -> dict[str, str]:
    """The portal signs a user in with the password grant, for the central API by default."""
    return {
        "grant_type": "password",
        "client_id": tenant.app("portal").client_id,
        "username": username,
        "password": password,
        "scope": api_scope(tenant),
        **extra,
    }


def obo_form(tenant: Tenant, material: Material, assertion: str) -> dict[str, str]:
    """The central API exchanges a user's `assertion` for a Dataverse token (On-Behalf-Of)."""
    return {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "requested_token_use": "on_behalf_of",
        "client_id": tenant.app("central-api").client_id,
        "client_secret": material.client_secret("central-api"),
        "assertion": assertion,
        "scope": f"{tenant.app('dataverse').identifier_uris[0]}/.default",
    }


# --- validation ----------------------------------------------------------------------------------


@dataclass
class Validator:
    """Validates tokens the way an API does: signature against the tenant's JWKS fetched over
    HTTPS."""

    entra_url: str
    tenant: Tenant
    ca_bundle: Path

    @property
    def jwks_uri(self) -> str:
        return f"{self.entra_url}/{self.tenant.id}/discovery/v2.0/keys"

    def jwks(self) -> dict[str, Any]:
        response = requests.get(self.jwks_uri, verify=str(self.ca_bundle), timeout=10)
        response.raise_for_status()
        keys: dict[str, Any] = response.json()
        return keys

    def claims(self, token: str, *, audience: str, issuer: str) -> dict[str, Any]:
        client = jwt.PyJWKClient(
            self.jwks_uri,
            cache_keys=False,
            cache_jwk_set=False,
            ssl_context=ssl.create_default_context(cafile=str(self.ca_bundle)),
        )
        key = client.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "nbf", "aud", "iss"]},
        )
        return claims

    def api_claims(self, token: str) -> dict[str, Any]:
        """A v2 access token for the central API."""
        return self.claims(
            token,
            audience=self.tenant.app("central-api").client_id,
            issuer=f"{self.entra_url}/{self.tenant.id}/v2.0",
        )

    def v1_claims(self, token: str, *, audience: str) -> dict[str, Any]:
        """A v1 access token for `audience` (Dataverse, or an API switched to v1 tokens)."""
        return self.claims(token, audience=audience, issuer=f"{self.entra_url}/{self.tenant.id}/")


# --- assertions for the OBO flow -----------------------------------------------------------------


@dataclass
class UserTokens:
    """One builder for OBO assertions, plus named evil variants. Signed with the tenant's key
    through the emulator's in-process handle, exactly as a real token would be."""

    entra: Any  # devstack.entra.Entra
    tenant: Tenant
    audience: str  # the middle-tier API's client id

    def claims(self, user: str = "alice", **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        person = self.tenant.user(user)
        claims = {
            "aud": self.audience,
            "iss": f"{self.entra.base_url}/{self.tenant.id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "azp": self.tenant.app("portal").client_id,
            "azpacr": "0",
            "name": person.display_name,
            "oid": person.oid,
            "preferred_username": person.upn,
            "scp": "customer.read",
            "sub": "pairwise-subject",
            "tid": self.tenant.id,
            "uti": uuid.uuid4().hex,
            "ver": "2.0",
        }
        claims.update(overrides)
        return claims

    def valid(self, user: str = "alice") -> str:
        token: str = self.entra.sign(self.claims(user))
        return token

    def expired(self) -> str:
        now = int(time.time())
        token: str = self.entra.sign(self.claims(iat=now - 7200, nbf=now - 7200, exp=now - 60))
        return token

    def wrong_audience(self) -> str:
        token: str = self.entra.sign(self.claims(aud=self.tenant.app("partner-api").client_id))
        return token

    def app_only(self) -> str:
        claims = self.claims(idtyp="app", roles=["customer.read"])
        del claims["scp"], claims["name"], claims["preferred_username"]
        token: str = self.entra.sign(claims)
        return token

    def foreign_signed(self) -> str:
        """Right claims and a published `kid`, but signed by a key the tenant never had."""
        stranger = SigningKey.generate()
        active = self.entra.keys.active
        return jwt.encode(
            self.claims(),
            stranger.key,
            algorithm="RS256",
            headers={"kid": active.kid, "x5t": active.x5t},
        )

    def unknown_kid(self) -> str:
        stranger = SigningKey.generate()
        return jwt.encode(
            self.claims(),
            stranger.key,
            algorithm="RS256",
            headers={"kid": stranger.kid, "x5t": stranger.x5t},
        )


def sha1_thumbprint(pem_path: Path) -> str:
    _, cert = load_client_cert(pem_path)
    return thumbprints(cert)[0]
