"""`signed_claims`: a JWT's claims once its signature checks out, and nothing else checked.

Entra checks an incoming assertion's claims itself, one by one, so that each failure gets its own
AADSTS code and message; PyJWT's time, audience and issuer checks are switched off here.
"""

from __future__ import annotations

from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.types import Options

_SIGNATURE_ONLY: Final[Options] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
}


def signed_claims(token: str, key: rsa.RSAPublicKey, algorithm: str) -> dict[str, Any]:
    """The claims of `token`, signed with `algorithm` by `key`'s private half.

    Raises PyJWT's errors: `jwt.InvalidSignatureError` for a signature that does not match,
    another `jwt.PyJWTError` for a token that is not a well-formed JWT.
    """
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=[algorithm], options=_SIGNATURE_ONLY)
    return claims
