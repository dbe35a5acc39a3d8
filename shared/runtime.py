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


def build(settings: Settings, *, on_keys: Callable[[SigningKeys], object] | None = None) -> Runtime:
    """The services for `settings`. `on_keys` is called with the signing keys as soon as they
    exist, before the rest is built (the warm-up starts fetching them there: shared/warmup.py)."""
    import requests

    from shared import telemetry
    from shared.auth.keys import SigningKeys

    telemetry.configure(settings)  # log safeguards once per process; Azure Monitor if set
    keys = SigningKeys(
        settings.authority,
        session=requests.Session(),
        timeout=min(5.0, settings.downstream_timeout_seconds),
        min_refresh_interval=KEY_REFRESH_INTERVAL_SECONDS,
        max_age=settings.signing_keys_max_age_seconds,
        grace=settings.signing_keys_grace_seconds,
    )
    if on_keys is not None:
        on_keys(keys)
    # Imported after `on_keys`: a fetch started there overlaps them (redis-py is the slowest).
    from shared.auth.subscription import SubscriptionKeys
    from shared.auth.tokens import TokenValidator
    from shared.dataverse.client import DataverseClient
    from shared.domains import paging
    from shared.downstream.tokens import DownstreamTokens
    from shared.http.limits import CallerLimits
    from shared.http.rate_limits import RateLimits
    from shared.store import build_store

    store = build_store(settings)
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
        downstream=DownstreamTokens(settings, store=store),
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


def runtime(*, on_keys: Callable[[SigningKeys], object] | None = None) -> Runtime:
    """The process's runtime, built by the first caller (`on_keys`: see `build`; it is called
    only when this call builds the runtime)."""
    global _current
    current = _current
    if current is not None:
        return current
    with _lock:
        if _current is None:
            _current = build(get_settings(), on_keys=on_keys)
        return _current


def reset() -> None:
    """Forget settings and services (tests that change the environment)."""
    global _current
    with _lock:
        if _current is not None and _current.store is not None:
            _current.store.close()  # its pooled sockets would otherwise wait for the collector
        _current = None
        get_settings.cache_clear()
