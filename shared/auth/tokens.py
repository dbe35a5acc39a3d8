"""Access-token validation: verify the signature first, then check the claims as a checklist.

Follows Microsoft's "Validate tokens" guidance and RFC 8725: RS256 only, whatever the header
says; keys only from the tenant's published set; `exp`, `nbf`, `iat`, `iss`, `aud`, `tid`
required; v1 and v2 tokens, each with its own issuer and audience form; the configured tenant
only. Anything odd in the encoding (extra segments, anything but canonical unpadded base64url,
duplicate JSON keys, a `crit` header) is a rejection, not a best-effort parse: a token has one
spelling, so that no other spelling of a valid token gets past us to fail at Entra.

The mode (user-delegated or application) is decided once, as Microsoft's guidance decides it:
`idtyp` when the token has it; without it, an application token is one with no `scp` whose `sub`
is its `oid` (an app token's `sub` is the service principal's object id; a user's `sub` is
pairwise, never her `oid`). A token that fits neither mode is invalid, however many `roles` it
carries: roles never turn a user's token (or an ID token) into the application's.

A token that passed is remembered (`shared.auth.validated`) until its `exp` or until the key set
changes, so a client calling again with the same token costs a SHA-256 instead of an RSA verify.
cryptography is imported at the first verification, not at start-up.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import string
import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from shared.auth.errors import InvalidToken
from shared.auth.keys import SigningKeys
from shared.auth.principal import Mode, Principal
from shared.auth.validated import ValidatedTokens, token_digest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

MAX_TOKEN_LENGTH = 32 * 1024
# Used with fullmatch: `$` would also match before a final newline.
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_KID = re.compile(r"[A-Za-z0-9_\-+/=.]{1,128}")
# Canonical base64url (RFC 7515 section 2, RFC 4648 sections 3.5 and 5): no padding, and the
# unused low bits of a final 2- or 3-character group (4 or 2 bits) are zero, so its last
# character is every 16th or every 4th of the alphabet. Any other is a second spelling of the
# same bytes: 16 of them for a 256-byte signature.
_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
_CANONICAL_LAST = {2: frozenset(_ALPHABET[::16]), 3: frozenset(_ALPHABET[::4])}
# `azpacr` (v2) / `appidacr` (v1): how the client authenticated. "0" is a public client, which
# can never get an app token: client credentials need a secret ("1") or a certificate ("2").
_CONFIDENTIAL = ("1", "2")


class _RS256:
    """RSASSA-PKCS1-v1_5 with SHA-256; the padding and hash objects are stateless, made once."""

    def __init__(self) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        self._invalid = InvalidSignature
        self._padding = padding.PKCS1v15()
        self._hash = hashes.SHA256()

    def verifies(self, key: RSAPublicKey, signature: bytes, signed: bytes) -> bool:
        try:
            key.verify(signature, signed, self._padding, self._hash)
        except self._invalid:
            return False
        return True


@cache
def _rs256() -> _RS256:
    return _RS256()


def _b64decode(segment: str, what: str) -> bytes:
    if not _B64URL.fullmatch(segment):
        raise InvalidToken(f"{what} is not base64url")
    tail = len(segment) % 4
    if tail == 1 or (tail and segment[-1] not in _CANONICAL_LAST[tail]):
        raise InvalidToken(f"{what} is not canonical base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken(f"{what} is not base64url") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidToken(f"duplicate JSON member {key!r}")
            seen.add(key)
    return result


def _no_constant(name: str) -> Any:
    raise InvalidToken(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise InvalidToken("a number is out of range")
    return value


# One decoder, made once (json.loads with options builds a new one per call). It takes text, so
# a segment must be UTF-8: json.loads would also have guessed UTF-16 and skipped a BOM.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite
)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
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
    try:
        return float(value)
    except OverflowError:
        raise InvalidToken(f"claim {name} is out of range") from None


def _mode(claims: dict[str, Any], *, scp: str | None, oid: str) -> Mode:
    """User-delegated or application: `idtyp` if present, else `scp`, else `sub` == `oid`."""
    idtyp = claims.get("idtyp")
    if idtyp == "app":
        return Mode.APPLICATION
    if idtyp == "user":
        return Mode.USER
    if idtyp is not None:
        raise InvalidToken("idtyp is neither app nor user")
    if scp is not None:
        return Mode.USER
    if claims.get("sub") == oid:
        return Mode.APPLICATION
    raise InvalidToken("no idtyp, no scp and sub is not oid: neither a user's nor an app's token")


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
        cache_size: int = 10_000,
    ) -> None:
        self._keys = keys
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._audiences_v1 = {client_id, f"api://{client_id}"}
        self._skew = clock_skew
        self._clock = clock
        self._cache = ValidatedTokens(cache_size) if cache_size > 0 else None
        self.verifications = 0  # signature checks done (tests and benchmarks)

    @property
    def cached_tokens(self) -> int:
        return len(self._cache) if self._cache is not None else 0

    def validate(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
        if self._cache is None:
            return self._validate(token)[0]
        digest = token_digest(token)
        # The keys without a first load: no keys yet means nothing can be cached, and a
        # malformed token must still be told so even while the key endpoint is down. Keys past
        # their grace period give None too, so a remembered token is refused with them.
        snapshot = self._keys.loaded()
        if snapshot is not None:
            seen = self._cache.get(digest, now=self._clock(), version=snapshot.version)
            if seen is not None:
                return seen
        principal, version = self._validate(token)
        self._cache.put(digest, principal, now=self._clock(), version=version)
        return principal

    def _validate(self, token: str) -> tuple[Principal, int]:
        """The principal, and the key-set version its signature was checked against."""
        segments = token.split(".")
        if len(segments) != 3:
            raise InvalidToken(f"token has {len(segments)} segments, not 3")
        header_b64, payload_b64, signature_b64 = segments
        header_raw = _b64decode(header_b64, "header")
        payload_raw = _b64decode(payload_b64, "payload")  # parsed only once it is verified
        signature = _b64decode(signature_b64, "signature")
        header = _json_object(header_raw, "header")
        if header.get("alg") != "RS256":
            raise InvalidToken("algorithm is not RS256")
        if "crit" in header:
            raise InvalidToken("crit header is not supported")
        kid = header.get("kid")
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise InvalidToken("kid missing or malformed")

        key, snapshot = self._keys.key(kid)
        if key is None:
            raise InvalidToken("kid not in the tenant's key set")
        self.verifications += 1
        if not _rs256().verifies(key, signature, f"{header_b64}.{payload_b64}".encode("ascii")):
            raise InvalidToken("signature does not verify")

        claims = _json_object(payload_raw, "payload")
        principal = self._check_claims(claims, token, snapshot.issuer_v1, snapshot.issuer_v2)
        return principal, snapshot.version

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

        mode = _mode(claims, scp=scp, oid=oid)
        if mode is Mode.APPLICATION:
            if scp is not None:
                raise InvalidToken("application token carries scp")
            acr = claims.get("azpacr" if version == "2.0" else "appidacr")
            if acr is not None and acr not in _CONFIDENTIAL:
                raise InvalidToken("application token for a public client")
            permissions = frozenset(roles or ())
        else:
            if scp is None:
                raise InvalidToken("user token without scp")
            permissions = frozenset(scp.split())  # a user's `roles` never count
        return Principal(
            mode=mode,
            oid=oid,
            tid=tid,
            client_app_id=client,
            permissions=permissions,
            expires_at=int(exp),
        )
