"""A bounded, thread-safe cache of tokens that expire.

Keys are SHA-256 digests (of the incoming token plus the scopes, for On-Behalf-Of), so the
cache never holds a caller's token as a key and two callers can only share an entry by holding
the very same token. Entries leave when they are within `margin` seconds of expiry, and the
oldest leave first when the cache is full: each is keyed by an incoming token, and tokens all
live about as long, so the oldest entry is the one whose caller is nearest to a new token. A
hit moves nothing (see `shared.auth.validated`). No linear scans, O(1) per operation.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass


def cache_key(token: str, scopes: Iterable[str]) -> bytes:
    digest = hashlib.sha256(token.encode("utf-8"))
    digest.update(b"\x00" + " ".join(sorted(scopes)).encode("utf-8"))
    return digest.digest()


@dataclass(frozen=True, slots=True)
class CachedToken:
    access_token: str
    expires_at: float


class TokenCache:
    def __init__(
        self,
        max_entries: int,
        *,
        margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._max = max(1, max_entries)
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, CachedToken] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at - self._margin <= self._clock():
                del self._entries[key]
                return None
            return entry.access_token

    def put(self, key: bytes, access_token: str, expires_in: float) -> None:
        expires_at = self._clock() + expires_in
        with self._lock:
            self._entries[key] = CachedToken(access_token, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def discard(self, key: bytes, access_token: str) -> None:
        """Forget the entry at `key` if it still holds `access_token` (one the resource
        refused). A newer token that another request has already put there stays."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.access_token == access_token:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
