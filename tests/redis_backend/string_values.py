"""The "string" layout of gcra's and the windows' keys, as the tests write
and read it (lua/string_layout.lua): per limit its field id, a space, then
each state word as a little-endian double."""

from __future__ import annotations

import struct
from collections.abc import Sequence


def entry(field: str, words: Sequence[float]) -> bytes:
    """`entry` is one limit's entry: ``field``, a space, then ``words``
    packed as doubles (any double, damage included)."""
    return field.encode() + b" " + struct.pack(f"<{len(words)}d", *words)


def string_state(value: bytes, width: int) -> dict[str, list[int]]:
    """`string_state` is every limit's words in a "string" layout value
    holding ``width`` words per limit; each must be an integer from 0."""
    state: dict[str, list[int]] = {}
    at = 0
    while at < len(value):
        space = value.index(b" ", at)
        words = struct.unpack_from(f"<{width}d", value, space + 1)
        assert all(word >= 0 and word.is_integer() for word in words), value
        state[value[at:space].decode()] = [int(word) for word in words]
        at = space + 1 + 8 * width
    return state
