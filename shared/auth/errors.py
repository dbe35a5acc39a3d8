"""Why a request was not authenticated or not authorised.

    AuthError
    ├── SubscriptionKeyError
    │   ├── SubscriptionKeyMissing      no Ocp-Apim-Subscription-Key
    │   └── SubscriptionKeyInvalid      a key no active subscription holds
    ├── InvalidToken                    missing, malformed, unverifiable or unacceptable token
    ├── SigningKeysUnavailable          the tenant's keys cannot be fetched and none are usable
    │                                   (none cached yet, or the cached ones past their grace)
    └── Forbidden
        ├── InsufficientScope           valid token without any of the endpoint's scopes/roles
        ├── ApplicationOnly             a delegated token on an application-only endpoint
        └── ClientAppNotAllowed         a token from a client app the API (or the subscription
                                        key) does not accept

Each carries a short stable `code`. `reason` on InvalidToken and ClientAppNotAllowed says what
was wrong for the logs; clients only ever see the contract's fixed message. Nothing here knows
about HTTP: `shared.http.errors` turns these into responses.
"""

from __future__ import annotations

from collections.abc import Sequence


class AuthError(Exception):
    code = "auth_error"


class SubscriptionKeyError(AuthError):
    code = "subscription_key"


class SubscriptionKeyMissing(SubscriptionKeyError):
    code = "subscription_key_missing"


class SubscriptionKeyInvalid(SubscriptionKeyError):
    code = "subscription_key_invalid"


class InvalidToken(AuthError):
    code = "invalid_token"

    def __init__(self, reason: str, *, token_sent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token_sent = token_sent


class SigningKeysUnavailable(AuthError):
    code = "signing_keys_unavailable"

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Forbidden(AuthError):
    code = "forbidden"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"

    def __init__(self, required: Sequence[str], *, application: bool) -> None:
        super().__init__(", ".join(required))
        self.required = tuple(required)
        self.application = application


class ApplicationOnly(Forbidden):
    code = "application_only"


class ClientAppNotAllowed(Forbidden):
    code = "client_app_not_allowed"

    def __init__(self, *, subscription_bound: bool = False) -> None:
        self.subscription_bound = subscription_bound
        self.reason = (
            "client app not bound to this subscription"
            if subscription_bound
            else "client app not in ALLOWED_CLIENT_APP_IDS"
        )
        super().__init__(self.reason)
