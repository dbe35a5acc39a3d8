"""What Entra puts in the tokens it issues: access tokens (v1 or v2, per the resource's
registration), ID tokens and `client_info`.

A `Grant` says who the token is for (client, optional user, resource, scopes or roles); the
`TokenMinter` turns it into signed JWTs with Entra's claim set and random 60-90 minute lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from devstack.entra.directory import Directory
from devstack.entra.keys import KeyRing
from devstack.entra.metadata import Urls
from devstack.pki import b64url
from devstack.tenant import App, User

# Entra assigns access tokens a random lifetime between 60 and 90 minutes.
MIN_LIFETIME = 60 * 60
MAX_LIFETIME = 90 * 60
# Extra validity for resilience during an outage (ext_expires_in), on top of expires_in.
EXT_LIFETIME = 10 * 60
ID_TOKEN_LIFETIME = 60 * 60
SERVICE_PRINCIPALS = uuid.UUID("a5e0a9c6-2d6f-4cbb-9a51-6f1b3c8f3d10")

# `appidacr` / `azpacr`: how the client authenticated.
ACR_PUBLIC, ACR_SECRET, ACR_CERTIFICATE = "0", "1", "2"


@dataclass(frozen=True)
class Grant:
    """What was granted: by whom (client + how it authenticated), for whom, to which resource."""

    client: App
    client_acr: str
    resource: App
    user: User | None = None
    scopes: tuple[str, ...] = ()  # delegated
    roles: tuple[str, ...] = ()  # application
    methods: tuple[str, ...] = ("pwd",)  # how the user signed in: `amr` (v1), inside `aio` (v2)
    contexts: tuple[str, ...] = ()  # authentication contexts satisfied: `acrs`


@dataclass(frozen=True)
class Issued:
    access_token: str
    expires_in: int
    ext_expires_in: int


def service_principal_oid(tenant_id: str, app: App) -> str:
    """A stable object id for an app's service principal (the `oid` of its app tokens)."""
    return str(uuid.uuid5(SERVICE_PRINCIPALS, f"{tenant_id}/{app.client_id}"))


def client_info(user: User, tenant_id: str) -> str:
    raw = json.dumps({"uid": user.oid, "utid": tenant_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class TokenMinter:
    def __init__(
        self,
        directory: Directory,
        keys: KeyRing,
        urls: Urls,
        rng: random.Random | None = None,
    ) -> None:
        self._directory = directory
        self._keys = keys
        self._urls = urls
        self._random = rng or random.Random()  # noqa: S311 - lifetimes, not secrets

    @property
    def tenant_id(self) -> str:
        return self._urls.tenant_id

    def access_token(self, grant: Grant, now: float) -> Issued:
        lifetime = self._random.randint(MIN_LIFETIME, MAX_LIFETIME)
        version = self._directory.version(grant.resource)
        iat = int(now)
        claims: dict[str, Any] = {
            "aud": (
                grant.resource.client_id
                if version == 2
                else self._directory.app_id_uri(grant.resource)
            ),
            "iss": self._urls.issuer(version),
            "iat": iat,
            "nbf": iat,
            "exp": iat + lifetime,
        }
        if version == 1:
            claims.update(self._v1_claims(grant))
        else:
            claims.update(self._v2_claims(grant))
        claims.update(self._subject_claims(grant))
        claims["tid"] = self.tenant_id
        claims["uti"] = _uti()
        claims["rh"] = _rh()
        claims["ver"] = f"{version}.0"
        if "idtyp" in self._directory.optional_claims(grant.resource):
            claims["idtyp"] = "user" if grant.user else "app"
        token = self._keys.sign(claims)
        return Issued(token, lifetime, lifetime + EXT_LIFETIME)

    def id_token(self, client: App, user: User, now: float, nonce: str | None = None) -> str:
        iat = int(now)
        claims: dict[str, Any] = {
            "aud": client.client_id,
            "iss": self._urls.issuer(2),
            "iat": iat,
            "nbf": iat,
            "exp": iat + ID_TOKEN_LIFETIME,
            "name": user.display_name,
            "oid": user.oid,
            "preferred_username": user.upn,
            "rh": _rh(),
            "sub": self._pairwise_sub(user, client),
            "tid": self.tenant_id,
            "uti": _uti(),
            "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return self._keys.sign(claims)

    # --- claim groups -------------------------------------------------------------------------

    def _v1_claims(self, grant: Grant) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "appid": grant.client.client_id,
            "appidacr": grant.client_acr,
        }
        if grant.user is None:
            claims["idp"] = self._urls.issuer(1)
            return claims
        given, _, family = grant.user.display_name.partition(" ")
        claims.update(
            {
                "acr": "1",
                "amr": list(grant.methods),
                "family_name": family,
                "given_name": given,
                "name": grant.user.display_name,
                "unique_name": grant.user.upn,
                "upn": grant.user.upn,
            }
        )
        return claims

    def _v2_claims(self, grant: Grant) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "azp": grant.client.client_id,
            "azpacr": grant.client_acr,
        }
        if grant.user is not None:
            claims["aio"] = encode_aio(grant.methods)
            claims["name"] = grant.user.display_name
            claims["preferred_username"] = grant.user.upn
        return claims

    def _subject_claims(self, grant: Grant) -> dict[str, Any]:
        if grant.user is None:
            oid = service_principal_oid(self.tenant_id, grant.client)
            claims: dict[str, Any] = {"oid": oid, "sub": oid}
            if grant.roles:
                claims["roles"] = list(grant.roles)
            return claims
        subject: dict[str, Any] = {
            "oid": grant.user.oid,
            "sub": self._pairwise_sub(grant.user, grant.resource),
            "scp": " ".join(grant.scopes),
        }
        if grant.contexts:
            subject["acrs"] = list(grant.contexts)
        return subject

    def _pairwise_sub(self, user: User, app: App) -> str:
        """Entra's `sub` is pairwise: stable for one user and one application, opaque otherwise."""
        digest = hashlib.sha256(f"{self.tenant_id}|{user.oid}|{app.client_id}".encode()).digest()
        return b64url(digest)[:43]


def encode_aio(methods: tuple[str, ...]) -> str:
    """Entra's `aio` is opaque ("resources should not use this claim"); Entra itself reads it
    back, for instance to see that MFA was done when an On-Behalf-Of assertion arrives. The
    emulator keeps the authentication methods there, behind random bytes so nobody parses it."""
    raw = json.dumps({"amr": list(methods)}, separators=(",", ":")).encode()
    return b64url(secrets.token_bytes(6)) + "." + b64url(raw)


def decode_aio(value: object) -> tuple[str, ...]:
    """The authentication methods an `aio` made by `encode_aio` carries; () for anything else."""
    if not isinstance(value, str) or "." not in value:
        return ()
    try:
        encoded = value.split(".", 1)[1]
        data = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except ValueError:
        return ()
    methods = data.get("amr") if isinstance(data, dict) else None
    if not isinstance(methods, list):
        return ()
    return tuple(m for m in methods if isinstance(m, str))


def _uti() -> str:
    return b64url(secrets.token_bytes(16))


def _rh() -> str:
    return "0.A" + b64url(secrets.token_bytes(48)) + "."
