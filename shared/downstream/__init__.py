"""Downstream tokens: On-Behalf-Of and client credentials for Dataverse.

`shared.downstream.shared_cache` (L2 of the On-Behalf-Of cache) is imported from there, and only
when a shared store is configured: without one, a cold start does not pay for it."""

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
    "TokenCache",
    "TokenServiceTimeout",
    "TokenServiceUnavailable",
    "cache_key",
]
