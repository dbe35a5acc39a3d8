"""Every error the Entra emulator raises. Rendering to HTTP happens once, in `devstack.entra.http`.

    EntraError                      base of the tree
    ├── ProtocolError               OAuth error in Entra's JSON shape, with an AADSTS code
    │   ├── InvalidRequest          invalid_request         400  (missing or malformed parameter)
    │   ├── InvalidTenant           invalid_tenant          400  (unknown tenant in the path)
    │   ├── InvalidClient           invalid_client          401  (client authentication failed)
    │   ├── UnauthorizedClient      unauthorized_client     400  (unknown application)
    │   ├── InvalidGrant            invalid_grant           400  (assertion, password, consent...)
    │   ├── InteractionRequired     interaction_required    400  (conditional access, MFA)
    │   ├── InvalidScope            invalid_scope           400  (unknown or malformed scope)
    │   ├── InvalidResource         invalid_resource        400  (no such resource in the tenant)
    │   ├── UnsupportedGrantType    unsupported_grant_type  400
    │   ├── UnsupportedResponseType unsupported_response_type 400 (authorize: not `code`)
    │   ├── AccessDenied            access_denied           400  (authorize: the user said no)
    │   ├── LoginRequired           login_required          400  (prompt=none, nobody signed in)
    │   ├── ConsentRequired         consent_required        400  (authorize: no consent held)
    │   ├── AuthorizationPending    authorization_pending   400  (device code: not approved yet)
    │   ├── SlowDown                slow_down               400  (device code: polled too fast)
    │   ├── AuthorizationDeclined   authorization_declined  400  (device code: the user said no)
    │   ├── BadVerificationCode     bad_verification_code   400  (device code: unknown)
    │   └── ExpiredToken            expired_token           400  (device code: expired)
    └── ControlError                a bad control-plane request (400, plain JSON `{"error": ...}`)

The authorize endpoint sends the same errors to the app's redirect URI (`error`,
`error_description`, `state`) once it trusts that URI, and shows them on an error page before.
A `ProtocolError` carries its AADSTS number and message; `suberror` and `claims` are set where
Entra sets them (consent_required, claims challenges).
"""

from __future__ import annotations


class EntraError(Exception):
    """Base class for everything the emulator raises on purpose."""


class ProtocolError(EntraError):
    error = "invalid_request"
    status = 400

    def __init__(
        self,
        code: int,
        message: str,
        *,
        suberror: str | None = None,
        claims: str | None = None,
    ) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        self.code = code
        self.message = message
        self.suberror = suberror
        self.claims = claims


class InvalidRequest(ProtocolError):
    error = "invalid_request"


class InvalidTenant(ProtocolError):
    error = "invalid_tenant"


class InvalidClient(ProtocolError):
    error = "invalid_client"
    status = 401


class UnauthorizedClient(ProtocolError):
    error = "unauthorized_client"


class InvalidGrant(ProtocolError):
    error = "invalid_grant"


class InteractionRequired(ProtocolError):
    error = "interaction_required"


class InvalidScope(ProtocolError):
    error = "invalid_scope"


class InvalidResource(ProtocolError):
    error = "invalid_resource"


class UnsupportedGrantType(ProtocolError):
    error = "unsupported_grant_type"


class ControlError(EntraError):
    """The control plane was asked for something impossible (unknown kid, unknown app...)."""


class UnsupportedResponseType(ProtocolError):
    error = "unsupported_response_type"


class AccessDenied(ProtocolError):
    error = "access_denied"


class LoginRequired(ProtocolError):
    error = "login_required"


class ConsentRequired(ProtocolError):
    error = "consent_required"


class AuthorizationPending(ProtocolError):
    error = "authorization_pending"


class SlowDown(ProtocolError):
    error = "slow_down"


class AuthorizationDeclined(ProtocolError):
    error = "authorization_declined"


class BadVerificationCode(ProtocolError):
    error = "bad_verification_code"


class ExpiredToken(ProtocolError):
    error = "expired_token"
