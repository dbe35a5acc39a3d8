"""Dataverse tokens: On-Behalf-Of the caller, or the API's own (client credentials), via MSAL.

- OBO results live only in *our* cache (`TokenCache`), keyed by a hash of the incoming token
  plus the scopes: MSAL Python's `acquire_token_on_behalf_of` never reads its cache, and letting
  it write there would grow MSAL's cache by one user partition per caller without bound. So the
  OBO client gets a token cache that keeps nothing.
- Concurrent first calls with the same token share one exchange (striped locks by key).
- Client-credential tokens go through MSAL's own cache, on a separate MSAL client, so user and
  application tokens never meet.
- MSAL clients are built on first use: building one fetches the tenant's discovery document.
- MSAL's answers and exceptions are translated here into `shared.downstream.errors`, once.
"""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shared.downstream.cache import TokenCache, cache_key
from shared.downstream.errors import (
    AssertionRejected,
    ClaimsChallenge,
    ConsentRequired,
    CredentialRejected,
    DownstreamTokenError,
    TokenServiceTimeout,
    TokenServiceUnavailable,
)
from shared.settings import Settings

_MISCONFIGURATION = {7000215, 7000222, 700016, 700024, 700027, 7000218, 70011, 500011, 50194}
_STRIPES = 64


class _DiscardingCache(msal.TokenCache):  # type: ignore[misc]
    """A token cache that keeps nothing (OBO results are cached by us, bounded)."""

    def add(self, event: dict[str, Any], now: float | None = None) -> None:
        return None


class _RecordingSession(requests.Session):
    """Remembers, per thread, the status and Retry-After of the last token-endpoint answer,
    which MSAL's result dicts leave out."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        self.last = threading.local()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        response = super().request(method, url, *args, **kwargs)
        self.last.status = response.status_code
        self.last.retry_after = _retry_after(response.headers.get("Retry-After"))
        return response


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


def _credential(settings: Settings) -> str | dict[str, str]:
    if settings.api_client_secret:
        return settings.api_client_secret
    assert settings.api_client_certificate_path is not None
    pem = Path(settings.api_client_certificate_path).read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "private_key": pem.decode("ascii"),
        "thumbprint": hashlib.sha1(der).hexdigest(),  # noqa: S324 - the x5t Entra expects
        "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    }


class DownstreamTokens:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self.user_scopes = [f"{settings.dataverse_url}/user_impersonation"]
        self.app_scopes = [f"{settings.dataverse_url}/.default"]
        self._http = _RecordingSession(settings.downstream_timeout_seconds)
        self._cache = TokenCache(settings.obo_cache_size, clock=clock)
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._build_lock = threading.Lock()
        self._obo_client: Any = None
        self._app_client: Any = None
        self.obo_exchanges = 0  # for tests and benchmarks

    @property
    def cached_users(self) -> int:
        return len(self._cache)

    def _client(self, *, obo: bool) -> Any:
        existing = self._obo_client if obo else self._app_client
        if existing is not None:
            return existing
        with self._build_lock:
            if (self._obo_client if obo else self._app_client) is None:
                client = self._call(
                    lambda: msal.ConfidentialClientApplication(
                        self._settings.api_client_id,
                        client_credential=_credential(self._settings),
                        authority=self._settings.authority,
                        instance_discovery=False,  # a single-tenant authority needs no discovery
                        http_client=self._http,
                        token_cache=_DiscardingCache() if obo else msal.TokenCache(),
                    )
                )
                if obo:
                    self._obo_client = client
                else:
                    self._app_client = client
        return self._obo_client if obo else self._app_client

    def for_user(self, incoming_token: str) -> str:
        """A Dataverse token for the user of `incoming_token` (already validated)."""
        key = cache_key(incoming_token, self.user_scopes)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with self._stripes[key[0] % _STRIPES]:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            client = self._client(obo=True)
            self.obo_exchanges += 1
            result = self._call(
                lambda: client.acquire_token_on_behalf_of(incoming_token, self.user_scopes)
            )
            token = self._token_or_raise(result)
            self._cache.put(key, token, float(result.get("expires_in", 0)))
            return token

    def for_app(self) -> str:
        """A Dataverse token for the API itself (client credentials, cached by MSAL)."""
        client = self._client(obo=False)
        return self._token_or_raise(
            self._call(lambda: client.acquire_token_for_client(self.app_scopes))
        )

    def _call(self, action: Callable[[], Any]) -> Any:
        self._http.last.status = None
        self._http.last.retry_after = None
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
                retry_after=getattr(self._http.last, "retry_after", None),
            ) from None

    def _token_or_raise(self, result: dict[str, Any] | None) -> str:
        result = result or {}
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error", ""))
        codes = [c for c in result.get("error_codes") or [] if isinstance(c, int)]
        first = codes[0] if codes else None
        status = getattr(self._http.last, "status", None)
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
                retry_after=getattr(self._http.last, "retry_after", None),
                entra_code=first,
            )
        if error in (
            "invalid_client",
            "unauthorized_client",
            "invalid_scope",
            "invalid_resource",
        ) or (first in _MISCONFIGURATION):
            raise CredentialRejected(f"Entra refused our registration: {error}", entra_code=first)
        if error == "invalid_grant":
            raise AssertionRejected(entra_code=first)
        raise DownstreamTokenError(
            f"unexpected token endpoint answer: {error or 'no error'}", entra_code=first
        )
