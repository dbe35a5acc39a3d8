"""Why no Dataverse token could be had.

    DownstreamTokenError
    ├── ClaimsChallenge           the user must sign in again with more (MFA, conditional access)
    ├── ConsentRequired           nobody consented to the API calling Dataverse for this user
    ├── AssertionRejected         Entra refused the incoming token as an OBO assertion
    ├── CredentialRejected        Entra refused *our* credential: a server misconfiguration
    ├── TokenServiceUnavailable   Entra unreachable, 5xx, 429 or an unreadable answer
    │   └── TokenServiceTimeout   Entra did not answer in time

`entra_code` holds Entra's first AADSTS number for the logs; Entra's own description is never
kept, because it may echo request details. `reason`, when set, is our own text for the log line
(shared.telemetry): for `CredentialRejected`, what the operator must fix.
"""

from __future__ import annotations


class DownstreamTokenError(Exception):
    code = "downstream_token"

    def __init__(
        self, message: str = "", *, entra_code: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message or self.code)
        self.entra_code = entra_code
        if reason is not None:
            self.reason = reason


class ClaimsChallenge(DownstreamTokenError):
    code = "claims_challenge"

    def __init__(self, claims: str, *, entra_code: int | None = None) -> None:
        super().__init__("claims challenge", entra_code=entra_code)
        self.claims = claims


class ConsentRequired(DownstreamTokenError):
    code = "consent_required"


class AssertionRejected(DownstreamTokenError):
    code = "assertion_rejected"


class CredentialRejected(DownstreamTokenError):
    code = "credential_rejected"


class TokenServiceUnavailable(DownstreamTokenError):
    code = "token_service_unavailable"

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: int | None = None,
        entra_code: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, entra_code=entra_code, reason=reason)
        self.retry_after = retry_after


class TokenServiceTimeout(TokenServiceUnavailable):
    code = "token_service_timeout"
