"""The On-Behalf-Of token cache: bounded, oldest first, entries leave before they expire."""

from __future__ import annotations

from shared.downstream.cache import CachedToken, Lookup, TokenCache, cache_key
from tests.clock import ManualClock as Clock

SCOPES = ("https://dataverse.example/user_impersonation",)


def lookup(name: str) -> Lookup:
    return Lookup.of(f"token-of-{name}", SCOPES)


def token(value: str, expires_at: float) -> CachedToken:
    return CachedToken(value, expires_at)


def test_a_full_cache_drops_the_oldest_entry_and_a_hit_moves_nothing() -> None:
    clock = Clock()
    cache = TokenCache(3, margin=0, clock=clock)
    for name in ("a", "b", "c"):
        cache.put(lookup(name), token(f"token-{name}", clock.now + 3600))
    assert cache.get(lookup("a")) == token("token-a", clock.now + 3600)  # a stays the oldest
    cache.put(lookup("d"), token("token-d", clock.now + 3600))
    assert len(cache) == 3
    assert cache.get(lookup("a")) is None
    found = [cache.get(lookup(k)) for k in "bcd"]
    assert [t.access_token for t in found if t] == ["token-b", "token-c", "token-d"]


def test_entries_leave_margin_seconds_before_they_expire() -> None:
    clock = Clock()
    cache = TokenCache(10, margin=300, clock=clock)
    cache.put(lookup("k"), token("token", clock.now + 3600))
    clock.now += 3600 - 301
    assert cache.get(lookup("k")) is not None
    clock.now += 1
    assert cache.get(lookup("k")) is None
    assert len(cache) == 0


def test_a_size_below_one_still_keeps_one_entry() -> None:
    clock = Clock()
    cache = TokenCache(0, margin=0, clock=clock)
    cache.put(lookup("a"), token("1", clock.now + 60))
    cache.put(lookup("b"), token("2", clock.now + 60))
    assert len(cache) == 1
    assert cache.get(lookup("b")) == token("2", clock.now + 60)


def test_keys_depend_on_the_token_and_on_the_scopes_not_their_order() -> None:
    key = cache_key("token", ["b/.default", "a/x"])
    assert key == cache_key("token", ["a/x", "b/.default"])
    assert key != cache_key("token", ["a/x"])
    assert key != cache_key("token2", ["b/.default", "a/x"])
    assert Lookup.of("token", ["b/.default", "a/x"]).digest == key


def test_a_lookup_shows_neither_the_token_nor_its_digest() -> None:
    assert "token-of" not in repr(lookup("alice"))
