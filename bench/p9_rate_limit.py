"""P9: the rate-limit check's cost per request ÷ one round trip to the shared store.

A is what the pipeline does for every request of a limited subscription when there is a store:
`RateLimits.check(subscription)` (shared/http/rate_limits.py): the limit's look-up, one EVALSHA
of the counting script through `Store` (its circuit breaker, redis-py's `Script`, the pooled
connection, the script's GET, INCR and PTTL inside the server) and reading the answer. The limit
is never reached (1,000,000 calls per 300 s, the largest RATE_LIMITS allows), so every request
is admitted and counted: the path every request takes until a client goes over its limit.

B is the floor: one bare redis-py `GET` of the same counter key, on the same client and
connection pool, to the same valkey-server. A GET is the cheapest round trip there is (one
key, a few bytes each way, no script), so B hides nothing A pays: what the ratio shows is all
that the check adds to the one round trip it cannot avoid, the script's work in the server
included. (An EVALSHA of a trivial script would be a kinder floor, since it already carries
redis-py's script call and the server's script machinery; it is measured against the same GET
and shown under the table, so that the two parts of what A adds can be told apart.)

Both sides run in this process against a real valkey-server of the bench's own, with the store
built and connected before the clock starts (importing redis-py is slow: P5). Afterwards the
bench checks that the store counted every request A made (none fell back to this instance's
memory). As for P8, the figure is measured with this thread and the server on two CPUs, and
again on one CPU, reported.
"""

from __future__ import annotations

from bench.context import BenchContext
from bench.core import Figure, Result, paired, per_item, placed, ratio_row
from shared.http.rate_limits import RateLimits
from shared.settings import MAX_RATE_LIMIT_CALLS, MAX_RATE_LIMIT_PERIOD, RateLimit

SUBSCRIPTION = "bench-limited"
BATCH = 200
ROUNDS = 60


def run(ctx: BenchContext) -> Result:
    limit = RateLimit(calls=MAX_RATE_LIMIT_CALLS, period_seconds=MAX_RATE_LIMIT_PERIOD)
    settings = ctx.store_settings("bench-p9", rate_limits={SUBSCRIPTION: limit})
    ctx.progress("P9: building the store and the limits")
    store = ctx.store(settings)
    limits = RateLimits(settings.rate_limits, store=store)
    assert limits.shared is not None
    key = limits.shared.key(SUBSCRIPTION)
    client = store._client  # B: the same redis-py client, pool and connection as the check's
    trivial = client.register_script("return 1")

    subscriptions = [SUBSCRIPTION] * BATCH
    keys = [key] * BATCH
    rounds = ctx.scaled(ROUNDS, 3)
    server = int(client.info("server")["process_id"])

    def checks(_: int) -> float:
        return per_item(limits.check, subscriptions)

    def gets(_: int) -> float:
        return per_item(client.get, keys)

    def trivial_scripts(_: int) -> float:
        return per_item(lambda name: trivial([name], []), keys)

    ctx.progress(f"P9: {rounds} rounds of {BATCH} checks and {BATCH} GETs, three times")
    with placed(server, apart=True):
        checks(0)  # warm-up: the script is loaded, the connection open
        gets(0)
        trivial_scripts(0)
        measured = paired(checks, gets, rounds=rounds)
        script_floor = paired(trivial_scripts, gets, rounds=rounds)
    with placed(server, apart=False) as pinned:
        together = paired(checks, gets, rounds=rounds) if pinned else None
    made = BATCH * (1 + rounds * (2 if together else 1))  # the warm-up and the rounds of A
    counted = int(client.get(key) or 0)
    assert counted == made, f"the store counted {counted} of {made} checks"
    assert len(limits.local) == 0, "a check fell back to this instance's memory"
    assert store.state == "ok"
    notes = [
        f"P9: an EVALSHA of a trivial script (`return 1`) ÷ the same GET, side by side: "
        f"{script_floor.describe()}: what calling any script costs over a GET; the rest of "
        "what the check adds is the counting script's work in the server and ours around it."
    ]
    if together is not None:
        notes.append(
            "P9 with this process and the store on one CPU (a round trip of two context "
            f"switches, the cheapest this machine has): {together.describe()}."
        )
    return Result(
        [
            ratio_row(
                "P9",
                "rate-limit check per request (shared counter) ÷ one bare GET round trip",
                measured,
                1.5,
            )
        ],
        notes,
    )


FIGURE = Figure("P9", "rate-limit check per request ÷ one store round trip", run)
