"""The process's long-lived services, built once on first use and shared by every invocation.

Building them reads settings and creates HTTP sessions and MSAL clients but calls nothing
remote: discovery, keys and tokens are fetched when a request first needs them, or by the
start-up warm-up (shared/warmup.py) before one does. Heavy libraries
are imported here, inside `build`, so that importing `function_app` stays cheap (cold starts).
`reset()` is for tests that change settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.settings import KEY_REFRESH_INTERVAL_SECONDS, Settings, get_settings

if TYPE_CHECKING:
    from shared.auth.keys import SigningKeys
    from shared.auth.subscription import SubscriptionKeys
    from shared.auth.tokens import TokenValidator
    from shared.dataverse.client import DataverseClient
    from shared.domains.paging import PageTokens
    from shared.downstream.tokens import DownstreamTokens
    from shared.http.limits import CallerLimits
    from shared.http.rate_limits import RateLimits
    from shared.store import Store


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    subscriptions: SubscriptionKeys
    keys: SigningKeys
    validator: TokenValidator
    downstream: DownstreamTokens
    dataverse: DataverseClient
    page_tokens: PageTokens
    callers: CallerLimits  # per instance: this process's counts
    rate_limits: RateLimits  # per subscription: in the shared store when there is one
    store: Store | None = None  # shared by every instance; None without REDIS_URL


Early = Callable[["SigningKeys", "DownstreamTokens"], object]


def build(settings: Settings, *, early: Early | None = None) -> Runtime:
    """The services for `settings`. `early` is called with the signing keys and the downstream
    tokens as soon as they exist, before the rest (the store, with redis-py's slow import) is
    built: the warm-up starts fetching keys and building MSAL clients there (shared/warmup.py).
    The downstream tokens get the store's level (L2) afterwards, before any request sees them."""
    import requests

    from shared import telemetry
    from shared.auth.keys import SigningKeys
    from shared.downstream.tokens import DownstreamTokens

    telemetry.configure(settings)  # log safeguards once per process; Azure Monitor if set
    keys = SigningKeys(
        settings.authority,
        session=requests.Session(),
        timeout=min(5.0, settings.downstream_timeout_seconds),
        min_refresh_interval=KEY_REFRESH_INTERVAL_SECONDS,
        max_age=settings.signing_keys_max_age_seconds,
        grace=settings.signing_keys_grace_seconds,
    )
    downstream = DownstreamTokens(settings)
    if early is not None:
        early(keys, downstream)
    # Imported after `early`: what it started overlaps them (redis-py is the slowest).
    from shared.auth.subscription import SubscriptionKeys
    from shared.auth.tokens import TokenValidator
    from shared.dataverse.client import DataverseClient
    from shared.domains import paging
    from shared.http.limits import CallerLimits
    from shared.http.rate_limits import RateLimits
    from shared.store import build_store

    store = build_store(settings)
    if store is not None:
        downstream.attach_store(store)
    return Runtime(
        settings=settings,
        subscriptions=SubscriptionKeys(settings.subscription_keys),
        keys=keys,
        validator=TokenValidator(
            keys,
            tenant_id=settings.tenant_id,
            client_id=settings.api_client_id,
            clock_skew=settings.clock_skew_seconds,
            cache_size=settings.validated_token_cache_size,
        ),
        downstream=downstream,
        dataverse=DataverseClient(
            settings.dataverse_url,
            timeout=settings.downstream_timeout_seconds,
            pool_size=settings.dataverse_pool_size,
            max_retry_wait=settings.dataverse_max_retry_wait_seconds,
        ),
        page_tokens=paging.PageTokens.from_data_keys(
            settings.data_key,
            settings.data_key_previous,
            lifetime_seconds=settings.page_token_lifetime_seconds,
        ),
        callers=CallerLimits(settings.max_concurrent_requests_per_caller),
        rate_limits=RateLimits(settings.rate_limits, store=store),
        store=store,
    )


_lock = threading.Lock()
_current: Runtime | None = None


def runtime(*, early: Early | None = None) -> Runtime:
    """The process's runtime, built by the first caller (`early`: see `build`; it is called
    only when this call builds the runtime)."""
    global _current
    current = _current
    if current is not None:
        return current
    with _lock:
        if _current is None:
            _current = build(get_settings(), early=early)
        return _current


def reset() -> None:
    """Forget settings and services (tests that change the environment)."""
    global _current
    with _lock:
        if _current is not None:
            # Their pooled sockets would otherwise wait for the collector.
            _current.dataverse.close()
            if _current.store is not None:
                _current.store.close()
        _current = None
        get_settings.cache_clear()
