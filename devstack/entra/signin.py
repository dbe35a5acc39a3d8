"""Interactive sign-in state: how a user signed in, the browser's single-sign-on session, and
the authorize requests waiting for the user on the sign-in page.

`SignIn` travels from the sign-in page into authorization codes, device-code approvals and
refresh tokens, and from there into tokens: `methods` become `amr` (v1 tokens) and, for v2
tokens, Entra's opaque `aio` (the On-Behalf-Of exchange reads them back to decide whether a
conditional-access policy demanding MFA is met); `contexts` become `acrs`.

Sessions and pending requests live in memory, bounded by their lifetimes; an emulator restart
signs everybody out, as clearing the browser's cookies would.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from devstack.entra.directory import Directory
from devstack.entra.errors import InvalidGrant
from devstack.pki import Material
from devstack.tenant import User

PASSWORD = "pwd"
MFA = "mfa"
SESSION_COOKIE = "devstack_entra_session"  # Entra's is ESTSAUTH
SESSION_LIFETIME = 24 * 3600
PENDING_LIFETIME = 15 * 60  # how long the sign-in page stays usable

T = TypeVar("T")


@dataclass(frozen=True)
class SignIn:
    user: str  # the user's short name in the tenant
    methods: tuple[str, ...] = (PASSWORD,)  # amr values
    contexts: tuple[str, ...] = ()  # authentication contexts satisfied (acrs)

    @property
    def mfa(self) -> bool:
        return MFA in self.methods

    def stepped_up(self, contexts: tuple[str, ...]) -> SignIn:
        """The same sign-in after a second factor, satisfying `contexts` as well."""
        return SignIn(
            self.user,
            tuple(dict.fromkeys((*self.methods, MFA))),
            tuple(dict.fromkeys((*self.contexts, *contexts))),
        )


def check_password(directory: Directory, material: Material, username: str, password: str) -> User:
    """The user these credentials are; Entra's refusal (AADSTS50034, 50126) otherwise. The
    password grant and the sign-in page both ask it."""
    user = directory.user_by_upn(username)
    if user is None:
        raise InvalidGrant(
            50034,
            f"The user account {{EmailHidden}} does not exist in the {directory.tenant.id} "
            "directory. To sign into this application, the account must be added to the "
            "directory.",
        )
    expected = material.password(user.name)
    if not hmac.compare_digest(password.encode(), expected.encode()):
        raise InvalidGrant(
            50126, "Error validating credentials due to invalid username or password."
        )
    return user


class Expiring(Generic[T]):
    """Opaque, unguessable handles to values that expire (thread-safe)."""

    def __init__(self, clock: Callable[[], float], lifetime: float, prefix: str = "") -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._prefix = prefix
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, T]] = {}

    def add(self, value: T) -> str:
        handle = self._prefix + secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._items = {k: v for k, v in self._items.items() if v[0] > now}
            self._items[handle] = (now + self._lifetime, value)
        return handle

    def get(self, handle: str | None) -> T | None:
        if not handle:
            return None
        with self._lock:
            item = self._items.get(handle)
        if item is None or item[0] <= self._clock():
            return None
        return item[1]

    def replace(self, handle: str, value: T) -> None:
        with self._lock:
            if handle in self._items:
                self._items[handle] = (self._items[handle][0], value)

    def discard(self, handle: str | None) -> None:
        with self._lock:
            self._items.pop(handle or "", None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
