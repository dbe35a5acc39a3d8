"""Declarative endpoint policy and the one authorisation step.

An endpoint says which domain it belongs to, whether it reads or writes, and whether it accepts
user-delegated tokens at all. `authorize` turns that and a `Principal` into a decision: reads
accept `{domain}.read` or `{domain}.readwrite`, writes need `{domain}.readwrite`; delegated mode
looks only at scopes, application mode only at app roles (the principal holds the right set).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shared.auth.errors import ApplicationOnly, InsufficientScope
from shared.auth.principal import Principal


class Access(enum.Enum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Policy:
    domain: str
    access: Access
    delegated: bool = True  # False: application tokens only

    @property
    def required(self) -> tuple[str, ...]:
        if self.access is Access.READ:
            return (f"{self.domain}.read", f"{self.domain}.readwrite")
        return (f"{self.domain}.readwrite",)


def authorize(principal: Principal, policy: Policy) -> None:
    if not principal.is_application and not policy.delegated:
        raise ApplicationOnly
    if not principal.has_any(policy.required):
        raise InsufficientScope(policy.required, application=principal.is_application)
