"""Access-token validation: verify the signature first, then check the claims as a checklist.

Follows Microsoft's "Validate tokens" guidance and RFC 8725: RS256 only, whatever the header
says; keys only from the tenant's published set; `exp`, `nbf`, `iat`, `iss`, `aud`, `tid`
required; v1 and v2 tokens, each with its own issuer and audience form; the configured tenant
only. Anything odd in the encoding (extra segments, non-base64url characters, duplicate JSON
keys, a `crit` header) is a rejection, not a best-effort parse.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from shared.auth.errors import InvalidToken
from shared.auth.keys import SigningKeys
from shared.auth.principal import Mode, Principal

MAX_TOKEN_LENGTH = 32 * 1024
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_KID = re.compile(r"^[A-Za-z0-9_\-+/=.]{1,128}$")


def _b64decode(segment: str, what: str) -> bytes:
    if not _B64URL.match(segment) or len(segment) % 4 == 1:
        raise InvalidToken(f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken(f"{what} is not base64url") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidToken(f"duplicate JSON member {key!r}")
        result[key] = value
    return result


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicates)
    except InvalidToken:
        raise
    except (ValueError, RecursionError):
        raise InvalidToken(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"{what} is not a JSON object")
    return value


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if value is None:
        raise InvalidToken(f"claim {name} is missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"claim {name} is not a number")
    return float(value)


def _string(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if value is None:
        raise InvalidToken(f"claim {name} is missing")
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"claim {name} is not a string")
    return value


class TokenValidator:
    def __init__(
        self,
        keys: SigningKeys,
        *,
        tenant_id: str,
        client_id: str,
        clock_skew: int = 120,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._audiences_v1 = {client_id, f"api://{client_id}"}
        self._skew = clock_skew
        self._clock = clock

    def validate(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
        segments = token.split(".")
        if len(segments) != 3:
            raise InvalidToken(f"token has {len(segments)} segments, not 3")
        header_b64, payload_b64, signature_b64 = segments
        header = _json_object(_b64decode(header_b64, "header"), "header")
        if header.get("alg") != "RS256":
            raise InvalidToken("algorithm is not RS256")
        if "crit" in header:
            raise InvalidToken("crit header is not supported")
        kid = header.get("kid")
        if not isinstance(kid, str) or not _KID.match(kid):
            raise InvalidToken("kid missing or malformed")
        signature = _b64decode(signature_b64, "signature")

        key, snapshot = self._keys.key(kid)
        if key is None:
            raise InvalidToken("kid not in the tenant's key set")
        try:
            key.verify(
                signature,
                f"{header_b64}.{payload_b64}".encode("ascii"),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise InvalidToken("signature does not verify") from None

        claims = _json_object(_b64decode(payload_b64, "payload"), "payload")
        return self._check_claims(claims, token, snapshot.issuer_v1, snapshot.issuer_v2)

    def _check_claims(
        self, claims: dict[str, Any], token: str, issuer_v1: str, issuer_v2: str
    ) -> Principal:
        now = self._clock()
        exp, nbf, iat = _number(claims, "exp"), _number(claims, "nbf"), _number(claims, "iat")
        if exp <= now - self._skew:
            raise InvalidToken("token expired")
        if nbf > now + self._skew:
            raise InvalidToken("token not yet valid")
        if iat > now + self._skew:
            raise InvalidToken("token issued in the future")
        if nbf > exp:
            raise InvalidToken("nbf after exp")

        tid = _string(claims, "tid")
        if tid != self._tenant_id:
            raise InvalidToken("token from another tenant")
        iss, aud = _string(claims, "iss"), _string(claims, "aud")
        version = claims.get("ver")
        if version == "2.0":
            if iss != issuer_v2.replace("{tenantid}", tid):
                raise InvalidToken("issuer is not the tenant's v2 issuer")
            if aud != self._client_id:
                raise InvalidToken("audience is not this API")
        elif version == "1.0":
            if iss != issuer_v1.replace("{tenantid}", tid):
                raise InvalidToken("issuer is not the tenant's v1 issuer")
            if aud not in self._audiences_v1:
                raise InvalidToken("audience is not this API")
        else:
            raise InvalidToken("unknown token version")

        scp = claims.get("scp")
        roles = claims.get("roles")
        if scp is not None and not isinstance(scp, str):
            raise InvalidToken("scp is not a string")
        if roles is not None and (
            not isinstance(roles, list) or not all(isinstance(r, str) for r in roles)
        ):
            raise InvalidToken("roles is not a list of strings")
        client = claims.get("azp") if version == "2.0" else claims.get("appid")
        if not isinstance(client, str) or not client:
            raise InvalidToken("client app id missing")
        oid = _string(claims, "oid")

        if claims.get("idtyp") == "app" or (roles and scp is None):
            if scp is not None:
                raise InvalidToken("application token carries scp")
            return Principal(
                mode=Mode.APPLICATION,
                oid=oid,
                tid=tid,
                client_app_id=client,
                permissions=frozenset(roles or ()),
                expires_at=int(exp),
                token=token,
            )
        if scp is not None:
            return Principal(
                mode=Mode.USER,
                oid=oid,
                tid=tid,
                client_app_id=client,
                permissions=frozenset(scp.split()),
                expires_at=int(exp),
                token=token,
            )
        raise InvalidToken("token carries neither scp nor roles")
