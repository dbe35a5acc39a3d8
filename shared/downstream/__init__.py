"""Downstream tokens: On-Behalf-Of and client credentials for Dataverse."""

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
from shared.downstream.tokens import DownstreamTokens

__all__ = [
    "AssertionRejected",
    "ClaimsChallenge",
    "ConsentRequired",
    "CredentialRejected",
    "DownstreamTokenError",
    "DownstreamTokens",
    "TokenCache",
    "TokenServiceTimeout",
    "TokenServiceUnavailable",
    "cache_key",
]
