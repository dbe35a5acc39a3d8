"""The On-Behalf-Of token cache: bounded, oldest first, entries leave before they expire."""

from __future__ import annotations

from shared.downstream.cache import TokenCache, cache_key
from tests.clock import ManualClock as Clock


def test_a_full_cache_drops_the_oldest_entry_and_a_hit_moves_nothing() -> None:
    cache = TokenCache(3, margin=0, clock=Clock())
    for name in ("a", "b", "c"):
        cache.put(name.encode(), f"token-{name}", 3600)
    assert cache.get(b"a") == "token-a"  # a hit: a stays the oldest
    cache.put(b"d", "token-d", 3600)
    assert len(cache) == 3
    assert cache.get(b"a") is None
    assert [cache.get(k) for k in (b"b", b"c", b"d")] == ["token-b", "token-c", "token-d"]


def test_entries_leave_margin_seconds_before_they_expire() -> None:
    clock = Clock()
    cache = TokenCache(10, margin=300, clock=clock)
    cache.put(b"k", "token", 3600)
    clock.now += 3600 - 301
    assert cache.get(b"k") == "token"
    clock.now += 1
    assert cache.get(b"k") is None
    assert len(cache) == 0


def test_a_size_below_one_still_keeps_one_entry() -> None:
    cache = TokenCache(0, margin=0, clock=Clock())
    cache.put(b"a", "1", 60)
    cache.put(b"b", "2", 60)
    assert len(cache) == 1
    assert cache.get(b"b") == "2"


def test_keys_depend_on_the_token_and_on_the_scopes_not_their_order() -> None:
    key = cache_key("token", ["b/.default", "a/x"])
    assert key == cache_key("token", ["a/x", "b/.default"])
    assert key != cache_key("token", ["a/x"])
    assert key != cache_key("token2", ["b/.default", "a/x"])
