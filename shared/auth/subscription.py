"""Subscription keys (`Ocp-Apim-Subscription-Key`), checked before anything else.

Keys are compared as SHA-256 digests with `hmac.compare_digest`, against every configured key
without stopping at a match, so timing says nothing about which key or how much of it matched.
Each subscription may hold several keys (primary and secondary) so that keys can be rotated.
The result is the subscription's name, which is what logs show; the key itself never is.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from shared.auth.errors import SubscriptionKeyInvalid, SubscriptionKeyMissing


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class SubscriptionKeys:
    def __init__(self, subscriptions: Mapping[str, Sequence[str]]) -> None:
        self._entries = [
            (name, _digest(key)) for name, keys in subscriptions.items() for key in keys
        ]

    def check(self, presented: str | None) -> str:
        """The name of the subscription holding `presented`."""
        if presented is None or not presented.strip():
            raise SubscriptionKeyMissing
        digest = _digest(presented)
        found: str | None = None
        for name, expected in self._entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = name
        if found is None:
            raise SubscriptionKeyInvalid
        return found
