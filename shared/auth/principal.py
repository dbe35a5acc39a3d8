"""Who is calling, decided once from the validated token.

Handlers and services see a `Principal`, never raw claims. In user-delegated mode `permissions`
holds the token's delegated scopes (`scp`); in application mode its app roles (`roles`). A
user token's `roles` (user app roles) are deliberately ignored: delegated endpoints authorise on
scopes only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Mode(enum.Enum):
    USER = "user"
    APPLICATION = "application"


@dataclass(frozen=True, slots=True)
class Principal:
    mode: Mode
    oid: str
    tid: str
    client_app_id: str
    permissions: frozenset[str]
    expires_at: int

    @property
    def is_application(self) -> bool:
        return self.mode is Mode.APPLICATION

    def has_any(self, required: Iterable[str]) -> bool:
        """Exact matches only: `customer.readx` does not satisfy `customer.read`."""
        return not self.permissions.isdisjoint(required)
