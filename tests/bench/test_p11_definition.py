"""P11's denominator (bench/p11_cold_start.py): each round's own delays, read from the emulators'
request logs: the v2 discovery before the JWKS (the smallest, when several were fetched side by
side), the JWKS, the On-Behalf-Of exchange and the first Dataverse read; nothing else."""

from __future__ import annotations

from typing import Any

from bench.p11_cold_start import JWT_BEARER, unavoidable_drawn

TENANT = "/tenant-id"
V2 = f"{TENANT}/v2.0/.well-known/openid-configuration"
V1 = f"{TENANT}/.well-known/openid-configuration"
KEYS = f"{TENANT}/discovery/v2.0/keys"
TOKEN = f"{TENANT}/oauth2/v2.0/token"


def entry(path: str, latency_ms: float, **extra: Any) -> dict[str, Any]:
    return {"method": "GET", "path": path, "latency_ms": latency_ms, **extra}


def test_the_round_trips_a_first_request_cannot_avoid_at_their_own_delays() -> None:
    entra = [
        entry(V2, 40.0),  # MSAL's, beside the keys' own
        entry(V1, 90.0),  # beside the v2 one: avoidable
        entry(V2, 30.0),
        entry(KEYS, 50.0),
        entry(V2, 60.0),  # MSAL's second client, after the keys
        entry(TOKEN, 150.0, method="POST", grant_type=JWT_BEARER),
        entry(KEYS, 0.0),  # the Dataverse emulator's own key fetch
    ]
    dataverse = [entry("/api/data/v9.2/contacts", 100.0, latency_class="read")]
    assert unavoidable_drawn(entra, dataverse) == 30.0 + 50.0 + 150.0 + 100.0


def test_a_round_trip_missing_from_the_logs_gives_no_denominator() -> None:
    entra = [entry(V2, 30.0), entry(KEYS, 50.0)]
    dataverse = [entry("/api/data/v9.2/contacts", 100.0, latency_class="read")]
    assert unavoidable_drawn(entra, dataverse) is None  # no On-Behalf-Of exchange
