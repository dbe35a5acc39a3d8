"""Refresh tokens: opaque strings remembered in memory, as long as the emulator runs.

A refresh token stands for a user's delegated session of one client; it can be redeemed for any
resource the client has consent for, like Entra's multi-resource refresh tokens.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

# Entra's refresh tokens last 90 days of inactivity (24 h for single-page apps).
LIFETIME_SECONDS = 90 * 24 * 3600


@dataclass(frozen=True)
class Session:
    user: str  # the user's short name in the tenant
    client_id: str
    expires_at: float


class RefreshTokens:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def issue(self, user: str, client_id: str) -> str:
        token = "1.devstack." + secrets.token_urlsafe(48)
        with self._lock:
            self._sessions[token] = Session(user, client_id, self._clock() + LIFETIME_SECONDS)
        return token

    def redeem(self, token: str) -> Session | None:
        """The session behind a live refresh token (which stays valid, as Entra's do)."""
        with self._lock:
            session = self._sessions.get(token)
            if session is None or session.expires_at <= self._clock():
                return None
            return session

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
