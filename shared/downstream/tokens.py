"""Dataverse tokens: On-Behalf-Of the caller, or the API's own (client credentials), via MSAL.

- OBO results live only in *our* caches, found by the incoming token plus the scopes: L1 in
  this instance's memory (`TokenCache`) and, when a shared store is configured, L2 in the store
  (`SharedTokenCache`, encrypted under the incoming token). MSAL Python's
  `acquire_token_on_behalf_of` never reads its cache, and letting it write there would grow
  MSAL's cache by one user partition per caller without bound. So the OBO client gets a token
  cache that keeps nothing. `_dataverse_token` is the order of lookups.
- Concurrent first calls with the same token share one exchange: within an instance through
  striped locks by key, across instances through a short lock in the store.
- Client-credential tokens go through MSAL's own cache, on a separate MSAL client, so user and
  application tokens never meet; concurrent callers share one MSAL call (`SingleFlight`).
- MSAL clients are built on first use, or at start-up (`prepare`, the warm-up): building one
  fetches the tenant's discovery document.
- MSAL's answers and exceptions are translated here into `shared.downstream.errors`, once.
- When Entra throttles or fails (429, 5xx) MSAL backs off: for Retry-After seconds (else 5) it
  answers that client's requests of the same kind itself, without calling Entra. Each MSAL
  client has its own requests session that notes what Entra said (`_Answers`), so that every
  caller, the first one and those answered during the back-off, gets a 503 with the seconds
  left; callers whose Dataverse token is cached are not affected at all.
- A token Dataverse refused (401: revoked, or signed with a key Entra has since rolled over in
  an emergency) is given back as `stale`: it is dropped, from both OBO levels or from the app
  client's MSAL token cache (public `TokenCache.search`/`remove_at`), and a new one is fetched.
  Only an entry that still holds that very token is dropped, so concurrent callers hit by the
  same 401 share one new token. Without this a refused token stayed cached until it expired,
  and every call made with it failed.
- In managed-identity mode the client assertion is the identity's token
  (`shared.downstream.credentials`); one Entra refuses as stale (700024, 700027) is replaced
  by a new one, once (`_ask`).
- msal, requests and cryptography are imported when the first MSAL client is built, not at
  start-up: a cold Functions instance pays for them on its first downstream call only.
- Async functions ask `cached_for_user` / `cached_for_app` first, on the event loop: a look-up
  in memory that never blocks (no MSAL, no store, no lock held across I/O). Only on a miss do
  they call `for_user` / `for_app` on a thread. For application tokens that look-up is the last
  token MSAL handed out, kept until it is within `MARGIN_SECONDS` of expiry (MSAL's own cache
  stays the source: a miss asks MSAL, which answers from its cache or from Entra).
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.downstream.cache import CachedToken, CacheLevel, Lookup, TokenCache
from shared.downstream.credentials import ManagedIdentityAssertion, client_credential
from shared.downstream.errors import (
    AssertionRejected,
    ClaimsChallenge,
    ConsentRequired,
    CredentialRejected,
    DownstreamTokenError,
    TokenServiceTimeout,
    TokenServiceUnavailable,
)
from shared.downstream.flight import SingleFlight
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.downstream.shared_cache import SharedTokenCache
    from shared.store import Store

# Seconds MSAL holds a 429 or 5xx from the token endpoint that came without Retry-After
# (its `ThrottledHttpClient` default for confidential clients).
MSAL_BACKOFF = 5
_MISCONFIGURATION = {
    7000215, 7000222, 700016, 700024, 700027, 7000218, 70011, 500011, 50194,
    70021, 700211, 700212, 700213,
}  # fmt: skip
# Entra refused the client assertion itself: expired, or not verifiable with its keys.
_STALE_ASSERTION = {700024, 700027}
# What the operator must fix, by Entra's code, for the log line of a `CredentialRejected`.
_FIXES = {
    70021: "no federated credential on the app: add one for the managed identity "
    "(az ad app federated-credential create)",
    700211: "the federated credential on the app names another issuer than the managed "
    "identity tokens carry",
    700212: "the federated credential on the app lacks the audience API_MANAGED_IDENTITY_AUDIENCE",
    700213: "the federated credential subject on the app is not the object id of the "
    "managed identity",
    700024: "the client assertion is outside its valid time range: check the clock of the host",
    7000215: "API_CLIENT_SECRET is wrong or expired: add a new secret and update the setting",
    7000222: "API_CLIENT_SECRET has expired: add a new secret and update the setting",
    700027: "the certificate is not registered on the app: upload it or fix the path",
    700016: "API_CLIENT_ID is not an app registration of AZURE_TENANT_ID",
    500011: "DATAVERSE_URL names no resource in the tenant",
}
_STRIPES = 64


def _discarding_cache() -> Any:
    """An MSAL token cache that keeps nothing (OBO results are cached by us, bounded)."""
    import msal

    class DiscardingCache(msal.TokenCache):  # type: ignore[misc]
        def add(self, event: dict[str, Any], now: float | None = None) -> None:
            return None

    return DiscardingCache()


class _Answers:
    """What the token endpoint answered one MSAL client, as its requests session saw it.

    Per thread: the status and Retry-After of the last answer, which MSAL's result dicts leave
    out. Shared: the back-off Entra asked for with a 429 or a 5xx. MSAL keeps such an answer
    (for Retry-After seconds, else `MSAL_BACKOFF`) and replays it to every later request of the
    same kind without calling Entra, so a replay never reaches the session; the client whose
    request was answered that way is told what is left of the back-off.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._local = threading.local()
        self._backoff_until = 0.0

    def clear(self) -> None:
        """Before a call: nothing answered yet on this thread."""
        self._local.answered = False
        self._local.status = None
        self._local.retry_after = None

    def record(self, method: str, status: int, retry_after: int | None) -> None:
        if method.upper() == "POST" and (status == 429 or status >= 500):
            retry_after = MSAL_BACKOFF if retry_after is None else retry_after
            self._backoff_until = self._clock() + retry_after
        self._local.answered = True
        self._local.status = status
        self._local.retry_after = retry_after

    @property
    def status(self) -> int | None:
        """The status of this thread's last answer (None: nothing reached Entra)."""
        return getattr(self._local, "status", None)

    @property
    def retry_after(self) -> int | None:
        """Seconds to wait: as this thread's answer said, or, when MSAL replayed a throttled
        answer instead of calling Entra, what is left of the back-off."""
        if getattr(self._local, "answered", False):
            value: int | None = self._local.retry_after
            return value
        left = self._backoff_until - self._clock()
        return math.ceil(left) if left > 0 else None

    @property
    def replayed(self) -> bool:
        """Nothing reached Entra on this call while a back-off runs: MSAL replayed it."""
        return not getattr(self._local, "answered", False) and self.retry_after is not None


def _recording_session(timeout: float, answers: _Answers) -> Any:
    """A requests session for one MSAL client that tells `answers` what Entra answered."""
    import requests

    class RecordingSession(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout)
            response = super().request(method, url, *args, **kwargs)
            verb = method.decode("ascii") if isinstance(method, bytes) else method
            answers.record(
                verb, response.status_code, _retry_after(response.headers.get("Retry-After"))
            )
            return response

    return RecordingSession()


def _retry_after(value: str | None) -> int | None:
    if not value:
        return None
    if value.strip().isdigit():
        return int(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0, int(when - time.time()))


class DownstreamTokens:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self.user_scopes = [f"{settings.dataverse_url}/user_impersonation"]
        self.app_scopes = [f"{settings.dataverse_url}/.default"]
        # One requests session per MSAL client: MSAL's back-off is per client, so is ours.
        self._answers = {True: _Answers(), False: _Answers()}
        self._l1 = TokenCache(settings.obo_cache_size, clock=clock)
        self._l2: SharedTokenCache | None = None
        self._levels: tuple[CacheLevel, ...] = (self._l1,)
        if store is not None:
            self.attach_store(store)
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        # One lock per client: a first request waiting for the On-Behalf-Of client never
        # waits for the app client the warm-up builds next (P11).
        self._build_locks = {True: threading.Lock(), False: threading.Lock()}
        self._credential_lock = threading.Lock()
        self._app_flight: SingleFlight[str] = SingleFlight()
        self._app_last: CachedToken | None = None  # what MSAL last answered (`cached_for_app`)
        self._obo_client: Any = None
        self._app_client: Any = None
        # Shared by both MSAL clients: in managed-identity mode, one managed-identity token.
        self._credential: str | dict[str, Any] | None = None
        self.obo_exchanges = 0  # for tests and benchmarks

    def attach_store(self, store: Store) -> None:
        """Add the shared store's level (L2). Only before the first lookup: the runtime builds
        these tokens before the store, so that the start-up warm-up can build the MSAL clients
        while redis-py is imported (shared/runtime.py)."""
        from shared.downstream.shared_cache import SharedTokenCache

        settings = self._settings
        self._l2 = SharedTokenCache(
            store, settings.data_key, wait=settings.obo_shared_wait_seconds, clock=self._clock
        )
        self._levels = (self._l1, self._l2)

    @property
    def cached_users(self) -> int:
        return len(self._l1)

    @property
    def shared_stats(self) -> dict[str, int]:
        """L2's counts (`SharedTokenCache.stats`); empty without a store."""
        return {} if self._l2 is None else self._l2.stats

    def _client(self, *, obo: bool) -> Any:
        existing = self._obo_client if obo else self._app_client
        if existing is not None:
            return existing
        with self._build_locks[obo]:
            if (self._obo_client if obo else self._app_client) is None:
                import msal

                credential = self._client_credential()
                answers = self._answers[obo]
                http = _recording_session(self._settings.downstream_timeout_seconds, answers)
                client = self._call(
                    lambda: msal.ConfidentialClientApplication(
                        self._settings.api_client_id,
                        client_credential=credential,
                        authority=self._settings.authority,
                        instance_discovery=False,  # a single-tenant authority needs no discovery
                        http_client=http,
                        token_cache=_discarding_cache() if obo else msal.TokenCache(),
                    ),
                    answers,
                )
                if obo:
                    self._obo_client = client
                else:
                    self._app_client = client
        return self._obo_client if obo else self._app_client

    def prepare(self, *, app: bool = True) -> None:
        """Build the MSAL clients now (the start-up warm-up, `shared/warmup.py`), the OBO one
        first, and the app one unless `app` is False: building one imports msal and fetches
        the tenant's discovery document, which a fresh instance's first request would
        otherwise wait for. Raises as a request would (`DownstreamTokenError`); a client that
        failed to build is built again on demand."""
        self._client(obo=True)
        if app:
            self._client(obo=False)

    def prime_credential(self) -> None:
        """Fetch the client credential's own token now when it has one (the start-up warm-up):
        in managed-identity mode the managed-identity token MSAL presents as its assertion,
        which a fresh instance's first exchange would otherwise fetch in series, after
        importing azure-identity. Nothing to do for a secret or a certificate. Raises as a
        request would (`DownstreamTokenError`)."""
        credential = self._client_credential()
        if isinstance(credential, dict):
            assertion = credential.get("client_assertion")
            if isinstance(assertion, ManagedIdentityAssertion):
                assertion.prime()

    def _client_credential(self) -> str | dict[str, Any]:
        # Its own lock: the warm-up primes it while another thread builds an MSAL client.
        with self._credential_lock:
            if self._credential is None:
                self._credential = client_credential(self._settings)
            return self._credential

    def for_user(self, incoming_token: str, stale: str | None = None) -> str:
        """A Dataverse token for the user of `incoming_token` (already validated); not
        `stale`, a token Dataverse has refused."""
        lookup = Lookup.of(incoming_token, self.user_scopes)
        if stale is not None:
            for level in self._levels:
                level.discard(lookup, stale)
        return self._dataverse_token(lookup).access_token

    def cached_for_user(self, incoming_token: str) -> str | None:
        """The user's Dataverse token if this instance holds it (L1), else None; never blocks."""
        found = self._l1.get(Lookup.of(incoming_token, self.user_scopes))
        return None if found is None else found.access_token

    def cached_for_app(self) -> str | None:
        """The API's own Dataverse token as MSAL last answered it, while it is good for
        `MARGIN_SECONDS` more; else None. Never blocks."""
        last = self._app_last
        return last.access_token if last is not None and last.usable(self._clock()) else None

    def _dataverse_token(self, lookup: Lookup) -> CachedToken:
        """The order of lookups, in one place: L1 (no store call on a hit), then L2, then one
        exchange across instances, written to both levels."""
        found = self._l1.get(lookup)
        if found is not None:
            return found
        with self._stripes[lookup.digest[0] % _STRIPES]:  # one exchange per instance
            found = self._l1.get(lookup)
            if found is not None:
                return found
            if self._l2 is None:
                found = self._exchange(lookup)
            else:
                found = self._l2.get(lookup)
                if found is None:
                    self._client(obo=True)  # built (discovery and all) before the lock
                    with self._l2.turn(lookup) as written_meanwhile:  # one across instances
                        found = written_meanwhile
                        if found is None:
                            found = self._exchange(lookup)
                            self._l2.put(lookup, found)
            self._l1.put(lookup, found)
            return found

    def _exchange(self, lookup: Lookup) -> CachedToken:
        client = self._client(obo=True)
        self.obo_exchanges += 1
        answers = self._answers[True]
        result = self._ask(
            lambda: client.acquire_token_on_behalf_of(lookup.assertion, list(lookup.scopes)),
            answers,
        )
        token = str(result["access_token"])
        return CachedToken(token, self._clock() + float(result.get("expires_in", 0)))

    def for_app(self, stale: str | None = None) -> str:
        """A Dataverse token for the API itself (client credentials, cached by MSAL); not
        `stale`, a token Dataverse has refused.

        Concurrent callers share one MSAL call: a cold instance under load asks Entra once."""
        if stale is not None:
            self._forget_app_token(stale)
        return self._app_flight.run(self._app_token)

    def _forget_app_token(self, stale: str) -> None:
        import msal

        last = self._app_last
        if last is not None and last.access_token == stale:
            self._app_last = None

        cache = self._client(obo=False).token_cache
        kind = msal.TokenCache.CredentialType.ACCESS_TOKEN
        for entry in list(cache.search(kind, target=self.app_scopes, query={"secret": stale})):
            cache.remove_at(entry)

    def _app_token(self) -> str:
        client = self._client(obo=False)
        answers = self._answers[False]
        result = self._ask(lambda: client.acquire_token_for_client(self.app_scopes), answers)
        token = str(result["access_token"])
        self._app_last = CachedToken(token, self._clock() + float(result.get("expires_in", 0)))
        return token

    def _ask(self, request: Callable[[], Any], answers: _Answers) -> dict[str, Any]:
        """MSAL's answer to `request` when it holds a token; else the error it stands for.

        In managed-identity mode, an assertion Entra refused as stale (expired, or signed with
        a key Entra no longer trusts after an emergency rollover) is dropped, and the request
        is made once more with a new one from the managed-identity endpoint."""
        result = self._call(request, answers)
        try:
            self._token_or_raise(result, answers)
        except CredentialRejected as exc:
            assertion = (
                self._credential.get("client_assertion")
                if isinstance(self._credential, dict)
                else None
            )
            if exc.entra_code not in _STALE_ASSERTION or not isinstance(
                assertion, ManagedIdentityAssertion
            ):
                raise
            assertion.renew()
            result = self._call(request, answers)
            self._token_or_raise(result, answers)
        return dict(result)

    def _call(self, action: Callable[[], Any], answers: _Answers) -> Any:
        import msal
        import requests

        answers.clear()
        try:
            return action()
        except requests.Timeout:
            raise TokenServiceTimeout("token endpoint timed out") from None
        except requests.RequestException as exc:
            raise TokenServiceUnavailable(
                f"token endpoint unreachable: {type(exc).__name__}"
            ) from None
        except (msal.exceptions.MsalServiceError, ValueError) as exc:
            # MSAL raises on 5xx and on answers that are not JSON (and on a failed discovery).
            raise TokenServiceUnavailable(
                f"token endpoint failed: {type(exc).__name__}",
                retry_after=answers.retry_after,
            ) from None

    def _token_or_raise(self, result: dict[str, Any] | None, answers: _Answers) -> str:
        result = result or {}
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error", ""))
        codes = [c for c in result.get("error_codes") or [] if isinstance(c, int)]
        first = codes[0] if codes else None
        status = answers.status
        if error == "interaction_required" or (result.get("claims") and error == "invalid_grant"):
            raise ClaimsChallenge(str(result.get("claims") or ""), entra_code=first)
        if result.get("suberror") == "consent_required" or 65001 in codes:
            raise ConsentRequired(entra_code=first)
        if (
            status == 429
            or (status is not None and status >= 500)
            or error == "temporarily_unavailable"
        ):
            raise TokenServiceUnavailable(
                "token endpoint throttled or failing",
                retry_after=answers.retry_after,
                entra_code=first,
            )
        if error in (
            "invalid_client",
            "unauthorized_client",
            "invalid_scope",
            "invalid_resource",
        ) or (first in _MISCONFIGURATION):
            raise CredentialRejected(
                f"Entra refused our registration: {error}",
                entra_code=first,
                reason=_FIXES.get(
                    first or 0,
                    f"Entra refused the {self._settings.credential} credential of the API",
                ),
            )
        if error == "invalid_grant":
            raise AssertionRejected(entra_code=first)
        if answers.replayed:
            raise TokenServiceUnavailable(
                "token endpoint throttled (answer replayed by MSAL)",
                retry_after=answers.retry_after,
                entra_code=first,
            )
        raise DownstreamTokenError(
            f"unexpected token endpoint answer: {error or 'no error'}", entra_code=first
        )
