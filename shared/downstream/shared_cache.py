"""L2 of the On-Behalf-Of cache: the shared store, read by every instance (issue 11).

Under L1 (`shared.downstream.cache.TokenCache`, this instance's memory) every instance of the
API files the Dataverse tokens it obtains in the shared store, so that a user token that reaches
k instances costs one On-Behalf-Of exchange, not k. Whoever can read the Redis server, an export
or a memory dump of it must learn nothing usable from it without the caller's own token:

    key   = prefix ":obo:" hex(HMAC-SHA256(K_lookup, scopes NUL incoming-token))
    value = version (1 byte, 1) | nonce (12 random bytes) | AES-256-GCM ciphertext + tag
            plaintext: expiry (8 bytes, Unix seconds, big-endian) | the Dataverse token
            key:       HKDF-SHA256(ikm = the incoming token, salt = K_value,
                                   info = "central-api obo-cache value v1")
            associated data: the version byte and the entry's store key

`K_lookup` and `K_value` are subkeys of `API_DATA_KEY` (`shared.datakeys.derive`, purposes
"store-lookup" and "store-value"), so every instance files and finds an entry alike.

- The key is a keyed hash: a copy of the store does not even let someone who holds a token find
  its entry without the server's key. Hex, so that no key looks like a JWT (`eyJ`) by chance.
  The lock beside an entry is the entry's key + ":lock".
- The value opens only with the caller's incoming token *and* the server's key: a copy of the
  store plus a leaked user token gives no Dataverse token, nor does a copy of the store plus the
  server's key. Nonces are random; each value key seals about one value per token lifetime.
- The entry's key is the associated data: one incoming token has one value key for every scope
  set, so without the binding a value could be moved to the same token's entry for other
  scopes. A value moved to any other key, or opened with another user's token, fails to
  authenticate; a value that does not open (or a version this code does not know) is a miss,
  and the exchange that follows writes over it.
- No `oid`, name, scope or JWT is in clear anywhere; the expiry is inside the ciphertext.

An L2 hit makes one round trip, and the work it needs beside it is kept off the round trip's
path where it can be: the value key depends on the incoming token, not on the value, so it is
derived (HKDF, and the AES-GCM object built) while the GET is in flight (`Store.get_while`), and
the lookup key's HMAC starts from a keyed state computed once. What is left on the path is the
lookup key before the GET and the decryption after it.

Entries live until the Dataverse token is `MARGIN_SECONDS` from expiry (the TTL), so the store
evicts them itself; `allkeys-lru` evicts early under memory pressure, which is a miss.

One exchange across instances: on a miss, the instance that takes a short lock (SET NX PX, a
random value) exchanges, writes L2 and then releases the lock only if it still holds it
(compare-and-delete, one Lua script). The others wait for its write, asking L2 every
`POLL_SECONDS`, and try the lock again each time, so that one of them takes over at once if the
holder failed or died; after `wait` seconds they stop waiting and exchange on their own.

Fail open: `Store` never raises and answers "unavailable" at once while its circuit is open. So
an unreachable store costs one store timeout and then behaves exactly as having no store:
every miss is an exchange of this instance's own. `stats` counts what happened, for tests and
benchmarks.
"""

from __future__ import annotations

import hmac
import os
import secrets
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from shared.datakeys import derive
from shared.downstream.cache import MARGIN_SECONDS, CachedToken, Lookup

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from shared.store import Store

VERSION = 1
_NONCE = 12
_EXPIRY = struct.Struct(">Q")
_VALUE_INFO = b"central-api obo-cache value v1"

# Between two looks at L2 while another instance exchanges. An exchange at Entra takes about
# 100-300 ms, so a waiter learns of the new token at most ~25 ms late, and costs the store at
# most two calls (GET and SET NX) per poll: ~80 calls per second per waiting instance.
POLL_SECONDS = 0.025

# Deletes KEYS[1] only if it still holds ARGV[1]: a lock only by its holder, an entry only if it
# still holds the refused token (and not one another instance has written since).
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class SharedTokenCache:
    """L2: the shared store. Same interface as `TokenCache` (`CacheLevel`), plus `turn`."""

    def __init__(
        self,
        store: Store,
        data_key: bytes,
        *,
        wait: float,
        margin: float = MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        # HMAC's keyed start state, computed once: each key copies it (cheaper than hmac.digest,
        # which derives it again from the key on every call; the key is on a hit's way to GET).
        self._lookup_mac = hmac.new(derive(data_key, "store-lookup"), digestmod="sha256")
        self._value_salt = derive(data_key, "store-value")
        self._wait = wait
        # The lock outlives no waiter: a holder that died blocks the others no longer than
        # they would wait anyway; one slower than that is raced by one more exchange.
        self._lock_ms = max(1, int(wait * 1000))
        self._margin = margin
        self._clock = clock
        self._compare_and_delete = store.script(_COMPARE_AND_DELETE)
        self._stats_lock = threading.Lock()
        self._stats: Counter[str] = Counter()

    @property
    def stats(self) -> dict[str, int]:
        """Counts since start: `hits`, `misses` (absent or unavailable), `undecryptable`,
        `waits` (another instance held the lock), `waited_hits` (its token arrived),
        `fallbacks` (exchanged on our own after waiting or with the store unavailable)."""
        with self._stats_lock:
            return dict(self._stats)

    def get(self, lookup: Lookup) -> CachedToken | None:
        found = self._read(self.key(lookup), lookup)
        self._count("hits" if found is not None else "misses")
        return found

    def put(self, lookup: Lookup, token: CachedToken) -> None:
        ttl_ms = int((token.expires_at - self._margin - self._clock()) * 1000)
        if ttl_ms <= 0:
            return
        key = self.key(lookup)
        self._store.set(key, self._seal(key, lookup, token), ttl_ms=ttl_ms)

    def discard(self, lookup: Lookup, access_token: str) -> None:
        key = self.key(lookup)
        value = self._store.get(key)
        if value is None:
            return
        found = self._open(key, self._aead(lookup), value)
        if found is None or found.access_token == access_token:
            self._compare_and_delete([key], [value])

    @contextmanager
    def turn(self, lookup: Lookup) -> Iterator[CachedToken | None]:
        """Wait for our turn to exchange. Yields the token another instance wrote meanwhile, or
        None: then it is ours to exchange and `put`, holding the lock (or without it when the
        store is unavailable or the wait ran out). The lock is released on leaving."""
        key = self.key(lookup)
        lock = key + ":lock"
        mine = secrets.token_hex(16).encode("ascii")
        deadline = time.monotonic() + self._wait
        held = waited = False
        try:
            while True:
                taken = self._store.set_if_absent(lock, mine, ttl_ms=self._lock_ms)
                # Even when we take the lock: its holder may have written and let go since.
                found = None if taken is None else self._read(key, lookup)
                if found is not None:
                    self._count("waited_hits")
                    yield found
                    return
                if taken is None or (not taken and time.monotonic() >= deadline):
                    self._count("fallbacks")
                    break
                if taken:
                    held = True
                    break
                if not waited:
                    self._count("waits")
                    waited = True
                time.sleep(POLL_SECONDS)
            yield None
        finally:
            if held:
                self._compare_and_delete([lock], [mine])

    def key(self, lookup: Lookup) -> str:
        mac = self._lookup_mac.copy()
        mac.update(" ".join(lookup.scopes).encode("utf-8") + b"\x00" + lookup.assertion.encode())
        return self._store.key("obo", mac.hexdigest())

    def _read(self, key: str, lookup: Lookup) -> CachedToken | None:
        # The value key does not depend on the value: derive it while the GET is in flight.
        value, aead = self._store.get_while(key, lambda: self._aead(lookup))
        if value is None:
            return None
        found = self._open(key, aead, value)
        if found is None:
            self._count("undecryptable")
            return None
        return found if found.usable(self._clock(), self._margin) else None

    def _aead(self, lookup: Lookup) -> AESGCM:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(hkdf_sha256(self._value_salt, lookup.assertion.encode("utf-8"), _VALUE_INFO))

    def _seal(self, key: str, lookup: Lookup, token: CachedToken) -> bytes:
        nonce = os.urandom(_NONCE)
        plaintext = _EXPIRY.pack(int(token.expires_at)) + token.access_token.encode("utf-8")
        header = bytes([VERSION])
        return header + nonce + self._aead(lookup).encrypt(nonce, plaintext, header + key.encode())

    def _open(self, key: str, aead: AESGCM, value: bytes) -> CachedToken | None:
        from cryptography.exceptions import InvalidTag

        if len(value) < 1 + _NONCE + _EXPIRY.size + 16 or value[0] != VERSION:
            return None
        header, nonce = value[:1], value[1 : 1 + _NONCE]
        try:
            plaintext = aead.decrypt(nonce, value[1 + _NONCE :], header + key.encode())
            (expires_at,) = _EXPIRY.unpack_from(plaintext)
            return CachedToken(plaintext[_EXPIRY.size :].decode("utf-8"), float(expires_at))
        except (InvalidTag, UnicodeDecodeError):
            return None

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self._stats[name] += 1


def hkdf_sha256(salt: bytes, ikm: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) for one 32-byte key: extract, then the first block of expand.

    The same bytes as cryptography's `HKDF(SHA256(), length=32, salt, info)` (a test checks),
    written with `hmac.digest` because an L2 hit derives a key per request and cryptography's
    one-shot HKDF object costs several times the two HMACs (bench P8)."""
    prk = hmac.digest(salt, ikm, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")
