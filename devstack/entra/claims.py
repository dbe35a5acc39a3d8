"""The `claims` request parameter: what a client asks to find in the access token.

Clients send it after a claims challenge (`claims_challenge=` in MSAL) and to declare what they
can handle (MSAL's `client_capabilities` become `xms_cc`). The parts the emulator acts on:

    {"access_token": {
        "capolids": {"essential": true, "values": ["<policy id>"]},  conditional access: satisfy
                                                                     these policies (MFA)
        "acrs": {"essential": true, "value": "c1"},                  authentication context(s):
                                                                     the token then carries acrs
        "xms_cc": {"values": ["cp1"]}}}                              client capabilities

Anything else is accepted and ignored, as Entra ignores claims it cannot issue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from devstack.entra.errors import InvalidRequest


@dataclass(frozen=True)
class ClaimsRequest:
    policies: tuple[str, ...] = ()  # conditional-access policy ids to satisfy
    contexts: tuple[str, ...] = ()  # authentication context class references (acrs)
    capabilities: tuple[str, ...] = ()  # xms_cc

    @property
    def step_up(self) -> bool:
        """Whether the user must complete a second factor for it."""
        return bool(self.policies or self.contexts)


def parse_claims(raw: str | None) -> ClaimsRequest:
    if not raw:
        return ClaimsRequest()
    try:
        document = json.loads(raw)
    except ValueError:
        raise _malformed() from None
    if not isinstance(document, dict):
        raise _malformed()
    access = document.get("access_token") or {}
    if not isinstance(access, dict):
        raise _malformed()
    return ClaimsRequest(
        policies=_values(access.get("capolids")),
        contexts=_values(access.get("acrs")),
        capabilities=_values(access.get("xms_cc")),
    )


def _values(entry: Any) -> tuple[str, ...]:
    if not isinstance(entry, dict):
        return ()
    values = entry.get("values")
    if values is None and "value" in entry:
        values = [entry["value"]]
    if not isinstance(values, list):
        return ()
    return tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def _malformed() -> InvalidRequest:
    return InvalidRequest(
        90100, "The claims parameter is not valid JSON: it must be a JSON object."
    )
