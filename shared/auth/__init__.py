"""Authentication and authorisation: subscription keys, tokens, principal, policy."""

from shared.auth.clients import check_client_app
from shared.auth.errors import (
    ApplicationOnly,
    AuthError,
    ClientAppNotAllowed,
    Forbidden,
    InsufficientScope,
    InvalidToken,
    SigningKeysUnavailable,
    SubscriptionKeyError,
    SubscriptionKeyInvalid,
    SubscriptionKeyMissing,
)
from shared.auth.keys import KeySnapshot, SigningKeys
from shared.auth.policy import Access, Policy, authorize
from shared.auth.principal import Mode, Principal
from shared.auth.subscription import SubscriptionKeys
from shared.auth.tokens import TokenValidator

__all__ = [
    "Access",
    "ApplicationOnly",
    "AuthError",
    "ClientAppNotAllowed",
    "Forbidden",
    "InsufficientScope",
    "InvalidToken",
    "KeySnapshot",
    "Mode",
    "Policy",
    "Principal",
    "SigningKeys",
    "SigningKeysUnavailable",
    "SubscriptionKeyError",
    "SubscriptionKeyInvalid",
    "SubscriptionKeyMissing",
    "SubscriptionKeys",
    "TokenValidator",
    "authorize",
    "check_client_app",
]
