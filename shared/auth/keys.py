"""The tenant's token-signing keys and issuers, from OIDC discovery, cached.

Rules (Microsoft's signing-key-rollover guidance, and RFC 8725's advice not to let tokens drive
fetches):

- discovery and JWKS are fetched on first use, not at import;
- an unknown `kid` triggers at most one refresh per `min_refresh_interval` (5 minutes), and
  concurrent requests with new kids share that one fetch;
- when a refresh fails or returns garbage, the last good keys stay in use;
- with no keys at all (cold start, key endpoint down) requests get `SigningKeysUnavailable`, and
  fetches are retried no more often than every `cold_retry_interval` seconds;
- only RSA signing keys are taken; a token's own headers (`jku`, `x5u`, `jwk`, `x5c`) are never
  a key source.

requests and the JWK parser are imported at the first fetch, not at start-up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.auth.errors import SigningKeysUnavailable

if TYPE_CHECKING:
    import requests
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

log = logging.getLogger("central_api.keys")

MAX_DOCUMENT_BYTES = 512 * 1024


@dataclass(frozen=True)
class KeySnapshot:
    """One consistent view: the keys by kid, the accepted issuers, and a version that changes
    whenever the key set does (caches of validated tokens are dropped on change)."""

    keys: dict[str, RSAPublicKey]
    issuer_v2: str
    issuer_v1: str
    version: int


class SigningKeys:
    def __init__(
        self,
        authority: str,
        *,
        session: requests.Session,
        timeout: float = 5.0,
        min_refresh_interval: float = 300.0,
        cold_retry_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._authority = authority.rstrip("/")
        self._session = session
        self._timeout = timeout
        self._min_refresh = min_refresh_interval
        self._cold_retry = cold_retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: KeySnapshot | None = None
        self._last_attempt: float | None = None
        self.fetches = 0  # how many times the key endpoint was asked (tests and benchmarks)

    @property
    def snapshot(self) -> KeySnapshot | None:
        return self._snapshot

    def current(self) -> KeySnapshot:
        """The cached keys, loading them on first use."""
        snap = self._snapshot
        if snap is not None:
            return snap
        with self._lock:
            if self._snapshot is None:
                self._load_cold()
            assert self._snapshot is not None
            return self._snapshot

    def key(self, kid: str) -> tuple[RSAPublicKey | None, KeySnapshot]:
        """The key for `kid`, refreshing once (rate-limited) when it is unknown."""
        snap = self.current()
        found = snap.keys.get(kid)
        if found is not None:
            return found, snap
        with self._lock:
            # Another request may have refreshed while this one waited for the lock.
            if kid not in self.current().keys and self._refresh_allowed():
                self._refresh_warm()
            snap = self.current()
            return snap.keys.get(kid), snap

    def _refresh_allowed(self) -> bool:
        return self._last_attempt is None or self._clock() - self._last_attempt >= self._min_refresh

    def _load_cold(self) -> None:
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < self._cold_retry:
            retry = max(1, int(self._cold_retry - (now - self._last_attempt)) + 1)
            raise SigningKeysUnavailable("signing keys not loaded yet", retry_after=retry)
        self._last_attempt = now
        try:
            self._snapshot = self._fetch(version=1)
        except _FetchFailed as exc:
            log.error("signing keys unavailable at start: %s", exc)
            raise SigningKeysUnavailable(str(exc), retry_after=int(self._cold_retry)) from None

    def _refresh_warm(self) -> None:
        self._last_attempt = self._clock()
        old = self._snapshot
        assert old is not None
        try:
            new = self._fetch(version=old.version + 1)
        except _FetchFailed as exc:
            log.warning("signing key refresh failed, keeping the last good keys: %s", exc)
            return
        if new.keys.keys() == old.keys.keys():
            new = KeySnapshot(new.keys, new.issuer_v2, new.issuer_v1, old.version)
        self._snapshot = new
        log.info("signing keys refreshed: %d keys", len(new.keys))

    def _fetch(self, *, version: int) -> KeySnapshot:
        self.fetches += 1
        v2 = self._get_json(f"{self._authority}/v2.0/.well-known/openid-configuration")
        v1 = self._get_json(f"{self._authority}/.well-known/openid-configuration")
        issuer_v2, issuer_v1, jwks_uri = v2.get("issuer"), v1.get("issuer"), v2.get("jwks_uri")
        if not (_https(issuer_v2) and _https(issuer_v1) and _https(jwks_uri)):
            raise _FetchFailed("discovery document lacks issuer or jwks_uri")
        assert isinstance(issuer_v2, str)
        assert isinstance(issuer_v1, str)
        assert isinstance(jwks_uri, str)
        keys = _parse_jwks(self._get_json(jwks_uri))
        if not keys:
            raise _FetchFailed("key set holds no usable RSA signing key")
        return KeySnapshot(keys, issuer_v2, issuer_v1, version)

    def _get_json(self, url: str) -> dict[str, object]:
        import requests

        try:
            response = self._session.get(url, timeout=self._timeout, stream=True)
            body = response.raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
            response.close()
        except requests.RequestException as exc:
            raise _FetchFailed(f"{type(exc).__name__} from {url}") from None
        if response.status_code != 200:
            raise _FetchFailed(f"HTTP {response.status_code} from {url}")
        if len(body) > MAX_DOCUMENT_BYTES:
            raise _FetchFailed(f"oversized document from {url}")
        try:
            data = json.loads(body)
        except ValueError:
            raise _FetchFailed(f"not JSON from {url}") from None
        if not isinstance(data, dict):
            raise _FetchFailed(f"not a JSON object from {url}")
        return data


class _FetchFailed(Exception):
    pass


def _https(value: object) -> bool:
    return isinstance(value, str) and value.startswith("https://")


def _parse_jwks(data: dict[str, object]) -> dict[str, RSAPublicKey]:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from jwt.algorithms import RSAAlgorithm

    keys: dict[str, RSAPublicKey] = {}
    entries = data.get("keys")
    if not isinstance(entries, list):
        return keys
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if (
            entry.get("kty") != "RSA"
            or entry.get("use", "sig") != "sig"
            or not isinstance(kid, str)
        ):
            continue
        try:
            key = RSAAlgorithm.from_jwk(entry)
        except Exception:  # noqa: S112 - a malformed entry is skipped, the others still count
            continue
        if isinstance(key, RSAPublicKey) and key.key_size >= 2048:
            keys[kid] = key
    return keys
