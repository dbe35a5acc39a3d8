"""The emulator's in-process handle (`app.state.entra`): tenant, keys, directory, clock.

Other emulators and tests use it directly: `entra.sign(claims)` mints a token with the tenant's
active key, `entra.keys` rotates keys, `entra.control` is the shared control plane.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from devstack.control import ControlPlane
from devstack.entra.codes import AuthorizationCodes
from devstack.entra.devicecodes import DeviceCodes
from devstack.entra.directory import Directory
from devstack.entra.grants import TokenService
from devstack.entra.keys import KeyRing
from devstack.entra.metadata import Urls
from devstack.entra.refresh import RefreshTokens
from devstack.entra.signin import PENDING_LIFETIME, SESSION_LIFETIME, Expiring, SignIn
from devstack.latency import Latency, LatencySetting
from devstack.pki import Material
from devstack.tenant import Tenant

Clock = Callable[[], float]

# Endpoint classes of the latency profiles (devstack/latency.py).
LATENCY_CLASSES = ("token", "metadata", "other")
_METADATA_PATHS = ("/.well-known/openid-configuration", "/discovery/v2.0/keys", "/discovery/keys")


def latency_class(method: str, path: str) -> str:
    """The token endpoint (v1 and v2, every grant) and the device-code endpoint, the metadata
    documents (OpenID discovery and JWKS), or anything else (user realm, sign-in pages, unknown
    paths)."""
    if path.endswith(("/oauth2/v2.0/token", "/oauth2/token", "/oauth2/v2.0/devicecode")):
        return "token"
    if path.endswith(_METADATA_PATHS):
        return "metadata"
    return "other"


class Entra:
    def __init__(
        self,
        tenant: Tenant,
        material: Material,
        *,
        base_url: str,
        clock: Clock = time.time,
        latency: LatencySetting | None = None,
    ) -> None:
        self.tenant = tenant
        self.material = material
        self.clock = clock
        self.urls = Urls(base_url, tenant.id)
        self.keys = KeyRing(material.load_signing_keys())
        self.directory = Directory(tenant)
        self.refresh_tokens = RefreshTokens(clock)
        self.codes = AuthorizationCodes(clock)
        self.device_codes = DeviceCodes(clock)
        # Browser sessions (single sign-on) and sign-ins waiting on the sign-in page.
        self.sessions: Expiring[SignIn] = Expiring(clock, SESSION_LIFETIME)
        self.pending: Expiring[Any] = Expiring(clock, PENDING_LIFETIME)
        self.control = ControlPlane(
            "entra",
            on_reset=self.reset,
            latency=Latency(
                "entra", classes=LATENCY_CLASSES, classify=latency_class, setting=latency
            ),
        )
        self.token_service = TokenService(
            directory=self.directory,
            keys=self.keys,
            urls=self.urls,
            material=material,
            refresh_tokens=self.refresh_tokens,
            codes=self.codes,
            device_codes=self.device_codes,
            clock=clock,
        )

    @property
    def base_url(self) -> str:
        return self.urls.base

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        """A JWT signed RS256 with the active key, `kid` and `x5t` in the header."""
        return self.keys.sign(claims, headers)

    def reset(self) -> None:
        self.keys.reset()
        self.directory.reset()
        self.refresh_tokens.clear()
        self.codes.clear()
        self.device_codes.clear()
        self.sessions.clear()
        self.pending.clear()
