"""P8: the latency of an L2 hit (L1 cold) ÷ one bare GET round trip to the store.

A is what a request pays for its Dataverse token when this instance has not seen the caller's
token yet and another instance has already exchanged it: `DownstreamTokens.for_user(token)` with
L1 empty and the entry present in L2 (shared/downstream). That is the L1 look-up and its miss
(SHA-256 of the token and scopes, twice: once more under the token's stripe lock), the L2 key (an
HMAC-SHA256 of the token under the server's lookup key), one GET through `Store` (its circuit
breaker, the pooled redis-py client; `Store.get_while`, which derives the value key, HKDF-SHA256
from the incoming token, while the GET is in flight), opening the value (AES-256-GCM decryption
of the ~2 KB Dataverse token with the entry's key as associated data, the expiry check) and
filing the token in L1. It is the whole cost of an L2 hit, not only what it adds to the round
trip, so the figure errs against us.

B is the floor: one bare redis-py `GET` of the same entry's key (the same ~2 KB encrypted
value), on the same client and connection pool, to the same valkey-server: what reading the
entry costs at the least, with no key derivation and no decryption.

Each round a fresh `DownstreamTokens` (a new instance's L1, empty, over the same store) takes 200
tokens, each 1.4 KB in the claim shape Entra issues, whose entries are in L2 (written through the
L2 cache's own `put` before the clock starts, as an exchange on another instance would; the
Dataverse tokens are 2 KB). Both sides run in this process against a real valkey-server, with the
store built and connected beforehand (importing redis-py is slow: P5). The bench checks that
every request was an L2 hit and none made an exchange.

The figure is measured with this thread and the server on two CPUs (`bench.core.placed`: the
kind of round trip a deployment has), and again on one CPU, reported. Notes say where A's time
goes: an L2 hit's own work against an in-memory stand-in for the store (`_Memory`: the same
`Store` and entries, answered from a dict); A ÷ that work followed by a bare GET (below 1.00:
part of the work overlaps the round trip); and A ÷ the same hit with the GET and the value key's
derivation one after the other (`_Serial`, the hit path before `get_while`), side by side: what
the overlap saves.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from bench.context import BenchContext
from bench.core import Figure, Paired, Result, paired, per_item, placed, ratio_row
from shared.downstream import CachedToken, DownstreamTokens, Lookup
from shared.store import Breaker, Store

TOKENS = 200
ROUNDS = 60
DATAVERSE_TOKEN_BYTES = 2_000  # a Dataverse access token for a user is 1.5 to 2.5 KB

T = TypeVar("T")


class _Memory:
    """The store's client without a server: the same entries, answered from a dict. It is its
    own connection pool and connection too, for `Store.get_while` (send, then read)."""

    def __init__(self, entries: dict[str, bytes]) -> None:
        self._entries = entries
        self._sent: str | None = None
        self.connection_pool = self

    def get(self, key: str) -> bytes | None:
        return self._entries.get(key)

    def get_connection(self) -> _Memory:
        return self

    def release(self, connection: _Memory) -> None:
        pass

    def send_command(self, command: str, key: str) -> None:
        self._sent = key

    def read_response(self) -> bytes | None:
        assert self._sent is not None
        return self._entries.get(self._sent)

    def register_script(self, source: str) -> Callable[..., None]:
        return lambda *args: None


class _Serial(Store):
    """The store as an L2 hit used it before `get_while`: the whole round trip, and only then
    the work that does not need the value (deriving the value key). For the note only."""

    def get_while(self, key: str, meanwhile: Callable[[], T]) -> tuple[bytes | None, T]:
        return self.get(key), meanwhile()


def run(ctx: BenchContext) -> Result:
    settings = ctx.store_settings("bench-p8")
    ctx.progress("P8: building the store and filling L2")
    store = ctx.store(settings)
    tokens = ctx.user_tokens(TOKENS)
    other_instance = DownstreamTokens(settings, store=store)
    shared = other_instance._l2
    assert shared is not None
    expires = time.time() + 3600
    keys = []
    for serial, token in enumerate(tokens):
        lookup = Lookup.of(token, other_instance.user_scopes)
        dataverse_token = f"{serial:012d}".ljust(DATAVERSE_TOKEN_BYTES, "x")
        shared.put(lookup, CachedToken(dataverse_token, expires))
        keys.append(shared.key(lookup))
    client = store._client  # B: the same redis-py client, pool and connection as the L2's
    entries = {key: client.get(key) for key in keys}
    assert all(entries.values())
    memory = Store(_Memory(entries), key_prefix=settings.redis_key_prefix, breaker=Breaker(5))
    one_after_the_other = _Serial(client, key_prefix=settings.redis_key_prefix, breaker=Breaker(5))
    server = int(client.info("server")["process_id"])

    instances: list[DownstreamTokens] = []

    def l2_hits(on: Store) -> float:
        fresh = DownstreamTokens(settings, store=on)  # a new instance: L1 empty
        instances.append(fresh)
        return per_item(fresh.for_user, tokens)

    def without_server_then_get(_: int) -> float:
        fresh = DownstreamTokens(settings, store=memory)
        instances.append(fresh)
        pairs = list(zip(tokens, keys, strict=True))
        return per_item(lambda pair: (fresh.for_user(pair[0]), client.get(pair[1])), pairs)

    def gets(_: int) -> float:
        return per_item(client.get, keys)

    def gets_as_a_hit_sends_them(_: int) -> float:
        return per_item(lambda key: store.get_while(key, _nothing), keys)

    rounds = ctx.scaled(ROUNDS, 3)
    ctx.progress(f"P8: {rounds} rounds of {TOKENS} L2 hits and {TOKENS} GETs, five times")
    with placed(server, apart=True):
        l2_hits(store)  # warm-up
        gets(0)
        measured = paired(lambda r: l2_hits(store), gets, rounds=rounds)
        work = statistics.median(l2_hits(memory) for _ in range(5))
        one_trip = paired(lambda r: l2_hits(store), without_server_then_get, rounds=rounds)
        overlap = paired(
            lambda r: l2_hits(store), lambda r: l2_hits(one_after_the_other), rounds=rounds
        )
        leaner_floor = paired(lambda r: l2_hits(store), gets_as_a_hit_sends_them, rounds=rounds)
    with placed(server, apart=False) as pinned:
        together = paired(lambda r: l2_hits(store), gets, rounds=rounds) if pinned else None
    for fresh in instances:
        assert fresh.obo_exchanges == 0, "an L2 hit made an exchange"
        assert fresh.shared_stats.get("hits") == TOKENS, fresh.shared_stats
        assert fresh.cached_users == TOKENS
    assert store.state == "ok"
    return Result(
        [
            ratio_row(
                "P8",
                "L2 hit with L1 cold (for_user: hashes, GET, key derivation, decryption, "
                "L1 fill) ÷ one bare GET of the same entry",
                measured,
                1.5,
            )
        ],
        _notes(work, one_trip, overlap, leaner_floor, together),
    )


def _nothing() -> None:
    return None


def _notes(
    work: float, one_trip: Paired, overlap: Paired, leaner_floor: Paired, together: Paired | None
) -> list[str]:
    notes = [
        f"P8: an L2 hit's own work, against an in-memory stand-in for the store: "
        f"{work * 1e6:.1f} µs. The L2 hit ÷ that same work followed by a bare GET, side by "
        f"side: {one_trip.describe()} (below 1: part of the work runs while the GET is in "
        f"flight). The L2 hit ÷ the same hit with the GET first and the value key derived "
        f"after it (as before Store.get_while), side by side: {overlap.describe()}.",
        f"P8 against a leaner floor: the L2 hit ÷ a GET through Store.get_while with nothing "
        f"to do meanwhile (the hit's own GET path: the breaker, a pooled connection's send and "
        f"read, without redis-py's execute_command), side by side: {leaner_floor.describe()}.",
    ]
    if together is not None:
        notes.append(
            "P8 with this process and the store on one CPU (a round trip of two context "
            f"switches, the cheapest this machine has): {together.describe()}."
        )
    return notes


FIGURE = Figure("P8", "an L2 hit (L1 cold) ÷ one bare GET round trip", run)
