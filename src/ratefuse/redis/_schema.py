"""The key schema: ``<prefix>:{<tag>}:<algorithm>:v<N>``.

``<tag>`` is a fixed-length hex BLAKE2b digest of (namespace, limiter name,
subject), each length-prefixed and the subject type-tagged, so that:

- no caller-supplied text ever lands in a key, let alone inside the braces
  that pick the Redis Cluster slot (a subject containing ``}`` or ``:`` is
  just bytes to hash);
- every key has the same bounded length whatever the subject (1 MB subjects
  make 70-byte keys);
- every limit of one subject lives in one hash under one key, hence in one
  slot, so a compound limit is decided atomically by one script on a
  cluster too.

Subjects are ``str``, ``bytes`` or ``int`` (``bool`` counts as an int, as a
dict key would); ``"1"``, ``b"1"`` and ``1`` are three different subjects.
``N`` is the key's version (`key_version`), bumped whenever the state
layout of that kind of key changes, so that old and new clients never read
each other's state (nor repair it as damage). A rolling upgrade that bumps
a version counts old and new processes apart: while both run, each group
decides against its own keys (together up to twice a limit), and the new
keys start without the old ones' history (up to one more limit within a
window, or tau, of the switch).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from ratefuse.redis._keys import KeyMaker

KEY_VERSION: Final = 2
# The kinds of key (their algorithm) whose layout changed since
# KEY_VERSION, and their version: gcra and the windows' "string" layout
# became binary in 3 (lua/string_layout.lua), and so did the sliding log's
# hash (lua/log_header.lua: a header field and ring entries per limit).
KEY_VERSIONS: Final[Mapping[str, int]] = MappingProxyType(
    {"gcra": 3, "fixed_window": 3, "sliding_window": 3, "sliding_log": 3}
)
DEFAULT_PREFIX: Final = "ratefuse"
# 16 bytes of digest: 32 hex characters; collisions need ~2**64 subjects.
TAG_BYTES: Final = 16
MAX_PREFIX_LENGTH: Final = 64
_PREFIX_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:\-]+")
_PERSON: Final = b"ratefuse-key-v1"
_CACHE_ENTRIES: Final = 8192
_CACHE_SUBJECT_BYTES: Final = 256

Subject = str | bytes | int


def key_version(kind: str) -> int:
    """`key_version` is the version ending the keys of ``kind`` (an
    algorithm, or another kind of key such as "fleet_breaker"): its entry
    in `KEY_VERSIONS`, else `KEY_VERSION`."""
    return KEY_VERSIONS.get(kind, KEY_VERSION)


def subject_bytes(subject: Subject) -> bytes:
    """`subject_bytes` is ``subject`` as type-tagged bytes: injective over
    str, bytes and int together. Raises TypeError for any other type.

    Strings are UTF-8 with lone surrogates passed through (still
    injective); ints are two's-complement big-endian of any size.
    """
    if isinstance(subject, str):
        return b"s" + subject.encode("utf-8", "surrogatepass")
    if isinstance(subject, bytes):
        return b"b" + subject
    if isinstance(subject, int):
        value = int(subject)
        return b"i" + value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    raise TypeError(
        f"a limiter key must be str, bytes or int, got {type(subject).__name__}"
    )


def check_subjects(subjects: Sequence[Subject]) -> None:
    """`check_subjects` raises TypeError, as `subject_bytes` does, unless
    every subject is a str, bytes or int (or a subclass): a batch's
    subjects are checked before any of them is sent."""
    for subject in subjects:
        kind = type(subject)
        if kind is not str and kind is not bytes and kind is not int:
            subject_bytes(subject)


def _cacheable(subject: Subject) -> bool:
    # Short str and bytes, and ints (True and 1 share a cache entry, as
    # they share a key).
    if isinstance(subject, (str, bytes)):
        return len(subject) <= _CACHE_SUBJECT_BYTES
    return isinstance(subject, int) and subject.bit_length() <= 64


def _framed(part: bytes) -> bytes:
    return len(part).to_bytes(8, "big") + part


def check_prefix(prefix: str) -> str:
    """`check_prefix` returns ``prefix`` or raises ValueError: 1 to 64 of
    ``A-Z a-z 0-9 _ . : -`` (no braces, so the prefix can never pick the
    slot)."""
    if not isinstance(prefix, str) or not _PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(
            f"prefix must be letters, digits, '_', '.', ':' or '-', got {prefix!r}"
        )
    if len(prefix) > MAX_PREFIX_LENGTH:
        raise ValueError(
            f"prefix must be at most {MAX_PREFIX_LENGTH} characters, got {prefix!r}"
        )
    return prefix


class KeySchema:
    """`KeySchema` names the Redis key of each subject of one limiter.

    ``prefix`` opens every key (see `check_prefix`); ``namespace`` and
    ``name`` (any str) are hashed with the subject. ``algorithm`` is the
    canonical algorithm. Immutable and thread-safe.
    """

    __slots__ = (
        "_bytes",
        "_cache",
        "_head",
        "_int",
        "_maker",
        "_str",
        "_tail",
        "algorithm",
        "name",
        "namespace",
        "prefix",
    )

    def __init__(self, prefix: str, namespace: str, name: str, algorithm: str) -> None:
        if not isinstance(namespace, str):
            raise ValueError(f"namespace must be a str, got {namespace!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self.prefix = check_prefix(prefix)
        self.namespace = namespace
        self.name = name
        self.algorithm = algorithm
        base = hashlib.blake2b(digest_size=TAG_BYTES, person=_PERSON)
        base.update(_framed(namespace.encode("utf-8", "surrogatepass")))
        base.update(_framed(name.encode("utf-8", "surrogatepass")))
        # The subject comes last, so it needs no length; its type tag is
        # hashed ahead of time, once per type.
        self._str, self._bytes, self._int = base.copy(), base.copy(), base.copy()
        self._str.update(b"s")
        self._bytes.update(b"b")
        self._int.update(b"i")
        self._head = f"{prefix}:{{".encode()
        self._tail = f"}}:{algorithm}:v{key_version(algorithm)}".encode()
        self._cache: dict[Subject, bytes] = {}
        self._maker = KeyMaker(
            _PERSON,
            _framed(namespace.encode("utf-8", "surrogatepass"))
            + _framed(name.encode("utf-8", "surrogatepass")),
            self._head,
            self._tail,
            _CACHE_ENTRIES,
        )

    def tag(self, subject: Subject) -> bytes:
        """`tag` is the hex digest naming ``subject`` (ASCII bytes)."""
        kind = type(subject)
        if kind is str:
            digest = self._str.copy()
            digest.update(subject.encode("utf-8", "surrogatepass"))  # type: ignore[union-attr]
        elif kind is bytes:
            digest = self._bytes.copy()
            digest.update(subject)  # type: ignore[arg-type]
        else:
            encoded = subject_bytes(subject)  # raises TypeError for other types
            digest = (
                self._str
                if encoded[0] == 115
                else self._bytes
                if encoded[0] == 98
                else self._int
            ).copy()
            digest.update(encoded[1:])
        return digest.hexdigest().encode()

    def key(self, subject: Subject) -> bytes:
        """`key` is the Redis key holding every limit's state of ``subject``.

        Keys of short subjects are remembered (a bounded cache, emptied when
        full): a hot subject costs a dict lookup instead of a hash.
        """
        kind = type(subject)
        if kind is not str and kind is not bytes and kind is not int:
            # Subclasses, bool (as its int) and invalid types (TypeError);
            # never looked up, so that 1.0 cannot hit the entry of 1.
            return self._head + self.tag(subject) + self._tail
        cache = self._cache
        key = cache.get(subject)
        if key is None:
            key = self._head + self.tag(subject) + self._tail
            if _cacheable(subject):
                if len(cache) >= _CACHE_ENTRIES:
                    cache.clear()
                cache[subject] = key
        return key

    def keys(self, subjects: Sequence[Subject]) -> list[bytes]:
        """`keys` is `key` of each subject: the same keys, and the same
        cache, made in a batch by the compiled :class:`._keys.KeyMaker`."""
        return self._maker.keys(subjects, self._cache, self.key)

    @property
    def key_length(self) -> int:
        """`key_length` is the length of every key, in bytes."""
        return len(self._head) + 2 * TAG_BYTES + len(self._tail)
