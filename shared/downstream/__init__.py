"""Downstream tokens: On-Behalf-Of and client credentials for Dataverse."""

from shared.downstream.cache import CachedToken, CacheLevel, Lookup, TokenCache, cache_key
from shared.downstream.errors import (
    AssertionRejected,
    ClaimsChallenge,
    ConsentRequired,
    CredentialRejected,
    DownstreamTokenError,
    TokenServiceTimeout,
    TokenServiceUnavailable,
)
from shared.downstream.shared_cache import SharedTokenCache
from shared.downstream.tokens import DownstreamTokens

__all__ = [
    "AssertionRejected",
    "CacheLevel",
    "CachedToken",
    "ClaimsChallenge",
    "ConsentRequired",
    "CredentialRejected",
    "DownstreamTokenError",
    "DownstreamTokens",
    "Lookup",
    "SharedTokenCache",
    "TokenCache",
    "TokenServiceTimeout",
    "TokenServiceUnavailable",
    "cache_key",
]
