"""P4: per-request cost with 10,000 distinct users' tokens cached ÷ with 10, and memory.

A request here is what every user request does before Dataverse: validate the token (a hit in
the memory of validated tokens) and get the user's Dataverse token (`DownstreamTokens.for_user`,
a hit in the On-Behalf-Of cache). Two worlds, each with its own validator and downstream
tokens at the default cache sizes: one holding 10,000 users, one holding 10. The OBO cache is
filled through its `TokenCache` with Dataverse-sized tokens (10,000 real exchanges would only
time the emulator); that no request triggered an exchange is checked.

Both worlds are driven by the same kind of stream: 10,000 distinct token *strings* in random
order (in the small world, 1,000 copies of each of its 10 tokens), so both read their input
from the same amount of memory and only the caches differ. In the large world every request
hits a different entry, the worst case for locality.

Memory per 1,000 users is what `tracemalloc` sees retained after 10,000 users pass through
both caches (the principal, the Dataverse token, digests and the caches' own structures; the
caches hold no incoming tokens), divided by 10.
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc

from bench.context import BenchContext
from bench.core import Figure, Result, Row, paired, per_item, ratio_row
from shared.auth import SigningKeys, TokenValidator
from shared.downstream import CachedToken, DownstreamTokens, Lookup
from shared.settings import Settings

USERS_LARGE = 10_000
USERS_SMALL = 10
BATCH = 1_000
ROUNDS = 100
DATAVERSE_TOKEN_BYTES = 2_000  # a Dataverse access token for a user is 1.5 to 2.5 KB


class World:
    def __init__(self, keys: SigningKeys, settings: Settings) -> None:
        self.validator = TokenValidator(
            keys,
            tenant_id=settings.tenant_id,
            client_id=settings.api_client_id,
            clock_skew=settings.clock_skew_seconds,
            cache_size=settings.validated_token_cache_size,
        )
        self.downstream = DownstreamTokens(settings)

    def admit(self, token: str, serial: int) -> None:
        """The user's first request: validation, and the OBO cache filled as an exchange would."""
        self.validator.validate(token)
        lookup = Lookup.of(token, self.downstream.user_scopes)
        dataverse_token = f"{serial:012d}".ljust(DATAVERSE_TOKEN_BYTES, "x")
        self.downstream._l1.put(lookup, CachedToken(dataverse_token, time.time() + 3600.0))

    def request(self, token: str) -> None:
        """As `shared.http.pipeline` does it: the OBO assertion is the request's own token."""
        self.validator.validate(token)
        self.downstream.for_user(token)


def _copy(token: str) -> str:
    """The same text in a new string object, as a request's header value would be."""
    return (token + ".")[:-1]


def _memory_per_thousand(keys: SigningKeys, settings: Settings, tokens: list[str]) -> float:
    world = World(keys, settings)
    world.admit(_copy(tokens[0]), 0)  # first-use allocations (lazy imports, caches' setup)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for serial, token in enumerate(tokens[1:], start=1):
            world.admit(_copy(token), serial)
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert world.validator.cached_tokens == len(tokens)
    assert world.downstream.cached_users == len(tokens)
    return retained / (len(tokens) - 1) * 1_000


def run(ctx: BenchContext) -> Result:
    keys = ctx.signing_keys()
    settings = ctx.settings()
    users = ctx.scaled(USERS_LARGE, BATCH)
    assert settings.validated_token_cache_size >= users
    assert settings.obo_cache_size >= users
    ctx.progress("P4: minting tokens")
    tokens = ctx.user_tokens(users)

    ctx.progress("P4: filling the caches")
    large, small = World(keys, settings), World(keys, settings)
    for serial, token in enumerate(tokens):
        large.admit(token, serial)
    for serial, token in enumerate(tokens[:USERS_SMALL]):
        small.admit(token, serial)
    shuffle = random.Random(5).shuffle
    large_stream = [_copy(t) for t in tokens]
    shuffle(large_stream)
    small_stream = [_copy(t) for t in tokens[:USERS_SMALL] * (users // USERS_SMALL)]
    shuffle(small_stream)

    def batch(stream: list[str], r: int) -> list[str]:
        start = (r * BATCH) % len(stream)
        return stream[start : start + BATCH]

    ctx.progress("P4: requests with 10,000 users cached and with 10")
    for world, stream in ((large, large_stream), (small, small_stream)):
        per_item(world.request, stream[:BATCH])  # warm-up
    verified = large.validator.verifications + small.validator.verifications
    measured = paired(
        lambda r: per_item(large.request, batch(large_stream, r)),
        lambda r: per_item(small.request, batch(small_stream, r)),
        rounds=ctx.scaled(ROUNDS, 3),
    )
    assert large.validator.verifications + small.validator.verifications == verified
    assert large.downstream.obo_exchanges == small.downstream.obo_exchanges == 0
    assert large.validator.cached_tokens == large.downstream.cached_users == users

    ctx.progress("P4: memory per 1,000 cached users")
    per_thousand = _memory_per_thousand(keys, settings, tokens)
    bound = (
        f"bounded by VALIDATED_TOKEN_CACHE_SIZE and OBO_CACHE_SIZE "
        f"({settings.validated_token_cache_size:,} and {settings.obo_cache_size:,}: "
        f"≤ {per_thousand * settings.validated_token_cache_size / 1e9:.0f} MB at the defaults)"
    )
    return Result(
        [
            ratio_row(
                "P4", f"per-request cost, {users:,} users' tokens cached ÷ 10", measured, 1.2
            ),
            Row(
                "P4",
                "memory per 1,000 cached users (validated tokens + OBO tokens)",
                f"{per_thousand / 1e6:.1f} MB",
                "reported; " + bound,
                None,
            ),
        ]
    )


FIGURE = Figure("P4", "per-request cost with 10,000 users cached ÷ 10; memory", run)
