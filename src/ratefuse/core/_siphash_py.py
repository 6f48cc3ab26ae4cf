"""SipHash (Aumasson and Bernstein), the reference for the C header
``ext/ratefuse/include/ratefuse_siphash.h``.

The key table fingerprints keys with SipHash-1-3 under a per-process secret,
so someone who chooses keys cannot aim them at one another. ``rounds`` lets
the tests check this code against SipHash-2-4's published test vectors.
"""

from __future__ import annotations

MASK64 = (1 << 64) - 1


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & MASK64


def siphash(
    k0: int, k1: int, data: bytes, compression_rounds: int = 1, final_rounds: int = 3
) -> int:
    """`siphash` returns the 64-bit SipHash-c-d of ``data`` under (k0, k1)."""
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]

    def sipround() -> None:
        v[0] = (v[0] + v[1]) & MASK64
        v[1] = _rotl(v[1], 13) ^ v[0]
        v[0] = _rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & MASK64
        v[3] = _rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & MASK64
        v[3] = _rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & MASK64
        v[1] = _rotl(v[1], 17) ^ v[2]
        v[2] = _rotl(v[2], 32)

    whole = len(data) - len(data) % 8
    for offset in range(0, whole, 8):
        block = int.from_bytes(data[offset : offset + 8], "little")
        v[3] ^= block
        for _ in range(compression_rounds):
            sipround()
        v[0] ^= block
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v[3] ^= last
    for _ in range(compression_rounds):
        sipround()
    v[0] ^= last
    v[2] ^= 0xFF
    for _ in range(final_rounds):
        sipround()
    return v[0] ^ v[1] ^ v[2] ^ v[3]
