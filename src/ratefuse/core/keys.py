"""Keys: what a keyed limiter accepts as a key, the secret its fingerprints
are keyed with, and the bound on how many keys it holds.

Shared by both keyed engines (compiled and reference), the shared-memory
table and the configuration schema; the fingerprints themselves are in
``_keys_py`` (reference) and ``ext/ratefuse/core/_keys.pxd`` (compiled).
"""

from __future__ import annotations

import os
from typing import Final

from ratefuse.core.args import shown

Key = str | bytes | int

# The default and the largest ``max_keys`` of an in-memory keyed limiter.
DEFAULT_MAX_KEYS: Final = 1_000_000
MAX_MAX_KEYS: Final = 1 << 32


def check_max_keys(max_keys: int) -> int:
    """`check_max_keys` returns ``max_keys`` if it is an int in [1, 2**32]."""
    if isinstance(max_keys, bool) or not isinstance(max_keys, int):
        raise ValueError(f"max_keys must be an int, got {shown(max_keys)}")
    if not 1 <= max_keys <= MAX_MAX_KEYS:
        raise ValueError(f"max_keys must be in [1, 2**32], got {shown(max_keys)}")
    return max_keys


def new_secret() -> bytes:
    """`new_secret` is 16 random bytes from the operating system."""
    return os.urandom(16)


# One secret per process, shared by every keyed limiter in it.
PROCESS_SECRET: Final = new_secret()


def split_secret(secret: bytes) -> tuple[int, int]:
    """`split_secret` returns the two 64-bit SipHash keys of a 16-byte secret."""
    if not isinstance(secret, bytes) or len(secret) != 16:
        # Never echo the value: it is key material.
        size = (
            f"{len(secret)} bytes"
            if isinstance(secret, bytes)
            else type(secret).__name__
        )
        raise ValueError(f"secret must be 16 bytes, got {size}")
    return int.from_bytes(secret[:8], "little"), int.from_bytes(secret[8:], "little")
