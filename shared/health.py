"""`GET /api/health`: anonymous readiness for load balancers, the Functions health probe and
operators.

It reports whether this instance can serve: its settings load, the tenant's signing keys are
loaded (fetched now if need be) and not past their grace period (`stale` while they are older
than their maximum age but still used: ready all the same), and Dataverse answers at all (an
unauthenticated request: any HTTP answer, normally 401, counts as reachable). No credential is
used and nothing secret is shown. Results are kept for `CHECK_INTERVAL` seconds so that an
anonymous caller cannot turn the endpoint into load on Entra or Dataverse. 200 when everything
is ready, else 503.

`sharedStore` is "off" without REDIS_URL, else the store's breaker state: "ok", or "degraded"
while calls to it fail. A degraded store does not make the instance unready (the API works
without it, each instance on its own), so it still answers 200. The check PINGs the store (kept
like the other checks; it feeds the breaker), and the breaker's state is read live on every
answer, since it costs nothing and changes within seconds.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import azure.functions as func

from shared.settings import SettingsError

CHECK_INTERVAL = 30.0
PROBE_TIMEOUT = 3.0

bp = func.Blueprint()

_lock = threading.Lock()
_last: tuple[float, dict[str, str]] | None = None
_session: Any = None


def _dataverse_reachable(url: str) -> bool:
    global _session
    import requests

    if _session is None:
        _session = requests.Session()
    try:
        _session.get(f"{url}/api/data/v9.2/", timeout=PROBE_TIMEOUT, allow_redirects=False)
    except requests.RequestException:
        return False
    return True


def _check() -> dict[str, str]:
    from shared.auth.errors import SigningKeysUnavailable
    from shared.runtime import runtime

    try:
        rt = runtime()
    except SettingsError:
        return {
            "settings": "invalid",
            "signingKeys": "unknown",
            "dataverse": "unknown",
            "sharedStore": "unknown",
        }
    checks = {"settings": "ok"}
    try:
        rt.keys.current()
        # Stale keys still validate (for the grace period): ready, but worth an operator's look.
        checks["signingKeys"] = "stale" if rt.keys.state == "stale" else "ok"
    except SigningKeysUnavailable:
        checks["signingKeys"] = "unavailable"
    checks["dataverse"] = (
        "reachable" if _dataverse_reachable(rt.settings.dataverse_url) else "unreachable"
    )
    if rt.store is not None:
        rt.store.ping()  # within REDIS_TIMEOUT_SECONDS; at once while the breaker is open
    checks["sharedStore"] = _store_state()
    return checks


def _store_state() -> str:
    from shared.runtime import runtime

    try:
        store = runtime().store
    except SettingsError:
        return "unknown"
    return "off" if store is None else store.state


def checks(*, now: float | None = None) -> dict[str, str]:
    global _last
    moment = time.monotonic() if now is None else now
    with _lock:
        if _last is None or moment - _last[0] >= CHECK_INTERVAL:
            _last = (moment, _check())
        kept = _last[1]
    if kept["settings"] != "ok":
        return kept
    return {**kept, "sharedStore": _store_state()}


def forget() -> None:
    """Drop the kept result (tests)."""
    global _last
    with _lock:
        _last = None


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    result = checks()
    ready = result.get("settings") == "ok" and result.get("signingKeys") in ("ok", "stale")
    ready = ready and result.get("dataverse") == "reachable"
    return func.HttpResponse(
        json.dumps({"status": "ok" if ready else "unavailable", "checks": result}),
        status_code=200 if ready else 503,
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )
