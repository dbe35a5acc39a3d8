"""The device authorization grant (RFC 8628) as Entra runs it.

`/devicecode` starts a flow: a long `device_code` for the client to poll with, a short
`user_code` for the person to type at `/devicelogin`, 15 minutes to do it (`expires_in` 900) and
a polling `interval` of 5 seconds. Until the person signs in, polls answer
`authorization_pending`; a poll sooner than `interval` after the previous one answers
`slow_down` (RFC 8628 §3.5; MSAL then adds 5 s to its interval); after expiry `expired_token`;
after the person cancels `authorization_declined`. An approved flow is redeemed once.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from devstack.entra.errors import (
    AuthorizationDeclined,
    AuthorizationPending,
    BadVerificationCode,
    ExpiredToken,
    InvalidGrant,
    SlowDown,
)
from devstack.entra.signin import SignIn

EXPIRES_IN = 15 * 60
INTERVAL = 5
USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud, typed by hand
USER_CODE_LENGTH = 9

PENDING, APPROVED, DECLINED, REDEEMED = "pending", "approved", "declined", "redeemed"


@dataclass(frozen=True)
class DeviceFlow:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    claims: str | None
    expires_at: float
    state: str = PENDING
    sign_in: SignIn | None = None
    last_poll: float | None = None


class DeviceCodes:
    def __init__(self, clock: Callable[[], float], *, interval: int = INTERVAL) -> None:
        self._clock = clock
        self.interval = interval
        self._lock = threading.Lock()
        self._flows: dict[str, DeviceFlow] = {}  # by device_code

    def start(self, client_id: str, scope: str, claims: str | None) -> DeviceFlow:
        now = self._clock()
        flow = DeviceFlow(
            device_code="1.devstack.device." + secrets.token_urlsafe(48),
            user_code="".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH)),
            client_id=client_id,
            scope=scope,
            claims=claims,
            expires_at=now + EXPIRES_IN,
        )
        with self._lock:
            self._flows = {k: f for k, f in self._flows.items() if f.expires_at > now}
            self._flows[flow.device_code] = flow
        return flow

    def by_user_code(self, user_code: str) -> DeviceFlow | None:
        """A pending, unexpired flow for the code the person typed (case and spaces ignored)."""
        wanted = "".join(user_code.split()).upper()
        now = self._clock()
        with self._lock:
            return next(
                (
                    f
                    for f in self._flows.values()
                    if f.user_code == wanted and f.state == PENDING and f.expires_at > now
                ),
                None,
            )

    def decide(self, device_code: str, sign_in: SignIn | None) -> None:
        """The person signed in (`sign_in`) or cancelled (None)."""
        with self._lock:
            flow = self._flows.get(device_code)
            if flow is not None and flow.state == PENDING:
                state = APPROVED if sign_in else DECLINED
                self._flows[device_code] = replace(flow, state=state, sign_in=sign_in)

    def poll(self, device_code: str, client_id: str) -> DeviceFlow:
        """The approved flow (now redeemed), or the polling answer Entra gives."""
        now = self._clock()
        with self._lock:
            flow = self._flows.get(device_code)
            if flow is None or flow.client_id != client_id:
                raise BadVerificationCode(70018, "The provided device code is not valid.")
            if flow.expires_at <= now:
                raise ExpiredToken(
                    70019, "Verification code expired. Have the user retry the sign-in."
                )
            too_soon = flow.last_poll is not None and now - flow.last_poll < self.interval
            self._flows[device_code] = replace(flow, last_poll=now)
            if flow.state == DECLINED:
                raise AuthorizationDeclined(70000, "The end user declined the authorization.")
            if flow.state == REDEEMED:
                raise InvalidGrant(
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new "
                    "valid code or use an existing refresh token.",
                )
            if flow.state == PENDING:
                if too_soon:
                    raise SlowDown(
                        70016,
                        f"OAuth 2.0 device flow error. Polled sooner than the interval of "
                        f"{self.interval} seconds: slow down.",
                    )
                raise AuthorizationPending(
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )
            self._flows[device_code] = replace(flow, state=REDEEMED, last_poll=now)
            return flow

    def clear(self) -> None:
        with self._lock:
            self._flows.clear()
