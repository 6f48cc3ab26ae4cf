"""SipHash and key fingerprints.

The reference SipHash (``_siphash_py``) is checked against the published
SipHash-2-4 vectors and, for SipHash-1-3 (what the key table uses), against
CPython's own ``hash`` of bytes, which is SipHash-1-3 under an all-zero key
when PYTHONHASHSEED=0. The compiled fingerprints (C header) do not leave the
extension, so they are compared with the reference through what they decide:
which key a full table evicts depends on every key's fingerprint (its home
slot, and where the eviction sample starts).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse.core._keys_py import (
    TAG_BIG_INT,
    TAG_BYTES,
    TAG_INT,
    TAG_STR,
    fingerprint,
    key_bytes,
)
from ratefuse.core._siphash_py import MASK64, siphash
from ratefuse.core.keys import split_secret
from ratefuse.rates import Rate, build_specs

# Key 00 01 .. 0f; message i is the bytes 00 01 .. i-1 (the reference
# implementation's vectors_sip64, read as little-endian integers).
VECTOR_KEY = bytes(range(16))
SIPHASH24_VECTORS = [
    (0, 0x726FDB47DD0E0E31),
    (1, 0x74F839C593DC67FD),
    (2, 0x0D6C8009D9A94F5A),
    (3, 0x85676696D7FB7E2D),
    (8, 0x93F5F5799A932462),
    (15, 0xA129CA6149BE45E5),
    (16, 0x3F2ACC7F57C29BDB),
    (63, 0x958A324CEB064572),
]
SECRET = bytes(range(100, 116))
HOUR = Rate(1, 3600.0)

# Every kind of key: text (non-ASCII, lone surrogates), bytes, int64 and
# beyond, bool.
KEYS = st.one_of(
    st.text(),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1),
    st.binary(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(2**63, 2**200),
    st.integers(-(2**200), -(2**63) - 1),
    st.booleans(),
)


def identity(key: object) -> tuple[type, object]:
    """`identity` is what makes two keys the same key (True is 1)."""
    return (int if isinstance(key, bool) else type(key), key)


@pytest.mark.parametrize(("length", "expected"), SIPHASH24_VECTORS)
def test_siphash24_published_vectors(length: int, expected: int) -> None:
    k0, k1 = split_secret(VECTOR_KEY)
    assert siphash(k0, k1, bytes(range(length)), 2, 4) == expected


def test_siphash13_matches_cpython_hash_of_bytes() -> None:
    if sys.hash_info.algorithm != "siphash13":
        pytest.skip(f"this CPython hashes with {sys.hash_info.algorithm}")
    # (CPython hashes b"" to 0 without SipHash, so it is left out.)
    messages = [b"a", b"abcdefg", b"abcdefgh", b"\xff" * 15, bytes(range(200))]
    script = f"for m in {messages!r}: print(hash(m) & {MASK64})"
    output = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [siphash(0, 0, message) for message in messages] == [
        int(value) for value in output
    ]


def test_fingerprints_keep_types_apart() -> None:
    k0, k1 = split_secret(SECRET)
    spellings = ["1", b"1", 1, 2**64, str(2**64), -(2**64)]
    fingerprints = {fingerprint(k0, k1, key) for key in spellings}
    assert len(fingerprints) == len(spellings)
    assert fingerprint(k0, k1, True) == fingerprint(k0, k1, 1)
    assert fingerprint(k0, k1, False) == fingerprint(k0, k1, 0)
    assert key_bytes("é") == (TAG_STR, "é".encode())
    assert key_bytes("\udc80") == (TAG_STR, b"\xed\xb2\x80")
    assert key_bytes(b"\xff") == (TAG_BYTES, b"\xff")
    assert key_bytes(-1) == (TAG_INT, b"\xff" * 8)
    # Beyond int64: two's complement, little-endian, with room for the sign.
    assert key_bytes(2**63) == (TAG_BIG_INT, b"\x00" * 7 + b"\x80\x00")
    assert key_bytes(-(2**63) - 1) == (TAG_BIG_INT, b"\xff" * 7 + b"\x7f\xff")
    # The type tag is folded into the secret, not prepended to the bytes.
    assert fingerprint(k0, k1, "a") != fingerprint(k0, k1, b"a")


def test_fingerprints_depend_on_the_secret() -> None:
    one, other = split_secret(SECRET), split_secret(bytes(16))
    for key in ("user:1", b"user:1", 1):
        assert fingerprint(*one, key) != fingerprint(*other, key)
    with pytest.raises(ValueError, match="secret must be 16 bytes"):
        split_secret(b"short")


@pytest.mark.parametrize("secret", [b"short", "0123456789abcdef", bytes(17)])
def test_bad_secret_is_refused_alike(impl, secret) -> None:
    specs = build_specs([HOUR], "gcra")
    with pytest.raises(ValueError, match="secret must be 16 bytes"):
        impl.module("engine._keyed").KeyedLimiterCore(specs, 10, None, secret)


def evicted(impl, keys: list[object], newcomer: object) -> list[bool]:
    """`evicted` fills a table of ``len(keys)`` keys with equal states, adds
    ``newcomer``, and reports which keys are new again.

    All states go idle at the same time, so the victim is the first occupied
    slot from where the newcomer's sample starts: it depends on where every
    key sits (its fingerprint's low bits) and on the newcomer's high bits.
    """
    core = impl.module("engine._keyed").KeyedLimiterCore(
        build_specs([HOUR], "gcra"), len(keys), None, SECRET
    )
    for key in keys:
        assert core.try_acquire(key, 1, 0)
    assert core.try_acquire(newcomer, 1, 0)
    assert core.stats()["evictions"] == 1
    return [core.decide(key, 0, 0).remaining == 1 for key in keys]


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(KEYS, min_size=2, max_size=48, unique_by=identity),
    newcomer=KEYS,
)
def test_compiled_fingerprints_match_reference(
    compiled, reference, keys: list[object], newcomer: object
) -> None:
    if identity(newcomer) in {identity(key) for key in keys}:
        return
    expected = evicted(reference, keys, newcomer)
    assert sum(expected) == 1
    assert evicted(compiled, keys, newcomer) == expected


def test_long_keys_fingerprint_alike(compiled, reference) -> None:
    # Long enough for thousands of SipHash blocks, and every tail length.
    long = [b"\x00" * (1 << 16), b"\x00" * ((1 << 16) - 1) + b"\x01", "é" * (1 << 15)]
    tails = [bytes(range(length)) for length in range(8, 24)]
    keys = [*long, *tails, 1, "1", b"1"]
    for newcomer in ("x", b"x", 7):
        assert evicted(compiled, keys, newcomer) == evicted(reference, keys, newcomer)
