"""A bounded memory of tokens that already passed validation: a token seen before costs a hash.

- Keyed by the SHA-256 digest of the token, so the raw token is never a key and two requests
  share an entry only by presenting the very same token. The value is the `Principal`.
- An entry lives until the token's `exp`, never longer. Past it the token goes through full
  validation again, which applies the clock-skew tolerance and rejects it once it has really
  expired: the memory never makes a token live longer than validation alone would.
- Entries belong to one version of the signing-key set (`KeySnapshot.version`). When the set
  changes (a key added or retired), everything validated under the old set is dropped, and a
  validation that finished under an older set is not stored.
- Bounded: when full, the oldest entry leaves. Every key is a token and tokens all live about
  as long, so the oldest is the one nearest its `exp`. A hit moves nothing (least-recently-used
  order would cost two writes to cold memory per hit with thousands of users cached; `make
  bench`, P4). O(1) per operation (an `OrderedDict` under one lock), no scans, no background
  sweeping.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from shared.auth.principal import Principal


def token_digest(token: str) -> bytes:
    # surrogatepass: whatever a client sends, hashing it must not raise.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class ValidatedTokens:
    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1 (disable the cache instead)")
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, Principal] = OrderedDict()
        self._version: int | None = None  # the key-set version every entry was validated under

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes, *, now: float, version: int) -> Principal | None:
        """The principal for a token validated under key-set `version` and not expired at `now`."""
        with self._lock:
            if version != self._version:
                self._adopt(version)
                return None
            principal = self._entries.get(digest)
            if principal is None:
                return None
            if principal.expires_at <= now:
                del self._entries[digest]
                return None
            return principal

    def put(self, digest: bytes, principal: Principal, *, now: float, version: int) -> None:
        if principal.expires_at <= now:
            return
        with self._lock:
            if version != self._version and not self._adopt(version):
                return  # validated under a key set that has since been replaced
            self._entries[digest] = principal
            self._entries.move_to_end(digest)
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _adopt(self, version: int) -> bool:
        """Move to a newer key-set version, dropping every entry; False for an older one."""
        if self._version is not None and version < self._version:
            return False
        self._entries.clear()
        self._version = version
        return True
