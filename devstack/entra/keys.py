"""The token-signing key ring: what the JWKS publishes and which key signs.

Entra rolls its keys over by publishing a new key well before it starts signing with it, then
dropping the old one. The ring models exactly that: `add` publishes a key that does not sign yet,
`promote` makes a published key the signing key, `retire` unpublishes a key (tokens it signed stop
validating). `reset` goes back to the keys the emulator started with.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import jwt

from devstack.entra.errors import ControlError
from devstack.pki import SigningKey

_JWS = jwt.PyJWS()


class KeyRing:
    def __init__(self, initial: list[SigningKey]) -> None:
        if not initial:
            raise ValueError("the key ring needs at least one signing key")
        self._initial = list(initial)
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = list(initial)
        self._active = initial[0].kid

    # --- reading ------------------------------------------------------------------------------

    @property
    def active(self) -> SigningKey:
        with self._lock:
            return next(k for k in self._keys if k.kid == self._active)

    def published(self) -> list[SigningKey]:
        with self._lock:
            return list(self._keys)

    def find(self, kid: str) -> SigningKey | None:
        with self._lock:
            return next((k for k in self._keys if k.kid == kid), None)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.published()]}

    def describe(self) -> list[dict[str, Any]]:
        """For the control plane: public facts only, never key material."""
        with self._lock:
            return [
                {"kid": k.kid, "x5t": k.x5t, "active": k.kid == self._active} for k in self._keys
            ]

    # --- signing ------------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        """RS256 with the active key; `kid`, `x5t` and `typ` set unless `headers` overrides them.

        Claims are signed as given, without the type checks `jwt.encode` applies, so tests can
        mint claim-level evil tokens. `headers={"alg": "PS256"}` signs with another RSA
        algorithm; `{"alg": "none"}` gives an unsigned token.
        """
        key = self.active
        header: dict[str, Any] = {"typ": "JWT", "kid": key.kid, "x5t": key.x5t}
        header.update(headers or {})
        algorithm = str(header.pop("alg", "RS256"))
        payload = json.dumps(claims, separators=(",", ":")).encode()
        signer: Any = "" if algorithm == "none" else key.key
        return _JWS.encode(payload, signer, algorithm=algorithm, headers=header)

    # --- rotation -----------------------------------------------------------------------------

    def add(self, key: SigningKey | None = None) -> SigningKey:
        new = key or SigningKey.generate()
        with self._lock:
            self._keys.append(new)
        return new

    def promote(self, kid: str) -> None:
        with self._lock:
            if not any(k.kid == kid for k in self._keys):
                raise ControlError(f"no published key with kid {kid!r}")
            self._active = kid

    def retire(self, kid: str) -> None:
        with self._lock:
            if not any(k.kid == kid for k in self._keys):
                raise ControlError(f"no published key with kid {kid!r}")
            if kid == self._active:
                raise ControlError("promote another key before retiring the signing key")
            self._keys = [k for k in self._keys if k.kid != kid]

    def reset(self) -> None:
        with self._lock:
            self._keys = list(self._initial)
            self._active = self._initial[0].kid
