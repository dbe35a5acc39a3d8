"""The start-up warm-up: fetch what a fresh instance's first request would otherwise wait for.

A cold start in Azure is a request waiting for a new instance. Before the worker hands that
instance any request it imports `function_app` (to index the functions); `function_app.py` calls
`start()` last, which starts one daemon thread and returns, so the import stays as cheap as it
was (`make bench`, P5). The thread, while the host finishes starting and the first request
comes in:

1. builds the runtime (`shared.runtime`: settings, and the imports of requests, redis-py...);
   as soon as the signing keys and the downstream tokens exist in it, before the rest is built
   (the store, whose redis-py import is the slowest), it starts, each on a thread of its own,
   loading the keys (`SigningKeys.prefetch`: the OpenID discovery documents and the JWKS,
   parsed, which imports cryptography and the JWK parser), building the On-Behalf-Of MSAL
   client (`DownstreamTokens.prepare`: msal imported, the tenant's discovery document fetched)
   and, in managed-identity mode, fetching the API's own managed-identity token
   (`DownstreamTokens.prime_credential`: azure-identity imported, the token MSAL presents as its
   client assertion cached; in a first request this cost about 140 ms in series before its
   exchange, P11): they head the chain a user's first request waits for;
2. once the runtime is built, connects to the shared store when there is one (and imports the
   AEAD cipher the shared token cache seals the first exchange's token with, in the request);
3. once those are done, and at a moment when no request is being served (`IN_FLIGHT`, waited
   for at most `QUIET_WAIT_SECONDS`), prepares the async Dataverse client
   (`DataverseClient.prepare`: aiohttp imported, its TLS context loaded) and then builds the
   app-mode MSAL client. Imports are CPU under one GIL, and aiohttp's takes well over 100 ms of
   it (most of it loading the system's CA store): done beside a first request, it slowed that
   request's own steps. Until it is done an async request sends to Dataverse through the sync
   pool (`DataverseClient.defer`), which needs no import; an application's first request
   builds its MSAL client on demand.

A request that comes meanwhile waits for the work under way (the runtime's lock, the keys' lock,
an MSAL client's build lock, the managed-identity token's) rather than starting the same
fetch again: nothing is fetched twice, and whatever is left of the warm-up is all the first
request waits for before its own round trips (the On-Behalf-Of exchange and Dataverse).
`make bench`, P11, measures it.

Nothing here can fail the start or a request. Without settings (tooling importing the app,
`make bench`'s P5) it does nothing. A fetch that fails is logged (the reason, never a value) and
left to the first request, which fetches on demand exactly as without the warm-up: a failed
prefetch does not start the keys' cold-retry interval, and an MSAL client that failed to build
is built again when first needed.

Not warmed: a connection to Dataverse (it belongs to the worker's event loop, which this thread
cannot use, and opening one through aiohttp takes a Dataverse request, which counts against the
service-protection limits) and callers' tokens (there is no caller to exchange for yet).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.auth.keys import SigningKeys
    from shared.downstream.tokens import DownstreamTokens
    from shared.runtime import Runtime

log = logging.getLogger("central_api.warmup")

THREAD_NAME = "central-api-warmup"
# How long the last step waits for a moment without requests (an instance started under load
# may have none for a while; its requests then share the CPU with the import).
QUIET_WAIT_SECONDS = 2.0

_started = threading.Event()
_thread: threading.Thread | None = None


def start() -> threading.Thread | None:
    """Warm up on a daemon thread (once per process); the thread, or None if already started."""
    global _thread
    if _started.is_set():
        return None
    _started.set()
    _thread = threading.Thread(target=warm, name=THREAD_NAME, daemon=True)
    _thread.start()
    return _thread


def wait(timeout: float) -> bool:
    """Wait for this process's warm-up to end (tests whose counts of the emulators' requests it
    would otherwise disturb); False if it is still running after `timeout` seconds."""
    thread = _thread
    if thread is not None:
        thread.join(timeout)
    return thread is None or not thread.is_alive()


def warm() -> None:
    """Build the runtime; keys and MSAL clients as soon as they exist, then the store beside."""
    from shared.runtime import runtime
    from shared.settings import SettingsError

    started: list[threading.Thread] = []

    def early(keys: SigningKeys, downstream: DownstreamTokens) -> None:
        # As soon as they exist, while the rest of the runtime (redis-py...) is built.
        steps: tuple[tuple[str, Callable[[], object]], ...] = (
            ("keys", keys.prefetch),
            ("msal", lambda: _downstream(lambda: downstream.prepare(app=False), "MSAL client")),
            ("credential", lambda: _downstream(downstream.prime_credential, "API credential")),
        )
        for name, step in steps:
            thread = threading.Thread(
                target=_guarded, args=(name, step), name=f"{THREAD_NAME}-{name}", daemon=True
            )
            thread.start()
            started.append(thread)

    try:
        rt = runtime(early=early)
    except SettingsError:
        log.debug("no warm-up: the settings are missing or invalid (the first request says why)")
        return
    except Exception as exc:
        # Whatever it is, a background task must not die noisily or take the start with it:
        # the first request builds the runtime again and reports the failure where it belongs.
        log.warning("no warm-up: the runtime could not be built: %s", type(exc).__name__)
        return
    if not started:  # a request built the runtime first (it may be fetching them already)
        early(rt.keys, rt.downstream)
    # Last, the async Dataverse client: a first request needs aiohttp only after its
    # On-Behalf-Of exchange, and imports are CPU under one GIL, so importing it sooner would
    # slow the keys' and MSAL's own; and at a moment when no request is being served, if one
    # comes soon enough. Until then a request sends through the sync pool, which needs no
    # import (`DataverseClient.defer`).
    rt.dataverse.defer()
    try:
        _guarded("store", lambda: _store(rt))
        for thread in started:
            thread.join()
        from shared.inflight import IN_FLIGHT

        IN_FLIGHT.wait_quiet(QUIET_WAIT_SECONDS)
    finally:
        _guarded("dataverse", rt.dataverse.prepare)
    # The app-mode MSAL client (client credentials) last: a user's first request needs only the
    # On-Behalf-Of one, and an application's first request builds it on demand if it comes
    # first (each client has its own build lock).
    _guarded("msal-app", lambda: _downstream(rt.downstream.prepare, "MSAL app client"))


def _guarded(step: str, action: Callable[[], object]) -> None:
    """Run one step; whatever it raises is logged (its kind only) and goes no further. The
    steps report their expected failures themselves; this is for the unexpected, such as the
    store being closed under the ping when the runtime is reset (tests)."""
    try:
        action()
    except Exception as exc:
        log.warning("warm-up step %s failed: %s", step, type(exc).__name__)


def _downstream(step: Callable[[], None], what: str) -> None:
    from shared.downstream.errors import DownstreamTokenError

    try:
        step()
    except DownstreamTokenError as exc:
        log.warning("%s not ready at start-up (done on demand): %s", what, exc)


def _store(rt: Runtime) -> None:
    if rt.store is None:
        return
    # The shared token cache seals the first exchange's token with it, in the request.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401

    if not rt.store.ping():
        log.warning("the shared store did not answer at start-up")
