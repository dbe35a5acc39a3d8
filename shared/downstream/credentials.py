"""How the API proves itself to Entra: what MSAL gets as `client_credential`.

Three modes (API_CLIENT_CREDENTIAL, shared/settings.py):
- `managed-identity`: no secret anywhere. The API's managed identity gets a token for audience
  `api://AzureADTokenExchange` from the platform's managed-identity endpoint (azure-identity's
  `ManagedIdentityCredential`, which finds `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` itself), and
  MSAL presents it as the client assertion. Entra accepts it when the app registration holds a
  federated identity credential for that identity (issuer, subject = the identity's object id,
  audience). MSAL takes a callable and calls it only when it sends a request to Entra, so each
  On-Behalf-Of exchange and each client-credentials call gets a current token: the credential
  caches the managed-identity token (MSAL's managed-identity cache) and fetches a new one once
  less than 5 minutes are left, or from half its life when it lives 2 hours or more.
- `certificate`: a PEM file with key and certificate (MSAL signs the assertion).
- `secret`: the client secret.

The managed-identity endpoint's failures are translated here, as MSAL's are in
`shared.downstream.tokens`: unreachable, 5xx or 429 is `TokenServiceUnavailable` (a timeout
`TokenServiceTimeout`); a 4xx (no such identity assigned to the app) is `CredentialRejected`,
a misconfiguration, with a reason that says what to fix. azure-identity's exceptions carry the
endpoint's text, which is never kept. Its retries are off: the request's own budget and
`DOWNSTREAM_TIMEOUT_SECONDS` bound the wait, and MSAL holds back after a 5xx or 429.

azure-identity and cryptography are imported when the first MSAL client is built, not at start-up.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from shared.downstream.errors import (
    CredentialRejected,
    DownstreamTokenError,
    TokenServiceTimeout,
    TokenServiceUnavailable,
)
from shared.settings import Settings


def client_credential(settings: Settings) -> str | dict[str, Any]:
    """MSAL's `client_credential` for the configured mode."""
    mode = settings.credential
    if mode == "managed-identity":
        return {"client_assertion": ManagedIdentityAssertion(settings)}
    if mode == "secret":
        assert settings.api_client_secret is not None
        return settings.api_client_secret
    return _certificate(settings)


def _certificate(settings: Settings) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    assert settings.api_client_certificate_path is not None
    pem = Path(settings.api_client_certificate_path).read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "private_key": pem.decode("ascii"),
        "thumbprint": hashlib.sha1(der).hexdigest(),  # noqa: S324 - the x5t Entra expects
        "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    }


class ManagedIdentityAssertion:
    """The client-assertion callable: the managed identity's current token for the token
    exchange audience. Built on first use; thread-safe (MSAL calls it from request threads)."""

    def __init__(self, settings: Settings) -> None:
        self._client_id = settings.api_managed_identity_client_id
        self._scope = f"{settings.api_managed_identity_audience.rstrip('/')}/.default"
        self._timeout = settings.downstream_timeout_seconds
        self._credential: Any = None
        self._lock = threading.Lock()
        self._fetching = threading.Lock()
        self._status = threading.local()

    def __call__(self) -> str:
        from azure.core.exceptions import (
            AzureError,
            ServiceRequestTimeoutError,
            ServiceResponseTimeoutError,
        )

        credential = self._build()
        self._status.value = None
        try:
            # One fetch at a time: a request that comes while the warm-up fetches the token
            # waits for it instead of fetching a second one (a cached token is a dict read).
            with self._fetching:
                return str(credential.get_token_info(self._scope).token)
        except AzureError as exc:
            status: int | None = self._status.value
            if status is not None and 400 <= status < 500 and status != 429:
                raise CredentialRejected(
                    f"managed identity endpoint refused (HTTP {status})",
                    reason="the managed identity is not assigned to this app: check "
                    "API_MANAGED_IDENTITY_CLIENT_ID and the identities of the app",
                ) from None
            timeouts = (ServiceRequestTimeoutError, ServiceResponseTimeoutError)
            if _caused_by(exc, timeouts):
                raise TokenServiceTimeout("managed identity endpoint timed out") from None
            raise TokenServiceUnavailable(
                "managed identity endpoint unreachable or failing"
                + ("" if status is None else f" (HTTP {status})"),
                reason="the managed identity endpoint (IDENTITY_ENDPOINT) is not answering",
            ) from None
        except ValueError:  # azure-identity parses an error answer that is not JSON as JSON
            status = self._status.value
            raise TokenServiceUnavailable(
                "managed identity endpoint answered with something that is not JSON"
                + ("" if status is None else f" (HTTP {status})"),
                reason="the managed identity endpoint (IDENTITY_ENDPOINT) is not answering",
            ) from None

    def prime(self) -> None:
        """Fetch the managed-identity token now (the start-up warm-up, `shared/warmup.py`):
        azure-identity is imported and the token cached before the first On-Behalf-Of exchange
        needs it, instead of in that request. Raises as a call does; after a failure the
        credential is dropped, so the first request asks again as if nothing had happened."""
        try:
            self()
        except DownstreamTokenError:
            self.renew()
            raise

    def renew(self) -> None:
        """Forget the token (and the credential caching it): the next call asks the endpoint.
        For an assertion Entra refused as expired or signed with a key it no longer trusts."""
        with self._lock:
            self._credential = None

    def _build(self) -> Any:
        with self._lock:
            if self._credential is None:
                from azure.identity import ManagedIdentityCredential

                self._credential = ManagedIdentityCredential(
                    client_id=self._client_id,
                    retry_total=0,
                    connection_timeout=self._timeout,
                    read_timeout=self._timeout,
                    raw_response_hook=self._record,
                )
            return self._credential

    def _record(self, response: Any) -> None:
        self._status.value = response.http_response.status_code


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
