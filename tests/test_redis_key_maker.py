"""The batch key maker (ratefuse.redis._keys): the compiled twin (its own
BLAKE2b) and the reference (hashlib) name every subject alike, fill the
cache alike, and both give KeySchema.key's keys; Hypothesis differential
tests over long names (several BLAKE2b blocks), every subject type and
ints around every byte boundary."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse.redis._schema import KeySchema

STEM = "redis._keys"
persons = st.binary(max_size=16)
# Past 128 bytes the prefix and the subjects span BLAKE2b blocks.
prefixes = st.binary(max_size=300)
ints = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from(
        [
            value + delta
            for bits in range(0, 130, 8)
            for value in (2**bits, -(2**bits))
            for delta in (-1, 0, 1)
        ]
    ),
)
subjects = st.one_of(st.text(), st.text(min_size=100, max_size=400), st.binary(), ints)


def refused(subject: Any) -> bytes:
    """`refused` is a fallback that names the subject, to see it called."""
    return b"fallback:" + repr(subject).encode()


@settings(max_examples=300)
@given(
    person=persons,
    framed=prefixes,
    batch=st.lists(subjects | st.sampled_from([True, 1.5, None]), max_size=30),
)
def test_the_twins_make_the_same_keys_and_cache(
    compiled, reference, person: bytes, framed: bytes, batch: list[Any]
) -> None:
    made = []
    for impl in (compiled, reference):
        maker = impl.module(STEM).KeyMaker(person, framed, b"h:{", b"}:t", 7)
        cache: dict[Any, bytes] = {}
        twice = [maker.keys(batch, cache, refused), maker.keys(batch, cache, refused)]
        made.append((twice, cache))
    assert made[0] == made[1]


@settings(max_examples=200)
@given(person=persons, framed=prefixes, subject=st.text() | st.binary())
def test_the_compiled_hash_is_blake2b(
    compiled, person: bytes, framed: bytes, subject: str | bytes
) -> None:
    maker = compiled.module(STEM).KeyMaker(person, framed, b"", b"", 10)
    (key,) = maker.keys([subject], {}, refused)
    digest = hashlib.blake2b(digest_size=16, person=person)
    digest.update(framed)
    if isinstance(subject, str):
        digest.update(b"s" + subject.encode("utf-8", "surrogatepass"))
    else:
        digest.update(b"b" + subject)
    assert key == digest.hexdigest().encode()


@settings(max_examples=200)
@given(batch=st.lists(subjects, max_size=20), name=st.text(min_size=1))
def test_schema_keys_are_its_single_keys(batch: list[Any], name: str) -> None:
    schema = KeySchema("ratefuse", "ns", name, "gcra")
    expected = [KeySchema("ratefuse", "ns", name, "gcra").key(s) for s in batch]
    assert schema.keys(batch) == expected
    assert schema.keys(batch) == expected  # from the cache


def test_the_cache_keeps_short_subjects_and_empties_when_full(impl) -> None:
    maker = impl.module(STEM).KeyMaker(b"p", b"", b"", b"", 3)
    cache: dict[Any, bytes] = {}
    maker.keys(["a", b"b", 1, "x" * 257, b"y" * 257, 2**64, 2**63], cache, refused)
    # Long str and bytes, and ints past 64 bits, are not kept; the fourth
    # entry found the cache full and emptied it first.
    assert list(cache) == [2**63]
    assert maker.keys([True, 2.5], cache, refused) == [
        b"fallback:True",
        b"fallback:2.5",
    ]


def test_a_person_longer_than_blake2b_takes_is_refused(impl) -> None:
    with pytest.raises(ValueError, match="person"):
        impl.module(STEM).KeyMaker(b"x" * 17, b"", b"", b"", 1)
