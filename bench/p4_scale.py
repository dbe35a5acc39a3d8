"""P4: per-request cost with 100,000 distinct users cached ÷ with 10,000, and memory.

A request here is what every user request does before Dataverse: validate the token (a hit in
the memory of validated tokens) and get the user's Dataverse token (`DownstreamTokens.for_user`,
a hit in the On-Behalf-Of cache). Worlds of 100,000, 10,000 and 10 users, each with its own
validator and downstream tokens, at cache sizes that hold them.

**What the figure compares.** 100,000 users ÷ 10,000: both far beyond the CPU's caches (one
user's entries take about 3 KB, so 10,000 users are 32 MB, the whole L3 of this machine, and
100,000 ten times that), so the two differ in the number of entries only and the ratio shows
how the cost grows with it: about 1 for hashing and dictionaries, 10 for a linear scan. 10,000
÷ 10 (reported) is the earlier figure: there the small world lives in the L1 and L2 caches, so
it mixes the memory hierarchy into the ratio (see bench/README.md).

**How the caches are filled.** 10,000 real tokens are minted by the Entra emulator and validated
in full (signature and claims); the 100,000-user world holds them and 90,000 more users whose
tokens are those tokens with the end of the signature changed (as long, all distinct) and whose
principals are copies of the validated ones with a new `oid` and fields of their own, written
through the validator's own cache. Minting and verifying 100,000 RS256 tokens would take minutes
and measure nothing of the hit path, which reads only the token's SHA-256. The OBO caches are
filled through their `TokenCache` with Dataverse-sized tokens, as an exchange would fill them.
The bench checks that no timed request verified a signature or made an exchange.

Every world is driven by 100,000 distinct token *strings* in random order (each of the 10,000
users' tokens ten times, each of the 10 users' 10,000 times, every copy a string of its own), so
all read their input from the same amount of memory and only the caches differ. In the largest
world every request hits a different entry.

Memory per 1,000 users is what `tracemalloc` sees retained after 10,000 real users pass through
both caches (the principal, the Dataverse token, digests and the caches' own structures; the
caches hold no incoming tokens), divided by 10.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import time
import tracemalloc
import uuid
from collections.abc import Callable

from bench.context import BenchContext
from bench.core import Figure, Result, Row, paired, per_item, ratio_row
from shared.auth import SigningKeys, TokenValidator
from shared.auth.principal import Principal
from shared.auth.validated import token_digest
from shared.downstream import CachedToken, DownstreamTokens, Lookup
from shared.settings import Settings

USERS_HUGE = 100_000
USERS_LARGE = 10_000
USERS_SMALL = 10
BATCH = 1_000
ROUNDS = 100
DATAVERSE_TOKEN_BYTES = 2_000  # a Dataverse access token for a user is 1.5 to 2.5 KB
TARGET = 1.2


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
        self._version = keys.current().version

    def admit(self, token: str, serial: int, principal: Principal | None = None) -> None:
        """The user's first request: validation (or, given the `principal` validation would
        give, its cache entry written directly), and the OBO cache filled as an exchange would."""
        if principal is None:
            self.validator.validate(token)
        else:
            cache = self.validator._cache
            assert cache is not None
            cache.put(token_digest(token), principal, now=time.time(), version=self._version)
        lookup = Lookup.of(token, self.downstream.user_scopes)
        dataverse_token = f"{serial:012d}".ljust(DATAVERSE_TOKEN_BYTES, "x")
        self.downstream._l1.put(lookup, CachedToken(dataverse_token, time.time() + 3600.0))

    def request(self, token: str) -> None:
        """As `shared.http.pipeline` does it: the OBO assertion is the request's own token."""
        self.validator.validate(token)
        self.downstream.for_user(token)

    @property
    def verifications(self) -> int:
        return self.validator.verifications


def _copy(token: str) -> str:
    """The same text in a new string object, as a request's header value would be."""
    return (token + ".")[:-1]


def _variant(token: str, serial: int) -> str:
    """Another user's token of the same length: the end of the signature replaced."""
    return token[:-12] + f"{serial:012d}"


def _another_user(principal: Principal) -> Principal:
    """A principal as validating another user's token gives it: a new oid, its own strings."""
    return dataclasses.replace(
        principal,
        oid=str(uuid.uuid4()),
        tid=_copy(principal.tid),
        client_app_id=_copy(principal.client_app_id),
        permissions=frozenset(_copy(p) for p in principal.permissions),
    )


def _stream(tokens: list[str], length: int) -> list[str]:
    """`length` requests over `tokens`, each as often, every one a string of its own, shuffled."""
    stream = [_copy(t) for t in tokens * (length // len(tokens))]
    random.Random(5).shuffle(stream)
    return stream


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
    huge_users = ctx.scaled(USERS_HUGE, 2_000)
    large_users = ctx.scaled(USERS_LARGE, 200)
    settings = ctx.settings()
    huge_settings = ctx.settings(validated_token_cache_size=huge_users, obo_cache_size=huge_users)
    assert settings.validated_token_cache_size >= large_users
    assert settings.obo_cache_size >= large_users
    ctx.progress(f"P4: minting {large_users:,} tokens")
    tokens = ctx.user_tokens(large_users)

    ctx.progress(f"P4: filling the caches ({huge_users:,}, {large_users:,} and 10 users)")
    huge, large, small = World(keys, huge_settings), World(keys, settings), World(keys, settings)
    for serial, token in enumerate(tokens):
        for world in (huge, large):
            world.admit(token, serial)
    for serial, token in enumerate(tokens[:USERS_SMALL]):
        small.admit(token, serial)
    validated = [large.validator.validate(t) for t in tokens]
    huge_tokens = list(tokens)
    for serial in range(large_users, huge_users):
        token = _variant(tokens[serial % large_users], serial)
        huge.admit(token, serial, _another_user(validated[serial % large_users]))
        huge_tokens.append(token)
    assert len(set(huge_tokens)) == huge_users
    streams = {
        huge: _stream(huge_tokens, huge_users),
        large: _stream(tokens, huge_users),
        small: _stream(tokens[:USERS_SMALL], huge_users),
    }

    def timed(world: World) -> Callable[[int], float]:
        stream = streams[world]

        def one_round(r: int) -> float:
            start = (r * BATCH) % len(stream)
            return per_item(world.request, stream[start : start + BATCH])

        return one_round

    ctx.progress(f"P4: requests with {huge_users:,} users cached, {large_users:,} and 10")
    for world in (huge, large, small):
        per_item(world.request, streams[world][:BATCH])  # warm-up
    verified = sum(w.verifications for w in (huge, large, small))
    rounds = ctx.scaled(ROUNDS, 3)
    # The worlds' millions of objects out of the collector's sight: `per_item` collects before
    # every loop, which would otherwise walk them all, 400 times (minutes, and nothing timed).
    gc.collect()
    gc.freeze()
    try:
        scaling = paired(timed(huge), timed(large), rounds=rounds)
        hierarchy = paired(timed(large), timed(small), rounds=rounds)
    finally:
        gc.unfreeze()
    assert sum(w.verifications for w in (huge, large, small)) == verified
    assert huge.downstream.obo_exchanges == large.downstream.obo_exchanges == 0
    assert huge.validator.cached_tokens == huge.downstream.cached_users == huge_users
    assert large.validator.cached_tokens == large.downstream.cached_users == large_users

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
                "P4",
                f"per-request cost, {huge_users:,} users' tokens cached ÷ {large_users:,} "
                "(both beyond the CPU caches)",
                scaling,
                TARGET,
            ),
            Row(
                "P4",
                f"per-request cost, {large_users:,} users' tokens cached ÷ 10 "
                "(the CPU caches' effect included)",
                hierarchy.describe(),
                "reported",
                None,
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


FIGURE = Figure("P4", "per-request cost with 100,000 users cached ÷ 10,000; memory", run)
