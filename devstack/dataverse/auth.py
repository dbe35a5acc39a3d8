"""Bearer tokens, checked as Dataverse checks them: signature against the Entra emulator's JWKS,
then the claims as a checklist. Every failure is `Unauthorized` (401, no body); the token is never
logged or echoed.

Keys are fetched over HTTPS (trusting the dev CA bundle) on first use and cached. A token whose
`kid` is unknown triggers one refetch, at most every `refresh_interval` seconds however many such
tokens arrive, and concurrent arrivals share that fetch; a failed fetch keeps the last good keys.
`refresh()` refetches at once (the control plane's `POST /_emulator/keys/refresh`): after Entra
retires a key, as in an emergency rollover, tokens it signed stop validating (401) here too.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import requests

from devstack.control import NO_LATENCY_HEADER
from devstack.dataverse.errors import Unauthorized
from devstack.dataverse.security import Identity

log = logging.getLogger(__name__)

Clock = Callable[[], float]
FetchJwks = Callable[[], dict[str, Any]]


class KeyCache:
    def __init__(self, fetch: FetchJwks, *, refresh_interval: float, clock: Clock) -> None:
        self._fetch = fetch
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self.fetches = 0

    def key(self, kid: str) -> jwt.PyJWK | None:
        found = self._keys.get(kid)
        if found is not None:
            return found
        with self._lock:
            found = self._keys.get(kid)
            if found is not None:  # another thread's fetch brought it in
                return found
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self.refresh_interval:
                self._fetched_at = now
                self._refresh()
            return self._keys.get(kid)

    def _refresh(self) -> None:
        self.fetches += 1
        try:
            document = self._fetch()
            keys = {
                str(k["kid"]): jwt.PyJWK(k, algorithm="RS256")
                for k in document["keys"]
                if isinstance(k, dict) and k.get("kty") == "RSA" and "kid" in k
            }
        except (requests.RequestException, ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
            log.warning("Dataverse emulator: fetching signing keys failed: %s", type(exc).__name__)
            return
        if keys:
            self._keys = keys

    def refresh(self) -> list[str]:
        """Fetch the key set now, whatever the interval; the key ids held afterwards."""
        with self._lock:
            self._fetched_at = self._clock()
            self._refresh()
            return sorted(self._keys)

    def clear(self) -> None:
        with self._lock:
            self._keys = {}
            self._fetched_at = None


def https_jwks(url: str, ca_bundle: Path) -> FetchJwks:
    def fetch() -> dict[str, Any]:
        # Dataverse in Azure holds the keys long before a client calls: no emulated latency.
        response = requests.get(
            url, verify=str(ca_bundle), timeout=5, headers={NO_LATENCY_HEADER: "none"}
        )
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError("JWKS is not a JSON object")
        return document

    return fetch


class TokenValidator:
    def __init__(
        self,
        *,
        tenant_id: str,
        entra_url: str,
        audiences: list[str],
        keys: KeyCache,
        clock: Clock = time.time,
        leeway: int = 60,
    ) -> None:
        root = f"{entra_url.rstrip('/')}/{tenant_id}"
        self.tenant_id = tenant_id
        self.issuers = [f"{root}/", f"{root}/v2.0"]
        self.audiences = audiences
        self.keys = keys
        self._clock = clock
        self._leeway = leeway

    def validate(self, authorization: str | None) -> Identity:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        if header.get("alg") != "RS256":
            raise Unauthorized("unexpected algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("no key id")
        key = self.keys.key(kid)
        if key is None:
            raise Unauthorized("unknown signing key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audiences,
                issuer=self.issuers,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except (jwt.PyJWTError, json.JSONDecodeError, ValueError, TypeError):
            raise Unauthorized("invalid token") from None
        return self._identity(claims)

    def _identity(self, claims: dict[str, Any]) -> Identity:
        if claims.get("tid") != self.tenant_id:
            raise Unauthorized("wrong tenant")
        if not isinstance(claims.get("aud"), str):
            raise Unauthorized("audience must be a single value")
        scp = claims.get("scp")
        if scp is not None:
            oid = claims.get("oid")
            if not isinstance(scp, str) or not isinstance(oid, str):
                raise Unauthorized("malformed delegated token")
            return Identity(kind="user", oid=oid.lower())
        appid = claims.get("appid", claims.get("azp"))
        if not isinstance(appid, str) or claims.get("idtyp", "app") != "app":
            raise Unauthorized("neither a user nor an application token")
        return Identity(kind="application", appid=appid.lower())


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("no token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token or "\t" in token:
        raise Unauthorized("not a bearer token")
    if token.count(".") != 2 or len(token) > 16_384:
        raise Unauthorized("malformed token")
    return token
