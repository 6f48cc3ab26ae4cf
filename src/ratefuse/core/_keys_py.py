"""Key fingerprints, reference implementation (twin of ``_keys.pxd``).

A key (str, bytes or int) becomes a 64-bit fingerprint: SipHash-1-3 of its
bytes under a 128-bit per-process secret, with the key's type folded into the
secret so that ``"1"``, ``b"1"`` and ``1`` are three different keys (``True``
is the int 1, as in a dict). Fingerprint 0 marks an empty slot, so a key that
hashes to 0 takes 1 instead.

Two distinct keys share a state only if their fingerprints collide: with n
live keys a new key collides with probability at most n / 2**64 (about 5e-14
at a million keys), and because the secret is random per process and never
leaves it, someone who chooses the keys cannot aim one at another.
"""

from __future__ import annotations

from typing import Final

from ratefuse.core._siphash_py import MASK64, siphash
from ratefuse.core.keys import Key

TAG_STR: Final = 1
TAG_BYTES: Final = 2
TAG_INT: Final = 3
TAG_BIG_INT: Final = 4
# Folds the key's type into the secret: k0 ^ tag * golden ratio.
TAG_MIX: Final = 0x9E3779B97F4A7C15
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1


def key_bytes(key: Key) -> tuple[int, bytes]:
    """`key_bytes` returns the (type tag, bytes) that a key is hashed as."""
    if isinstance(key, str):
        try:
            return TAG_STR, key.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: still a distinct key
            return TAG_STR, key.encode("utf-8", "surrogatepass")
    if isinstance(key, bytes):
        return TAG_BYTES, key
    if isinstance(key, int):
        if INT64_MIN <= key <= INT64_MAX:
            return TAG_INT, key.to_bytes(8, "little", signed=True)
        return TAG_BIG_INT, big_int_bytes(int(key))
    raise TypeError(f"key must be str, bytes or int, got {type(key).__name__}")


def big_int_bytes(value: int) -> bytes:
    """`big_int_bytes` is an int outside int64 as it is hashed: two's
    complement, little-endian, in as few bytes as hold its sign. Linear in
    its size, unlike decimal text, which Python also refuses above 4,300
    digits."""
    return value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)


def fingerprint(k0: int, k1: int, key: Key) -> int:
    """`fingerprint` is the key's nonzero 64-bit SipHash-1-3 fingerprint."""
    tag, data = key_bytes(key)
    value = siphash(k0 ^ ((tag * TAG_MIX) & MASK64), k1, data)
    return value or 1
