"""The shared-memory key table's file layout, and creating and opening it.

Shared by the compiled core (``ext/ratefuse/engine/_shm_c.pyx``) and its twin
(``_shm_py.py``): both map the same file, so every number here is part of
the on-disk contract, versioned by ``LAYOUT_VERSION``.

Layout (native byte order: the file never leaves its host)::

    [0, 4096)         header: magic, version, ready flag, SipHash secret,
                      table and limit parameters; statistics at 128 and 136
    [4096, ...)       buckets of 256 bytes:
                        word 0      insertion sequence (see below)
                        word 1      unused
                        16 + 16*i   slot i (i < 15): fingerprint, state

A slot's state word is a limiter state packed into 63 bits (>= 0), or a
marker: ``FREE`` (-1; the slot holds no key) or ``PENDING`` (``INT64_MIN +
c``: an insertion begun at sequence ``c`` and not yet confirmed). An unused
slot is all zero (``EMPTY``); slots are filled in order and never become
EMPTY again, so a lookup stops at the first EMPTY slot.

The insertion sequence makes a new key's insertion atomic without a lock:
it is ``counter << 4 | winner``; an inserter claims a slot as PENDING(c),
then moves the sequence from ``c << 4 | *`` to ``(c+1) << 4 | slot`` with a
compare-and-swap, then confirms the slot. A PENDING(c) slot is therefore the
winner while the sequence is ``(c+1) << 4 | slot`` (anyone may confirm it),
void once the counter has passed c otherwise (reusable), and in flight
while the counter is c. See ``_shm_c.pyx`` for why SIGKILL at any point
leaves this consistent.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import stat
import struct
import time
from dataclasses import dataclass
from typing import Final

from ratefuse.core.algorithms import REGISTRY
from ratefuse.core.args import shown
from ratefuse.core.errors import RatefuseError
from ratefuse.core.spec import MAX_NOW_NS, LimitSpec

MAGIC: Final = b"RFUSESHM"
LAYOUT_VERSION: Final = 1
HEADER_BYTES: Final = 4096
BUCKET_BYTES: Final = 256
BUCKET_WORDS: Final = BUCKET_BYTES // 8
SLOTS_PER_BUCKET: Final = 15
# Buckets are sized for this many keys each (a third of their slots), so
# that a bucket overflows (and evicts early) rarely even at max_keys.
KEYS_PER_BUCKET: Final = 5
EVICTIONS_OFFSET: Final = 128
EXPIRED_OFFSET: Final = 136
WINNER_BITS: Final = 4
WINNER_MASK: Final = (1 << WINNER_BITS) - 1
FREE: Final = -1
PENDING_BASE: Final = -(1 << 63)

DEFAULT_MAX_KEYS: Final = 65_536
MAX_MAX_KEYS: Final = 1 << 28
DEFAULT_MODE: Final = 0o600
SHM_DIRECTORY: Final = "/dev/shm"
# How long an opener waits for a table that is not marked ready.
OPEN_TIMEOUT_S: Final = 2.0

KIND_KEYED: Final = 1
KIND_SINGLE: Final = 2
KIND_NAMES: Final = {KIND_KEYED: "ShmKeyedLimiter", KIND_SINGLE: "ShmLimiter"}
IMPLEMENTATION_IDS: Final = {"cython": 1, "python": 2}

# magic, version, header bytes, ready, k0, k1, buckets, slots per bucket,
# max_keys, kind, algorithm, capacity, period_ns, interval_ns, implementation
HEADER: Final = struct.Struct("=8sIIqQQqqqqqqqqq")
READY_OFFSET: Final = 16


class ShmTableError(RatefuseError, ValueError):
    """`ShmTableError` reports a shared-memory table that cannot be used as
    asked: not a ratefuse table, another layout version, or created with
    other parameters (the message names each field that differs)."""


@dataclass(frozen=True)
class Params:
    """`Params` are what a table is created with and checked against."""

    buckets: int
    max_keys: int
    kind: int
    spec: LimitSpec
    implementation: str


def check_max_keys(max_keys: object) -> int:
    """`check_max_keys` returns ``max_keys`` if it is an int in [1, 2**28]."""
    if isinstance(max_keys, bool) or not isinstance(max_keys, int):
        raise ValueError(f"max_keys must be an int, got {shown(max_keys)}")
    if not 1 <= max_keys <= MAX_MAX_KEYS:
        raise ValueError(f"max_keys must be in [1, 2**28], got {shown(max_keys)}")
    return max_keys


def bucket_count(max_keys: int) -> int:
    """`bucket_count` is the least power of two >= max_keys / 5."""
    buckets = 1
    while buckets * KEYS_PER_BUCKET < max_keys:
        buckets *= 2
    return buckets


def table_bytes(buckets: int) -> int:
    """`table_bytes` is the size of a table file with ``buckets`` buckets."""
    return HEADER_BYTES + buckets * BUCKET_BYTES


def resolve_path(path: object) -> str:
    """`resolve_path` maps a bare name to /dev/shm/<name> and checks that a
    path names a file in an existing directory; raises ValueError naming
    ``path``."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise ValueError(f"path must be a str or os.PathLike, got {shown(path)}")
    if not path or "\x00" in path or path in (".", ".."):
        raise ValueError(f"path must name a file, got {shown(path)}")
    if "/" not in path:
        if not os.path.isdir(SHM_DIRECTORY):
            raise ValueError(
                f"path {shown(path)} is a bare name, which maps to {SHM_DIRECTORY}, "
                "and that directory does not exist here: pass a file path"
            )
        return os.path.join(SHM_DIRECTORY, path)
    resolved = os.path.abspath(path)
    if path.endswith("/") or os.path.isdir(resolved):
        raise ValueError(f"path must name a file, not a directory: {shown(path)}")
    if not os.path.isdir(os.path.dirname(resolved)):
        raise ValueError(f"path {shown(path)}: directory does not exist")
    return resolved


def packing_bits(spec: LimitSpec) -> int:
    """`packing_bits` is the width of each count in a packed window state
    (0 for gcra); raises ValueError if ``spec`` does not fit one word."""
    counts = REGISTRY.by_name(spec.algorithm).shm_counts
    if counts == 0:
        if spec.interval_ns * spec.capacity >= 1 << 62:
            raise ValueError(
                "burst: in shared memory burst * period / limit must be below "
                f"2**62 ns, got burst={spec.capacity}"
            )
        return 0
    if counts is None:
        supported = REGISTRY.named(lambda record: record.shm_counts is not None)
        raise ValueError(
            f"algorithm must be {' or '.join(supported)} for a shared-memory "
            f"limiter, got {spec.algorithm!r}"
        )
    count_bits = spec.capacity.bit_length()
    window_bits = (MAX_NOW_NS // spec.period_ns).bit_length()
    if window_bits + counts * count_bits > 63:
        most = (1 << ((63 - window_bits) // counts)) - 1
        raise ValueError(
            f"limit: {spec.algorithm} in shared memory packs the window index "
            f"and {counts} count(s) into one 63-bit word; with a period of "
            f"{spec.period_ns / 1e9:g} s the limit may be at most {most}, got "
            f"{spec.capacity} (use a longer period or gcra)"
        )
    return count_bits


def describe(spec: LimitSpec) -> str:
    """`describe` renders a spec's fields for error messages."""
    return (
        f"{spec.algorithm} capacity={spec.capacity} period_ns={spec.period_ns} "
        f"interval_ns={spec.interval_ns}"
    )


class ShmTable:
    """`ShmTable` is one mapped table file: its descriptor, its mapping and
    the parameters read from its header. Not thread-safe to close."""

    def __init__(self, path: str, fd: int, mapping: mmap.mmap, params: Params):
        self.path = path
        self.fd = fd
        self.mmap = mapping
        self.params = params
        header = HEADER.unpack_from(mapping, 0)
        self.k0: int = header[4]
        self.k1: int = header[5]
        self.closed = False

    def close(self) -> None:
        """`close` unmaps the table and closes its descriptor (idempotent).
        Raises BufferError while a core still holds the mapping."""
        if not self.closed:
            self.mmap.close()
            os.close(self.fd)
            self.closed = True


def open_table(
    path: str, params: Params, mode: int, secret: bytes | None = None
) -> ShmTable:
    """`open_table` opens the table at ``path``, creating it if absent.

    Creation is race-free: the file is built and marked ready under a
    temporary name, then hard-linked into place (``link`` fails if another
    process got there first, whose table is then opened instead). Raises
    ShmTableError if the table was created with other parameters, or if
    an untrusted user can have written it (`check_trusted`). ``secret``
    (16 bytes; tests only) fixes the key hashing secret of a new table.
    """
    size = table_bytes(params.buckets)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            _create(path, params, size, mode, secret or secrets.token_bytes(16))
            continue
        except OSError as exc:
            raise ShmTableError(
                f"cannot open shared-memory table {path}: {exc}"
            ) from exc
        try:
            return _attach(path, fd, params, size, mode)
        except BaseException:
            os.close(fd)
            raise


def _create(path: str, params: Params, size: int, mode: int, secret: bytes) -> None:
    directory, name = os.path.split(path)
    temporary = os.path.join(
        directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    )
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, mode)
    try:
        os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
        os.ftruncate(fd, size)
        with mmap.mmap(fd, HEADER_BYTES) as header:
            spec = params.spec
            HEADER.pack_into(
                header,
                0,
                MAGIC,
                LAYOUT_VERSION,
                HEADER_BYTES,
                0,
                int.from_bytes(secret[:8], "little"),
                int.from_bytes(secret[8:], "little"),
                params.buckets,
                SLOTS_PER_BUCKET,
                params.max_keys,
                params.kind,
                REGISTRY.by_name(spec.algorithm).id,
                spec.capacity,
                spec.period_ns,
                spec.interval_ns,
                IMPLEMENTATION_IDS[params.implementation],
            )
            struct.pack_into("=q", header, READY_OFFSET, 1)
        # If another process created it first, open theirs.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.close(fd)
        os.unlink(temporary)


def _attach(path: str, fd: int, params: Params, size: int, mode: int) -> ShmTable:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ShmTableError(f"{path} is not a regular file")
    check_trusted(path, info, mode)
    if info.st_size < HEADER_BYTES:
        raise ShmTableError(
            f"{path} is not a ratefuse shared-memory table ({info.st_size} bytes)"
        )
    mapping = mmap.mmap(fd, info.st_size)
    try:
        if mapping[:8] != MAGIC:
            raise ShmTableError(
                f"{path} is not a ratefuse shared-memory table "
                f"(magic {mapping[:8]!r}, expected {MAGIC!r})"
            )
        _wait_ready(path, mapping)
        _check(path, mapping, params, info.st_size, size)
    except BaseException:
        mapping.close()
        raise
    return ShmTable(path, fd, mapping, params)


def check_trusted(path: str, info: os.stat_result, mode: int) -> None:
    """`check_trusted` raises ShmTableError unless the table file described
    by ``info`` (fstat of the open descriptor, so no one can swap the file
    between the check and the mapping) is one that only trusted users can
    have written: owned by this process's effective user or by root, or,
    when ``mode`` shares the table with a group, by a member of one of this
    process's groups; and granting no permission beyond ``mode``.

    Without it, any local user could pre-create the name (``/dev/shm`` is
    writable by all) with a valid header and mode 0o666: the victim would
    use it, and the other user could read the SipHash secret and rewrite
    every state. Refused tables are never mapped."""
    user = os.geteuid()
    groups = {os.getegid(), *os.getgroups()}
    shared = bool(mode & 0o070) and info.st_gid in groups
    if info.st_uid not in (user, 0) and not shared:
        raise ShmTableError(
            f"{path} is owned by uid {info.st_uid}, not by this user "
            f"(uid {user}): refusing a table another user could have written; "
            "remove it, or pass a mode with group access (e.g. mode=0o660) "
            "to share tables within a group"
        )
    extra = stat.S_IMODE(info.st_mode) & 0o777 & ~mode
    if extra:
        raise ShmTableError(
            f"{path} has mode {stat.S_IMODE(info.st_mode):#o}, which grants "
            f"{extra:#o} beyond the requested mode {mode:#o}: refusing a "
            "table other users could read or write; fix its mode, or pass "
            "the mode it was created with"
        )


def _wait_ready(path: str, mapping: mmap.mmap) -> None:
    # Tables are linked into place only once ready, so this waits only for
    # files made some other way; a bounded wait, never a hang.
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while struct.unpack_from("=q", mapping, READY_OFFSET)[0] != 1:
        if time.monotonic() > deadline:
            raise ShmTableError(
                f"{path} is not marked ready after {OPEN_TIMEOUT_S} s; "
                "remove it if no process is creating it"
            )
        time.sleep(0.001)


def _check(
    path: str, mapping: mmap.mmap, params: Params, actual_size: int, size: int
) -> None:
    fields = HEADER.unpack_from(mapping, 0)
    version = fields[1]
    if version != LAYOUT_VERSION or fields[2] != HEADER_BYTES:
        raise ShmTableError(
            f"{path} has layout version {version}, this ratefuse reads version "
            f"{LAYOUT_VERSION}: remove it or use a new name"
        )
    spec = params.spec
    implementations = {value: name for name, value in IMPLEMENTATION_IDS.items()}
    record = REGISTRY.by_id(fields[10])
    table_spec = LimitSpec(record.name if record else "?", *fields[11:14])
    pairs = [
        ("max_keys", fields[8], params.max_keys),
        ("kind", KIND_NAMES.get(fields[9], "?"), KIND_NAMES[params.kind]),
        ("algorithm and rate", describe(table_spec), describe(spec)),
        (
            "implementation",
            implementations.get(fields[14], "?"),
            params.implementation,
        ),
        ("buckets", fields[6], params.buckets),
        ("slots per bucket", fields[7], SLOTS_PER_BUCKET),
        ("file size", actual_size, size),
    ]
    differ = [
        f"{name}: table has {have!r}, this limiter wants {want!r}"
        for name, have, want in pairs
        if have != want
    ]
    if differ:
        raise ShmTableError(
            f"shared-memory table {path} was created with other parameters; "
            + "; ".join(differ)
        )
