"""Page tokens: Dataverse's `$skiptoken`, sealed so that only the caller and the query that
received it can use it, and only for a while.

Format, sent as unpadded base64url so that it goes into a URL as it is:

    version (1 byte, 1) | key id (1 byte) | nonce (12 random bytes) | AES-256-GCM ciphertext + tag

The plaintext is the expiry (4 bytes, Unix seconds, big-endian) and then the skiptoken,
raw-deflate compressed: Dataverse's paging cookies are long and repetitive (XML, URL-encoded
twice). The associated data is the version and key id bytes followed by the *binding*, canonical
JSON of the caller (mode, tenant, and the user's `oid` or the application's client id) and the
query (the domain, its entity set and the Dataverse query the list sends, `$select`, `$filter`
and `$orderby`, without `$skiptoken`). The binding is not in the token: the API recomputes it
from each request, so a token presented by another caller or with another query fails to
authenticate exactly as a tampered one does. `pageSize` is not bound: it travels as a `Prefer`
header, and a paging cookie says where the next page starts, not how long pages are, so a
client may change the page size between pages.

Threat model. Whoever sees a URL holds its token: the client, browser histories, proxies, the
Functions host's request telemetry. They must not read it, because Dataverse's paging cookie
carries the last row's order-by values (a customer's full name) and its primary key. They must
not make or alter one: with the old format, base64 JSON and an unkeyed hash of the query, any
client could put any text in front of Dataverse as `$skiptoken`, and move a token to another
query or to another user. Now a token that does not authenticate under one of the server's keys
with this request's binding is a 400 naming `pageToken`, and so is one that has expired; nothing
goes to Dataverse. What remains: within its lifetime a token is good for its own caller and
query as often as they like (that is paging), and its length tells roughly how long the cookie
is. Compression beside attacker-chosen text would be an oracle (CRIME); here the plaintext holds
only the expiry and Dataverse's cookie, made of values the caller has just been sent.

Keys. Tokens are sealed under the "page-tokens" subkey of the API data key (shared/datakeys.py),
never under the data key itself. `API_DATA_KEY`'s subkey seals and opens,
`API_DATA_KEY_PREVIOUS`'s only opens, so one rotation leaves tokens already handed out working.
The key id (one byte of a hash of the subkey) picks the key; should the two subkeys' ids collide
(1 in 256), both are tried. Nonces are random, so a key should seal fewer than 2**32 tokens
(NIST SP 800-38D): rotate it at least once a year.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from shared import datakeys
from shared.auth.principal import Principal
from shared.dataverse.errors import BackendUnavailable
from shared.http.errors import BadInput

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAX_PAGE_TOKEN_LENGTH = 4096
VERSION = 1
_NONCE = 12
_TAG = 16
_EXPIRY = 4
_HEADER = 2
_SEALED = _HEADER + _NONCE  # where the ciphertext starts
_SMALLEST = _SEALED + _TAG + _EXPIRY + 1  # at least one byte of compressed skiptoken
_MAX_SKIPTOKEN = 64 * 1024
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
KEY_PURPOSE = "page-tokens"  # of the API data key: shared/datakeys.py


def _invalid() -> BadInput:
    return BadInput(
        "pageToken", "is not a token from a previous page of this same query, for this caller"
    )


def key_id(key: bytes) -> int:
    return hashlib.sha256(b"central-api page token key id\x00" + key).digest()[0]


def binding(
    principal: Principal, domain: str, entity_set: str, query: Sequence[tuple[str, str]]
) -> bytes:
    """Who asks and what: the associated data a token is sealed with (see the module doc)."""
    caller = principal.client_app_id if principal.is_application else principal.oid
    shape = [
        [principal.mode.value, principal.tid, caller],
        [domain, entity_set, [[name, value] for name, value in query if name != "$skiptoken"]],
    ]
    return json.dumps(shape, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def skiptoken(next_link: object) -> str | None:
    """The `$skiptoken` of Dataverse's `@odata.nextLink`, if there is one."""
    if not isinstance(next_link, str):
        return None
    values = parse_qs(urlsplit(next_link).query).get("$skiptoken")
    return values[0] if values else None


class PageTokens:
    """Seals skiptokens into page tokens and opens them again. Thread-safe (no state changes).

    `key` and `previous_key` are AES-256 keys: the API builds them `from_data_keys`."""

    @classmethod
    def from_data_keys(
        cls,
        data_key: bytes,
        previous: bytes | None = None,
        *,
        lifetime_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> PageTokens:
        """Under the data keys' "page-tokens" subkeys (`API_DATA_KEY`, `API_DATA_KEY_PREVIOUS`)."""
        return cls(
            datakeys.derive(data_key, KEY_PURPOSE),
            None if previous is None else datakeys.derive(previous, KEY_PURPOSE),
            lifetime_seconds=lifetime_seconds,
            clock=clock,
        )

    def __init__(
        self,
        key: bytes,
        previous_key: bytes | None = None,
        *,
        lifetime_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Imported here, when the runtime is built, not when function_app is (cold starts).
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._sealing = (key_id(key), AESGCM(key))
        self._opening: dict[int, list[AESGCM]] = {}
        for k in (key, previous_key):
            if k is not None:
                self._opening.setdefault(key_id(k), []).append(AESGCM(k))
        self._lifetime = lifetime_seconds
        self._clock = clock

    def seal(self, skiptoken: str, binding: bytes) -> str:
        kid, aead = self._sealing
        header = bytes((VERSION, kid))
        expires = int(self._clock()) + self._lifetime
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = deflate.compress(skiptoken.encode("utf-8")) + deflate.flush()
        plaintext = expires.to_bytes(_EXPIRY, "big") + packed
        nonce = os.urandom(_NONCE)
        sealed = header + nonce + aead.encrypt(nonce, plaintext, header + binding)
        token = base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")
        if len(token) > MAX_PAGE_TOKEN_LENGTH:
            # The client could never send it back: better to fail here, visibly.
            raise BackendUnavailable("Dataverse answered a skiptoken too long for a page token")
        return token

    def open(self, token: str, binding: bytes) -> str:
        """The skiptoken sealed in `token` for this `binding`; else `BadInput` naming
        `pageToken`, the same for every failure but expiry."""
        from cryptography.exceptions import InvalidTag

        raw = _decode(token)
        if raw is None or len(raw) < _SMALLEST or raw[0] != VERSION:
            raise _invalid()
        header, nonce, sealed = raw[:_HEADER], raw[_HEADER:_SEALED], raw[_SEALED:]
        for aead in self._opening.get(raw[1], ()):
            try:
                plaintext = aead.decrypt(nonce, sealed, header + binding)
                break
            except InvalidTag:
                continue
        else:
            raise _invalid()
        if self._clock() >= int.from_bytes(plaintext[:_EXPIRY], "big"):
            raise BadInput("pageToken", "has expired: start again from the first page")
        return _inflate(plaintext[_EXPIRY:])


def _decode(token: str) -> bytes | None:
    """Canonical unpadded base64url only: one spelling per token."""
    if len(token) > MAX_PAGE_TOKEN_LENGTH or not _TOKEN.fullmatch(token) or len(token) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != token:
        return None
    return raw


def _inflate(packed: bytes) -> str:
    # Only this server's key could have sealed it, but a bound costs nothing.
    inflate = zlib.decompressobj(-15)
    try:
        raw = inflate.decompress(packed, _MAX_SKIPTOKEN)
        text = raw.decode("utf-8")
    except (zlib.error, UnicodeDecodeError):
        raise _invalid() from None
    if not inflate.eof or inflate.unconsumed_tail or inflate.unused_data or not text:
        raise _invalid()
    return text
