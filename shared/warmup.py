"""The start-up warm-up: fetch what a fresh instance's first request would otherwise wait for.

A cold start in Azure is a request waiting for a new instance. Before the worker hands that
instance any request it imports `function_app` (to index the functions); `function_app.py` calls
`start()` last, which starts one daemon thread and returns, so the import stays as cheap as it
was (`make bench`, P5). The thread, while the host finishes starting and the first request
comes in:

1. builds the runtime (`shared.runtime`: settings, and the imports of requests, redis-py...),
   and as soon as the signing keys exist in it, before the rest is built, starts loading them
   on a thread of their own (`SigningKeys.prefetch`: the OpenID discovery documents and the
   JWKS, parsed, which imports cryptography and the JWK parser): they head the chain of round
   trips a first request waits for;
2. then builds the MSAL clients (`DownstreamTokens.prepare`: msal imported, the tenant's
   discovery document fetched, the On-Behalf-Of client first) and, beside them, connects to the
   shared store when there is one.

A request that comes meanwhile waits for the work under way (the runtime's lock, the keys' lock,
the MSAL clients' build lock) rather than starting the same fetch again: nothing is fetched
twice, and whatever is left of the warm-up is all the first request waits for before its own
round trips (the On-Behalf-Of exchange and Dataverse). `make bench`, P11, measures it.

Nothing here can fail the start or a request. Without settings (tooling importing the app,
`make bench`'s P5) it does nothing. A fetch that fails is logged (the reason, never a value) and
left to the first request, which fetches on demand exactly as without the warm-up: a failed
prefetch does not start the keys' cold-retry interval, and an MSAL client that failed to build
is built again when first needed.

Not warmed: a connection to Dataverse (opening one takes a Dataverse request, which counts
against the service-protection limits) and tokens (there is no caller to exchange for yet).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.auth.keys import SigningKeys
    from shared.runtime import Runtime

log = logging.getLogger("central_api.warmup")

THREAD_NAME = "central-api-warmup"

_started = threading.Event()


def start() -> threading.Thread | None:
    """Warm up on a daemon thread (once per process); the thread, or None if already started."""
    if _started.is_set():
        return None
    _started.set()
    thread = threading.Thread(target=warm, name=THREAD_NAME, daemon=True)
    thread.start()
    return thread


def warm() -> None:
    """Build the runtime, then load keys, MSAL clients and the store connection side by side."""
    from shared.runtime import runtime
    from shared.settings import SettingsError

    keys_thread: list[threading.Thread] = []

    def fetch_keys(keys: SigningKeys) -> None:
        # As soon as the keys exist, while the rest of the runtime (redis-py...) is built.
        thread = threading.Thread(target=keys.prefetch, name=f"{THREAD_NAME}-keys", daemon=True)
        thread.start()
        keys_thread.append(thread)

    try:
        rt = runtime(on_keys=fetch_keys)
    except SettingsError:
        log.debug("no warm-up: the settings are missing or invalid (the first request says why)")
        return
    except Exception as exc:
        # Whatever it is, a background task must not die noisily or take the start with it:
        # the first request builds the runtime again and reports the failure where it belongs.
        log.warning("no warm-up: the runtime could not be built: %s", type(exc).__name__)
        return
    if not keys_thread:  # a request built the runtime first (it may be fetching them already)
        fetch_keys(rt.keys)
    store = threading.Thread(target=_store, args=(rt,), name=f"{THREAD_NAME}-store", daemon=True)
    store.start()
    _msal(rt)
    for thread in (*keys_thread, store):
        thread.join()


def _msal(rt: Runtime) -> None:
    from shared.downstream.errors import DownstreamTokenError

    try:
        rt.downstream.prepare()
    except DownstreamTokenError as exc:
        log.warning("MSAL clients not built at start-up (built on demand): %s", exc)


def _store(rt: Runtime) -> None:
    if rt.store is not None and not rt.store.ping():
        log.warning("the shared store did not answer at start-up")
