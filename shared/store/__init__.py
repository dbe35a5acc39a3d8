"""The shared store: a Redis-protocol server every instance of the API reaches (issue 11).

In Azure it is Azure Managed Redis or Azure Cache for Redis; in the dev stack a real
`valkey-server` (devstack/valkey.py). It is optional: without `REDIS_URL`, `build_store` answers
None and every instance works alone, as before issue 11.

The store is a cache and a coordinator, never a source of truth, so it fails open: no method of
`Store` raises. A timeout, a refused connection, a full or read-only server answers None (False
for writes) within about `REDIS_TIMEOUT_SECONDS`, and callers carry on as if there were no store.
There is therefore no exception tree here: redis-py's errors (and OSError) are caught at this
boundary, in `Store._call`, and become "unavailable".

redis-py is imported only inside `build_store`, so importing this package costs nothing at cold
start when no store is configured.
"""

from __future__ import annotations

from shared.store.breaker import Breaker
from shared.store.client import Store, StoreScript, build_store

__all__ = ["Breaker", "Store", "StoreScript", "build_store"]
