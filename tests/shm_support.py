"""Helpers for the shared-memory tests: building cores of either
implementation on a table, reading a table's raw words, checking a table's
invariants, and the worker functions that spawned processes run (they must
live in an importable module)."""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ratefuse.core import implementation as _impl
from ratefuse.engine import shm_layout as layout
from ratefuse.rates import Rate, build_specs
from ratefuse.shm import ShmBackend

SECRET = bytes(range(16))
WORD = struct.Struct("=q")
SLOTS = layout.SLOTS_PER_BUCKET


def core(
    impl_name: str,
    backend: ShmBackend,
    rate: Rate,
    algorithm: str = "gcra",
    *,
    single: bool = False,
    secret: bytes | None = SECRET,
    **options: Any,
) -> Any:
    """`core` is a keyed (or ``single``) shared-memory core of implementation
    ``impl_name`` on ``backend``'s table, created with ``secret``."""
    spec = build_specs([rate], algorithm)[0]
    kind = layout.KIND_SINGLE if single else layout.KIND_KEYED
    table = backend.open_table(spec, kind, impl_name, secret)  # type: ignore[arg-type]
    module = _impl.load("engine._shm", impl_name)  # type: ignore[arg-type]
    cls = module.ShmLimiterCore if single else module.ShmKeyedLimiterCore
    return cls(table, **options)


def words(path: str | Path) -> list[int]:
    """`words` is the table file as signed int64 words."""
    data = Path(path).read_bytes()
    return [value for (value,) in WORD.iter_unpack(data)]


def body(path: str | Path) -> bytes:
    """`body` is the table without the header's implementation field: what
    two implementations must agree on."""
    data = Path(path).read_bytes()
    return data[:104] + data[112:]


def slots(path: str | Path) -> list[list[tuple[int, int]]]:
    """`slots` is every bucket's (fingerprint, state) pairs."""
    table = words(path)
    buckets = table[40 // 8]
    result = []
    for bucket in range(buckets):
        base = layout.HEADER_BYTES // 8 + bucket * layout.BUCKET_WORDS + 2
        result.append(
            [
                (table[base + 2 * i] & (2**64 - 1), table[base + 2 * i + 1])
                for i in range(SLOTS)
            ]
        )
    return result


def check_consistent(path: str | Path) -> None:
    """`check_consistent` asserts the table's invariants: every state word
    is a packed state, FREE or PENDING; EMPTY slots form a suffix of each
    bucket; no key has two confirmed slots in its bucket."""
    for bucket in slots(path):
        empty_seen = False
        confirmed = Counter()
        for fingerprint, state in bucket:
            if fingerprint == 0 and state == 0:
                empty_seen = True
                continue
            assert not empty_seen, f"non-empty slot after an empty one: {bucket}"
            if state >= 0:
                assert fingerprint != 0, f"state without a key: {bucket}"
                confirmed[fingerprint] += 1
            else:
                assert state == layout.FREE or state - layout.PENDING_BASE < 1 << 60
        duplicates = [key for key, count in confirmed.items() if count > 1]
        assert not duplicates, f"keys with two confirmed slots: {duplicates}"


# ---- a clock shared by processes ----


class SharedClock:
    """`SharedClock` is a counter in a file that processes advance under
    ``flock``, plus a start line: the kernel drops the lock of a killed
    process, so killing a worker never stalls the others (a worker killed
    inside a multiprocessing lock or barrier would)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < 24:
            os.ftruncate(self._fd, 24)
        self._map = mmap.mmap(self._fd, 24)
        self._words = memoryview(self._map).cast("q")

    def _add(self, index: int) -> int:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._words[index] += 1
            return int(self._words[index])
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def tick(self) -> int:
        """`tick` advances the counter and returns its new value."""
        return self._add(0)

    def arrive_and_wait(self) -> None:
        """`arrive_and_wait` counts this worker in and waits for `go`."""
        self._add(1)
        while self._words[2] == 0:
            time.sleep(0.0005)  # waiting for the other processes to start

    def go(self, workers: int, timeout_s: float) -> None:
        """`go` waits for ``workers`` arrivals, then lets them all start."""
        deadline = time.monotonic() + timeout_s
        while self._words[1] < workers:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.001)
        self._words[2] = 1

    @property
    def value(self) -> int:
        """`value` is the counter (read without the lock)."""
        return int(self._words[0])

    def close(self) -> None:
        """`close` unmaps the counter."""
        self._words.release()
        self._map.close()
        os.close(self._fd)


# ---- workers run in spawned processes ----


# The shared clock advances this much per decision.
STEP_NS = 250_000


def hammer_worker(
    impl_name: str,
    path: str,
    max_keys: int,
    rate: Rate,
    keys: int,
    calls: int,
    clock_path: str,
    admitted: Any,
    index: int,
) -> None:
    """`hammer_worker` makes ``calls`` decisions on keys ``0..keys-1`` in
    turn, each at the next time of the shared clock (``STEP_NS`` per tick),
    and publishes its admissions in ``admitted[index]`` after each one (so
    a killed worker has reported all but at most its last admission)."""
    limiter = core(impl_name, ShmBackend(path, max_keys), rate, secret=None)
    clock = SharedClock(clock_path)
    clock.arrive_and_wait()
    count = 0
    for call in range(calls):
        now = clock.tick() * STEP_NS
        count += limiter.try_acquire(call % keys, 1, now)
        admitted[index] = count
    limiter.close()
    clock.close()


def fresh_worker(
    impl_name: str,
    path: str,
    max_keys: int,
    rate: Rate,
    keys: int,
    calls: int,
    now: int,
    admitted: Any,
    start: Any = None,
    slot: int = 0,
) -> None:
    """`fresh_worker` opens (or creates) the table and makes ``calls``
    decisions on each of keys ``0..keys-1`` at ``now``; ``admitted[key]``
    counts them (``admitted[slot + key]``). With ``start``, it first waits
    there for the others."""
    if start is not None:
        start.wait()
    limiter = core(impl_name, ShmBackend(path, max_keys), rate, secret=None)
    for key in range(keys):
        admitted[slot + key] = sum(
            limiter.try_acquire(key, 1, now) for _ in range(calls)
        )
    limiter.close()


def inherited_worker(
    limiter: Any, calls: int, now: int, admitted: Any, index: int
) -> None:
    """`inherited_worker` uses a limiter its parent built before forking."""
    admitted[index] = sum(limiter.try_acquire("k", 1, now) for _ in range(calls))
