"""The On-Behalf-Of cache's levels: one interface, two implementations.

A Dataverse token obtained On-Behalf-Of a caller is found by a `Lookup`: the caller's incoming
token plus the scopes. Each level derives its own key from it and neither keeps the incoming
token:

- `TokenCache` (L1, this module): this instance's memory, keyed by SHA-256 of the token plus the
  scopes. Bounded, thread-safe, O(1) per operation.
- `SharedTokenCache` (L2, `shared.downstream.shared_cache`): the shared store every instance
  reads, keyed by a keyed hash, the value encrypted under a key derived from the incoming token.

Both answer a `CachedToken` (the token and its absolute expiry, so that an entry copied from L2
to L1 keeps its own lifetime) and both let an entry go `MARGIN_SECONDS` before it expires. The
order in which they are asked is in one place: `DownstreamTokens._dataverse_token`.

L1 entries leave when they are within the margin of expiry, and the oldest leave first when the
cache is full: each is keyed by an incoming token, and tokens all live about as long, so the
oldest entry is the one whose caller is nearest to a new token. A hit moves nothing (see
`shared.auth.validated`). No linear scans.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

# A token is not handed out this close to its expiry: a request that starts with it may still be
# calling Dataverse minutes later (retries, paging), and Dataverse checks expiry on each call.
MARGIN_SECONDS = 300.0


def cache_key(token: str, scopes: Iterable[str]) -> bytes:
    digest = hashlib.sha256(token.encode("utf-8"))
    digest.update(b"\x00" + " ".join(sorted(scopes)).encode("utf-8"))
    return digest.digest()


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a Dataverse token is cached under. `digest` is L1's key (`cache_key`), computed
    once per request; the incoming token itself never enters a cache."""

    assertion: str = field(repr=False)
    scopes: tuple[str, ...]
    digest: bytes = field(repr=False)

    @classmethod
    def of(cls, assertion: str, scopes: Iterable[str]) -> Lookup:
        ordered = tuple(sorted(scopes))
        return cls(assertion, ordered, cache_key(assertion, ordered))


@dataclass(frozen=True, slots=True)
class CachedToken:
    access_token: str = field(repr=False)
    expires_at: float  # seconds since the epoch: instances share it through L2

    def usable(self, now: float, margin: float = MARGIN_SECONDS) -> bool:
        return self.expires_at - margin > now


class CacheLevel(Protocol):
    """One level of the On-Behalf-Of cache."""

    def get(self, lookup: Lookup) -> CachedToken | None:
        """The cached token, if there is one still good for the margin."""

    def put(self, lookup: Lookup, token: CachedToken) -> None: ...

    def discard(self, lookup: Lookup, access_token: str) -> None:
        """Forget the entry if it still holds `access_token` (one the resource refused). A newer
        token that another request has already put there stays."""


class TokenCache:
    """L1: this instance's memory."""

    def __init__(
        self,
        max_entries: int,
        *,
        margin: float = MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._max = max(1, max_entries)
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, CachedToken] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, lookup: Lookup) -> CachedToken | None:
        key = lookup.digest
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if not entry.usable(self._clock(), self._margin):
                del self._entries[key]
                return None
            return entry

    def put(self, lookup: Lookup, token: CachedToken) -> None:
        key = lookup.digest
        with self._lock:
            self._entries[key] = token
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def discard(self, lookup: Lookup, access_token: str) -> None:
        with self._lock:
            entry = self._entries.get(lookup.digest)
            if entry is not None and entry.access_token == access_token:
                del self._entries[lookup.digest]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
