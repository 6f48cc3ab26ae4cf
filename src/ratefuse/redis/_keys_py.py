"""`KeyMaker`, the reference: the Redis keys of a batch's subjects, as
:class:`._schema.KeySchema` names them (its compiled twin is
``ext/ratefuse/redis/_keys_c.pyx``; the selector is :mod:`._keys`).

``person`` personalizes BLAKE2b (16-byte digests), ``framed`` is what
every key hashes first (the framed namespace and name), ``head`` and
``tail`` go around each hex tag. `keys` reads and fills ``cache`` (the
schema's: subject to key), keyed by the short str and bytes subjects and
the ints of at most 64 bits, emptied when it holds ``entries``; any other
subject type goes to ``fallback`` (the schema's `key`, which refuses bad
types).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Final

# Digest bytes (hex: twice as many characters), and the longest str or
# bytes subject the cache keeps.
TAG_BYTES: Final = 16
CACHE_SUBJECT_BYTES: Final = 256


class KeyMaker:
    """`KeyMaker` names the keys of one schema (see the module)."""

    __slots__ = ("_bytes", "_entries", "_head", "_int", "_str", "_tail")

    def __init__(
        self, person: bytes, framed: bytes, head: bytes, tail: bytes, entries: int
    ) -> None:
        base = hashlib.blake2b(digest_size=TAG_BYTES, person=person)
        base.update(framed)
        # The subject's type tag is hashed ahead of time, once per type.
        self._str, self._bytes, self._int = base.copy(), base.copy(), base.copy()
        self._str.update(b"s")
        self._bytes.update(b"b")
        self._int.update(b"i")
        self._head = head
        self._tail = tail
        self._entries = entries

    def keys(
        self,
        subjects: Sequence[Any],
        cache: dict[Any, bytes],
        fallback: Callable[[Any], bytes],
    ) -> list[bytes]:
        """`keys` is the key of each subject, in order."""
        head, tail, entries = self._head, self._tail, self._entries
        str_digest, bytes_digest, int_digest = self._str, self._bytes, self._int
        keys: list[bytes] = []
        append = keys.append
        for subject in subjects:
            kind = type(subject)
            if kind is str or kind is bytes:
                key = cache.get(subject)
                if key is None:
                    if kind is str:
                        digest = str_digest.copy()
                        digest.update(subject.encode("utf-8", "surrogatepass"))
                    else:
                        digest = bytes_digest.copy()
                        digest.update(subject)
                    key = head + digest.hexdigest().encode() + tail
                    if len(subject) <= CACHE_SUBJECT_BYTES:
                        if len(cache) >= entries:
                            cache.clear()
                        cache[subject] = key
            elif kind is int:
                # Two's complement, big-endian, as _schema.subject_bytes.
                key = cache.get(subject)
                if key is None:
                    size = subject.bit_length()
                    digest = int_digest.copy()
                    digest.update(subject.to_bytes(size // 8 + 1, "big", signed=True))
                    key = head + digest.hexdigest().encode() + tail
                    if size <= 64:
                        if len(cache) >= entries:
                            cache.clear()
                        cache[subject] = key
            else:
                key = fallback(subject)
            append(key)
        return keys
