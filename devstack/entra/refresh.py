"""Refresh tokens: opaque strings remembered in memory, as long as the emulator runs.

A refresh token stands for a user's delegated session of one client (and how the user signed
in, so that MFA done once still counts after a refresh); it can be redeemed for any resource the
client has consent for, like Entra's multi-resource refresh tokens.

Entra's refresh tokens last 90 days of inactivity, except those sent to a `spa` redirect URI:
they live 24 hours, and the refresh tokens redeemed from them keep that first expiry.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from devstack.entra.signin import SignIn

LIFETIME_SECONDS = 90 * 24 * 3600
SPA_LIFETIME_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Session:
    sign_in: SignIn
    client_id: str
    expires_at: float
    spa: bool = False

    @property
    def user(self) -> str:
        return self.sign_in.user


class RefreshTokens:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def issue(
        self, sign_in: SignIn, client_id: str, *, spa: bool = False, expires_at: float | None = None
    ) -> tuple[str, Session]:
        """A new refresh token; `expires_at` carries a spa token's fixed expiry over."""
        token = "1.devstack." + secrets.token_urlsafe(48)
        if expires_at is None:
            expires_at = self._clock() + (SPA_LIFETIME_SECONDS if spa else LIFETIME_SECONDS)
        session = Session(sign_in, client_id, expires_at, spa)
        with self._lock:
            self._sessions[token] = session
        return token, session

    def find(self, token: str) -> Session | None:
        """The session behind a refresh token, expired or not (which stays valid after use, as
        Entra's do)."""
        with self._lock:
            return self._sessions.get(token)

    def expired(self, session: Session) -> bool:
        return session.expires_at <= self._clock()

    def seconds_left(self, session: Session) -> int:
        return max(0, int(session.expires_at - self._clock()))

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
