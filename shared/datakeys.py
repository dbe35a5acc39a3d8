"""The API's data key: one server secret, shared by every instance, one subkey per purpose.

`API_DATA_KEY` (shared/settings.py) is 32 random bytes that every instance of the API holds, so
that what one instance seals or hashes another can check. Nothing uses it directly: each use
asks `derive(key, purpose)` for its own subkey, HKDF-SHA256 (RFC 5869) with the purpose in the
`info` input. So a key used for page tokens is never also used for something else, and a
subkey that leaks tells nothing about the secret or about the other purposes' subkeys.

Purposes: "page-tokens" (shared/domains/paging.py seals page tokens with AES-256-GCM under it);
"store-lookup" and "store-value" (shared/downstream/shared_cache.py: the keyed hash that files
On-Behalf-Of tokens in the shared store, and the salt of the key that seals them).
A new use takes a new purpose name, never an existing one.

Rotation rotates every purpose at once, since they all come from the one secret. What that
means for each is its own business: page tokens still open under `API_DATA_KEY_PREVIOUS`'s
subkey for one rotation; a keyed lookup hash just stops finding what the old key filed.

No salt: the input is already a uniformly random key, for which RFC 5869 (section 3.1) makes
salt optional. cryptography is imported on the first derivation, not at start-up.
"""

from __future__ import annotations

import re

KEY_LENGTH = 32

# Ends with a NUL that purposes cannot contain, so no purpose's info is a prefix of another's.
_INFO_PREFIX = b"central-api data key\x00"
_PURPOSE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def derive(key: bytes, purpose: str) -> bytes:
    """The 32-byte subkey of `key` for `purpose` (lower-case words joined by hyphens)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if not _PURPOSE.fullmatch(purpose):
        raise ValueError("a data key purpose is lower-case words joined by hyphens")
    info = _INFO_PREFIX + purpose.encode("ascii")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LENGTH, salt=None, info=info).derive(key)
