"""The tenant's token-signing keys and issuers, from OIDC discovery, cached.

Rules (Microsoft's signing-key-rollover guidance, and RFC 8725's advice not to let tokens drive
fetches):

- discovery and JWKS are fetched on first use, not at import, or ahead of it (`prefetch`, from
  the start-up warm-up, `shared/warmup.py`): a fresh instance's first request then finds them
  loaded, or waits for the fetch already under way instead of starting its own. A prefetch that
  fails leaves the first request to fetch as if none had been tried (it does not count against
  the cold-retry interval below);
- the v1 discovery document (for the v1 issuer) is fetched beside the v2 one, and the JWKS as
  soon as the v2 one names it: a load costs two round trips in series, not three;
- an unknown `kid` triggers at most one refresh per `min_refresh_interval` (5 minutes), and
  concurrent requests with new kids share that one fetch;
- the set has a maximum age (`max_age`, 24 hours by default): once Entra last confirmed it longer
  ago than that, the next request refreshes it, so a key Entra retired stops validating. That
  refresh is inside the same budget (one fetch per `min_refresh_interval`, whoever asks), and it
  runs on one request thread only: the others keep validating with the current set meanwhile,
  so a slow key endpoint never holds every request up;
- when a refresh fails or returns garbage, the last good keys stay in use, but only for `grace`
  seconds (1 hour by default) past the maximum age. After that they are refused
  (`SigningKeysUnavailable`, fail closed), and the keys are fetched again no more often than
  every `cold_retry_interval` seconds, as at a cold start;
- with no keys at all (cold start, key endpoint down) requests get `SigningKeysUnavailable`, and
  fetches are retried no more often than every `cold_retry_interval` seconds;
- only RSA signing keys are taken; a token's own headers (`jku`, `x5u`, `jwk`, `x5c`) are never
  a key source.

The defaults lean on Microsoft.IdentityModel's `BaseConfigurationManager` (the configuration
cache behind ASP.NET Core's JWT bearer handler): `DefaultRefreshInterval`, 5 minutes between
requested refreshes; `DefaultAutomaticRefreshInterval`, 12 hours, after which it fetches the
keys again unasked; `DefaultLastKnownGoodConfigurationLifetime`, 1 hour for which the last known
good configuration may still be used. Our grace period is that hour; our maximum age is
24 hours, within which a key Entra retired for an emergency is still trusted by a warm instance.

The state the keys are in (`fresh`, `stale`: older than the maximum age and not refreshed yet,
`expired`: past the grace period) is logged once per change, never the keys themselves.

requests and the JWK parser are imported at the first fetch, not at start-up.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from shared.auth.errors import SigningKeysUnavailable

if TYPE_CHECKING:
    import requests
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

log = logging.getLogger("central_api.keys")

MAX_DOCUMENT_BYTES = 512 * 1024

State = Literal["fresh", "stale", "expired"]


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
        max_age: float = 86_400.0,
        grace: float = 3_600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._authority = authority.rstrip("/")
        self._session = session
        self._timeout = timeout
        self._min_refresh = min_refresh_interval
        self._cold_retry = cold_retry_interval
        self._max_age = max_age
        self._grace = grace
        self._clock = clock
        # Held by whoever fetches; requests that find the set merely stale do not wait for it.
        self._lock = threading.Lock()
        self._snapshot: KeySnapshot | None = None
        self._confirmed_at = 0.0  # when Entra last answered with a usable set
        self._last_attempt: float | None = None  # any fetch, successful or not: the rate limit
        self._state: State = "fresh"
        self.fetches = 0  # how many times the key endpoint was asked (tests and benchmarks)

    @property
    def state(self) -> State:
        """How old the keys are: `fresh`, `stale` (older than the maximum age, still used) or
        `expired` (past the grace period: refused). `fresh` before the first fetch."""
        if self._snapshot is None:
            return "fresh"
        return self._age_state(self._clock())

    @property
    def fresh(self) -> bool:
        """Loaded and younger than the maximum age: `current()` answers without any I/O."""
        return self._snapshot is not None and self._clock() - self._confirmed_at < self._max_age

    def loaded(self) -> KeySnapshot | None:
        """The keys `current()` would use, but never the first fetch and never an error: None
        before the keys are first loaded and while they are refused (past the grace period)."""
        snap = self._snapshot
        if snap is None:
            return None
        if self._clock() - self._confirmed_at < self._max_age:
            return snap  # fresh: the common case, one clock read (every request comes here)
        if self.state == "expired":
            return None
        try:
            return self.current()
        except SigningKeysUnavailable:  # expired in the meantime
            return None

    def current(self) -> KeySnapshot:
        """The keys to validate with: loaded on first use, refreshed (rate-limited) once older
        than the maximum age, refused once older than the maximum age plus the grace period."""
        snap = self._snapshot
        if snap is not None and self._clock() - self._confirmed_at < self._max_age:
            return snap
        if snap is None:
            with self._lock:
                if self._snapshot is None:
                    self._load_cold()
        else:
            self._renew()
        return self._usable()

    def prefetch(self) -> bool:
        """Load the keys now, ahead of the first request (start-up); True once they are loaded.

        Requests that come meanwhile wait for this fetch (the lock) rather than start their own.
        A failure is logged and forgotten: unlike a request's cold load it does not start the
        cold-retry interval, so the first request still fetches on demand."""
        with self._lock:
            if self._snapshot is not None:
                return True
            now = self._clock()
            try:
                snapshot = self._fetch(version=1)
            except _FetchFailed as exc:
                log.warning("signing keys not fetched at start-up (fetched on demand): %s", exc)
                return False
            self._snapshot, self._confirmed_at, self._last_attempt = snapshot, now, now
        return True

    def key(self, kid: str) -> tuple[RSAPublicKey | None, KeySnapshot]:
        """The key for `kid`, refreshing once (rate-limited) when it is unknown."""
        snap = self.current()
        found = snap.keys.get(kid)
        if found is not None:
            return found, snap
        with self._lock:
            # Another request may have refreshed while this one waited for the lock.
            current = self._snapshot
            assert current is not None
            if kid not in current.keys and self._attempt_allowed(self._min_refresh):
                failure = self._refresh_warm()
                if failure is not None:
                    log.warning(
                        "signing key refresh failed, keeping the last good keys: %s", failure
                    )
            snap = self._usable()
            return snap.keys.get(kid), snap

    def _age_state(self, now: float) -> State:
        age = now - self._confirmed_at
        if age < self._max_age:
            return "fresh"
        return "stale" if age < self._max_age + self._grace else "expired"

    def _usable(self) -> KeySnapshot:
        """The snapshot, unless it is past the grace period."""
        snap = self._snapshot
        assert snap is not None
        now = self._clock()
        if self._age_state(now) != "expired":
            return snap
        waited = now - (self._last_attempt if self._last_attempt is not None else now)
        retry = max(1, math.ceil(self._cold_retry - waited))  # until the next attempt is due
        raise SigningKeysUnavailable("signing keys past their grace period", retry_after=retry)

    def _renew(self) -> None:
        """Refresh keys older than the maximum age. Within the grace period a request that finds
        another one fetching goes on with the current keys; past it there are no usable keys, so
        it waits for that fetch, as at a cold start."""
        within_grace = self._age_state(self._clock()) == "stale"
        if not self._lock.acquire(blocking=not within_grace):
            return
        try:
            state = self._age_state(self._clock())
            interval = self._min_refresh if state == "stale" else self._cold_retry
            failure = None
            if state != "fresh" and self._attempt_allowed(interval):
                failure = self._refresh_warm()
            if failure is not None:
                # Every failure while stale or expired: the change of state is the warning.
                log.info("signing key refresh failed: %s", failure)
            self._note_state(failure)
        finally:
            self._lock.release()

    def _attempt_allowed(self, interval: float) -> bool:
        return self._last_attempt is None or self._clock() - self._last_attempt >= interval

    def _note_state(self, failure: str | None = None) -> None:
        """Log a change of state, once (called with the lock held). `failure` is why the last
        fetch failed (an HTTP status, an exception type, never key material)."""
        now = self._clock()
        state = self._age_state(now)
        if state == self._state:
            return
        previous, self._state = self._state, state
        age = int(now - self._confirmed_at)
        if state == "stale":
            log.warning(
                "signing keys are %d s old and could not be refreshed (%s): validating with "
                "the last good keys for at most %d s more",
                age,
                failure or "refresh not due yet",
                int(self._max_age + self._grace - (now - self._confirmed_at)),
            )
        elif state == "expired":
            log.error(
                "signing keys are %d s old and could not be refreshed within the %d s grace "
                "period (%s): refusing tokens until the key endpoint answers",
                age,
                int(self._grace),
                failure or "refresh not due yet",
            )
        else:
            log.warning("signing keys refreshed: no longer %s", previous)

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
        self._confirmed_at = now

    def _refresh_warm(self) -> str | None:
        """Fetch the set again (the lock held); None on success, else why it failed. Success
        replaces the set, whatever the reason for the fetch, so a retired key is gone; failure
        keeps it, however old, and `_usable` decides whether it still serves."""
        now = self._last_attempt = self._clock()
        old = self._snapshot
        assert old is not None
        try:
            new = self._fetch(version=old.version + 1)
        except _FetchFailed as exc:
            return str(exc)
        if new.keys.keys() == old.keys.keys():
            new = KeySnapshot(new.keys, new.issuer_v2, new.issuer_v1, old.version)
        self._snapshot = new
        self._confirmed_at = now
        log.info("signing keys refreshed: %d keys", len(new.keys))
        self._note_state()
        return None

    def _fetch(self, *, version: int) -> KeySnapshot:
        from concurrent.futures import ThreadPoolExecutor

        self.fetches += 1
        # The v1 document beside the v2 one and the JWKS: only the JWKS waits for a document.
        # The JWK parser's imports (cryptography, PyJWT) are done meanwhile, off the chain.
        with ThreadPoolExecutor(2, thread_name_prefix="signing-keys") as beside:
            beside.submit(_jwk_parser)
            v1_doc = beside.submit(
                self._get_json, f"{self._authority}/.well-known/openid-configuration"
            )
            v2 = self._get_json(f"{self._authority}/v2.0/.well-known/openid-configuration")
            issuer_v2, jwks_uri = v2.get("issuer"), v2.get("jwks_uri")
            if not (_https(issuer_v2) and _https(jwks_uri)):
                raise _FetchFailed("discovery document lacks issuer or jwks_uri")
            assert isinstance(issuer_v2, str)
            assert isinstance(jwks_uri, str)
            jwks = self._get_json(jwks_uri)
            issuer_v1 = v1_doc.result().get("issuer")
        if not _https(issuer_v1):
            raise _FetchFailed("discovery document lacks issuer or jwks_uri")
        assert isinstance(issuer_v1, str)
        keys = _parse_jwks(jwks)
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


def _jwk_parser() -> tuple[type[RSAPublicKey], Callable[[dict[str, object]], object]]:
    """The RSA public key type and PyJWT's JWK parser, imported on first use."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from jwt.algorithms import RSAAlgorithm

    return RSAPublicKey, RSAAlgorithm.from_jwk


def _parse_jwks(data: dict[str, object]) -> dict[str, RSAPublicKey]:
    rsa_public_key, from_jwk = _jwk_parser()
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
            key = from_jwk(entry)
        except Exception:  # noqa: S112 - a malformed entry is skipped, the others still count
            continue
        if isinstance(key, rsa_public_key) and key.key_size >= 2048:
            keys[kid] = key
    return keys
