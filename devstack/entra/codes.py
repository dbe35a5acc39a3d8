"""Authorization codes: single use, short lived, bound to a client, a redirect URI and (PKCE)
a code challenge.

Entra's codes last "about 10 minutes"; a second redemption is AADSTS54005, a late one AADSTS70008.
Redeemed codes are remembered until they would have expired, so that a replay gets 54005 rather
than "unknown".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from devstack.entra.errors import InvalidGrant, InvalidRequest
from devstack.entra.signin import SignIn

LIFETIME_SECONDS = 10 * 60
CHALLENGE_METHODS = ("plain", "S256")


@dataclass(frozen=True)
class IssuedCode:
    client_id: str
    redirect_uri: str  # as the authorize request sent it
    platform: str  # of the registered redirect URI it matched
    scope: str
    sign_in: SignIn
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str


def check_challenge(challenge: str | None, method: str | None) -> str:
    """The method to apply (Entra's default is `plain` when only a challenge is sent)."""
    chosen = method or "plain"
    if challenge is None:
        if method is not None:
            raise InvalidRequest(
                900144, "The request body must contain the following parameter: 'code_challenge'."
            )
        return chosen
    if chosen not in CHALLENGE_METHODS:
        raise InvalidRequest(50149, "Invalid Code_Challenge_method parameter.")
    if not 43 <= len(challenge) <= 128:
        raise InvalidRequest(501491, "Invalid size of Code_Challenge parameter.")
    return chosen


def verify_pkce(code: IssuedCode, verifier: str | None) -> None:
    if code.code_challenge is None:
        return
    if not verifier:
        raise InvalidGrant(
            50148,
            "The code_verifier does not match the code_challenge supplied in the authorization "
            "request for PKCE.",
        )
    if code.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        derived = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    else:
        derived = verifier
    if not hmac.compare_digest(derived.encode(), code.code_challenge.encode()):
        raise InvalidGrant(
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization "
            "request.",
        )


class AuthorizationCodes:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # code -> (expires_at, issued, redeemed)
        self._codes: dict[str, tuple[float, IssuedCode, bool]] = {}

    def issue(self, issued: IssuedCode) -> str:
        code = "1.devstack.code." + secrets.token_urlsafe(48)
        now = self._clock()
        with self._lock:
            self._codes = {k: v for k, v in self._codes.items() if v[0] > now - LIFETIME_SECONDS}
            self._codes[code] = (now + LIFETIME_SECONDS, issued, False)
        return code

    def redeem(self, code: str) -> IssuedCode:
        """The code's grant, now used up; or Entra's refusal."""
        now = self._clock()
        with self._lock:
            entry = self._codes.get(code)
            if entry is None:
                raise InvalidGrant(
                    9002313,
                    "Invalid request. Request is malformed or invalid. The authorization code is "
                    "not valid.",
                )
            expires_at, issued, redeemed = entry
            if redeemed:
                raise InvalidGrant(
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new "
                    "valid code or use an existing refresh token.",
                )
            if expires_at <= now:
                raise InvalidGrant(
                    70008,
                    "The provided authorization code or refresh token has expired due to "
                    "inactivity. Send a new interactive authorization request for this user and "
                    "resource.",
                )
            self._codes[code] = (expires_at, issued, True)
        return issued

    def clear(self) -> None:
        with self._lock:
            self._codes.clear()
