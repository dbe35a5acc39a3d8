"""One token builder for the demo tenant, plus named evil variants.

`TokenBuilder.claims()` is the claim set Entra puts in an access token for the central API (v1
or v2, delegated or application, as devstack/entra/tokens.py issues them); `sign()` signs any
header and payload with the tenant's active key, taken from the Entra emulator's key ring, so a
claim-level case is exactly what the tenant itself could have issued. The evil variants below
change one thing each, and their names say what.

`compact()` assembles a token from raw parts, for cases that are about the encoding rather
than the claims (duplicate JSON members, odd base64, extra segments).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devstack.entra.emulator import Entra
from devstack.entra.tokens import service_principal_oid
from devstack.pki import SigningKey

# What the demo tenant's consent gives Alice through the portal (devstack/tenant.toml).
PORTAL_SCOPES = "customer.read customer.readwrite case.read case.readwrite"
OTHER_TENANT = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def b64(data: bytes | str | dict[str, Any] | list[Any]) -> str:
    """base64url without padding, of bytes, text, or a value as compact JSON."""
    if isinstance(data, dict | list):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(header: Any, payload: Any, signature: bytes | str = b"") -> str:
    """`header.payload.signature`; JSON values are encoded, strings are used as given."""
    parts = [p if isinstance(p, str) else b64(p) for p in (header, payload)]
    parts.append(signature if isinstance(signature, str) else b64(signature))
    return ".".join(parts)


def signature(alg: str, key: Any, signing_input: bytes) -> bytes:
    """RS*/PS* with an RSA private key, HS* with a byte secret, nothing for `none`."""
    family, bits = alg[:2].upper(), alg[2:]
    if family == "HS":
        return hmac.new(key, signing_input, getattr(hashlib, f"sha{bits}")).digest()
    if family == "RS":
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(signing_input, padding.PKCS1v15(), _HASHES[bits]())
    if family == "PS":
        assert isinstance(key, rsa.RSAPrivateKey)
        scheme = padding.PSS(padding.MGF1(_HASHES[bits]()), padding.PSS.DIGEST_LENGTH)
        return key.sign(signing_input, scheme, _HASHES[bits]())
    return b""


@dataclass(frozen=True)
class TokenBuilder:
    entra: Entra  # the emulator's in-process handle: tenant, issuer URLs, key ring

    # --- the genuine article ------------------------------------------------------------------

    @property
    def api_client_id(self) -> str:
        return self.entra.tenant.app("central-api").client_id

    @property
    def key(self) -> SigningKey:
        """The tenant's signing key right now."""
        return self.entra.keys.active

    def claims(
        self,
        user: str | None = "alice",
        client: str = "portal",
        *,
        version: int = 2,
        scopes: str = PORTAL_SCOPES,
        roles: tuple[str, ...] = ("vehicle.readwrite", "customer.read"),
        lifetime: int = 3600,
    ) -> dict[str, Any]:
        """An access token's claims for the central API: `user` signed in through `client`
        (scopes), or with `user=None` app `client`'s own token (roles)."""
        tenant = self.entra.tenant
        client_id = tenant.app(client).client_id
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": self.api_client_id if version == 2 else f"api://{self.api_client_id}",
            "iss": self.entra.urls.issuer(version),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
        }
        if version == 2:
            claims.update(azp=client_id, azpacr="0" if user else "1")
        else:
            claims.update(appid=client_id, appidacr="0" if user else "1")
        if user is None:
            oid = service_principal_oid(tenant.id, tenant.app(client))
            claims.update(oid=oid, sub=oid, roles=list(roles))
        else:
            claims.update(oid=tenant.user(user).oid, sub=uuid.uuid4().hex, scp=scopes)
        claims.update(tid=tenant.id, uti=uuid.uuid4().hex, ver=f"{version}.0")
        claims["idtyp"] = "app" if user is None else "user"
        return claims

    def sign(
        self,
        claims: dict[str, Any] | bytes,
        headers: dict[str, Any] | None = None,
        *,
        alg: str = "RS256",
        key: Any = None,
    ) -> str:
        """Signed with the tenant's active key (or `key`); header members set to None in
        `headers` are left out. Bytes are signed as the payload exactly as given."""
        active = self.key
        header: dict[str, Any] = {"typ": "JWT", "alg": alg, "kid": active.kid, "x5t": active.x5t}
        header.update(headers or {})
        header = {k: v for k, v in header.items() if v is not None}
        payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
        signing_input = f"{b64(header)}.{b64(payload)}".encode("ascii")
        return compact(b64(header), b64(payload), signature(alg, key or active.key, signing_input))

    def token(self, user: str | None = "alice", client: str = "portal", **claims: Any) -> str:
        """A valid token; keyword arguments replace claims (None removes one)."""
        body = self.claims(user, client)
        body.update(claims)
        return self.sign({k: v for k, v in body.items() if v is not None})

    def app_token(self, client: str = "dealer-sync", **claims: Any) -> str:
        return self.token(None, client, **claims)

    # --- evil variants: claims ----------------------------------------------------------------

    def expired(self, by: int = 3600) -> str:
        now = int(time.time())
        return self.token(iat=now - by - 3600, nbf=now - by - 3600, exp=now - by)

    def not_yet_valid(self, by: int = 3600) -> str:
        now = int(time.time())
        return self.token(nbf=now + by, exp=now + by + 3600)

    def issued_in_future(self, by: int = 3600) -> str:
        return self.token(iat=int(time.time()) + by)

    def nbf_after_exp(self) -> str:
        now = int(time.time())
        return self.token(nbf=now + 60, exp=now + 30)

    def wrong_audience(self, aud: Any = "6f0e1d2c-3b4a-4596-8776-a5b4c3d2e1f0") -> str:
        return self.token(aud=aud)

    def wrong_issuer(self, iss: Any = "https://login.example.net/evil/v2.0") -> str:
        return self.token(iss=iss)

    def other_tenant(self, tid: str = OTHER_TENANT) -> str:
        """As a genuine token from another tenant reads: its own `tid` and issuer."""
        return self.token(tid=tid, iss=self.entra.urls.issuer(2).replace(self.entra.tenant.id, tid))

    def without(self, *names: str) -> str:
        return self.token(**dict.fromkeys(names))

    # --- evil variants: mode ------------------------------------------------------------------

    def user_with_roles_only(
        self,
        user: str = "alice",
        client: str = "portal",
        *,
        version: int = 2,
        roles: tuple[str, ...] = ("vehicle.readwrite", "customer.read"),
    ) -> str:
        """A user's token (her `oid`, a pairwise `sub`) carrying app roles, and neither `scp`
        nor `idtyp`: what an API that reads "roles and no scp" as an app token would take for
        the application's own."""
        body = self.claims(user, client, version=version)
        body.update(roles=list(roles))
        return self.sign({k: v for k, v in body.items() if k not in ("scp", "idtyp")})

    def app_token_from_public_client(self, client: str = "dealer-sync", *, version: int = 2) -> str:
        """An app token whose client authenticated as a public client (`azpacr`/`appidacr` 0),
        which Entra never issues: client credentials need a secret or a certificate."""
        body = self.claims(None, client, version=version)
        body["azpacr" if version == 2 else "appidacr"] = "0"
        return self.sign(body)

    # --- evil variants: header and signature --------------------------------------------------

    def alg_none(self, spelling: str = "none", *, signed: bool = False) -> str:
        token = self.sign(self.claims(), {"alg": spelling})
        if signed:  # a genuine RS256 signature left in place
            genuine = self.token().rsplit(".", 1)[1]
            token = token.rsplit(".", 1)[0] + "." + genuine
        return token

    def other_algorithm(self, alg: str) -> str:
        """Signed by the tenant's own key, with another algorithm (RS384, PS256, ...)."""
        return self.sign(self.claims(), alg=alg)

    def hs256_with_public_key(self, form: str, alg: str = "HS256") -> str:
        """Algorithm confusion: HMAC keyed with the tenant's *public* key in a published form
        (`pem`, `pkcs1`, `certificate`, `jwk`, `der`)."""
        return self.sign(self.claims(), alg=alg, key=self.public_key_bytes(form))

    def public_key_bytes(self, form: str) -> bytes:
        public = self.key.key.public_key()
        encoding = serialization.Encoding
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        forms = {
            "pem": lambda: public.public_bytes(encoding.PEM, spki),
            "pkcs1": lambda: public.public_bytes(encoding.PEM, serialization.PublicFormat.PKCS1),
            "certificate": lambda: self.key.cert.public_bytes(encoding.PEM),
            "jwk": lambda: json.dumps(self.key.jwk()).encode(),
            "der": lambda: public.public_bytes(encoding.DER, spki),
        }
        return forms[form]()

    def signed_by_stranger(self, stranger: rsa.RSAPrivateKey, **headers: Any) -> str:
        """Another RSA key's signature under the tenant's real `kid` (unless `headers` say
        otherwise)."""
        return self.sign(self.claims(), headers, key=stranger)

    def with_kid(self, kid: Any) -> str:
        """Signed by the tenant's key, but naming `kid` (None: no kid at all)."""
        return self.sign(self.claims(), {"kid": kid, "x5t": None})
