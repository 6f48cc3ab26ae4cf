"""The shared-memory limiter cores, reference implementation (twin of
``ext/ratefuse/engine/_shm_c.pyx``).

Same layout (:mod:`.shm_layout`), same table algorithm, same decisions and
same table contents, step by step; where the compiled core publishes each
change with a compare-and-swap, this one holds an exclusive ``lockf`` lock
on the table file for each operation (plus a thread lock: POSIX record locks
do not exclude threads of one process) and writes the same words in the
same order, each with one aligned 8-byte store. A process killed mid-write
therefore leaves the same intermediate states the compiled protocol allows,
and the lock dies with it. A table records which implementation created it
and refuses the other, because a locked writer and a CAS writer do not
exclude each other.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from types import TracebackType
from typing import Final, TypeVar

from ratefuse.core._keys_py import fingerprint as key_fingerprint
from ratefuse.core.algorithms import REGISTRY
from ratefuse.core.counters import LimiterCounters
from ratefuse.core.keys import Key
from ratefuse.core.reservation import Refund
from ratefuse.core.step_result import StepResult
from ratefuse.engine import shm_layout as layout
from ratefuse.engine._verbs_py import KeyedVerbs, SubjectVerbs, Verbs
from ratefuse.engine.turn import NESTED, Turn
from ratefuse.engine.waiting import AsyncSleep, Sleep

__all__ = ["ShmKeyedLimiterCore", "ShmLimiterCore"]

CoreT = TypeVar("CoreT", bound="_ShmCore")
OP_STEP: Final = 0
OP_RESERVE: Final = 1
OP_REFUND: Final = 2
SLOTS: Final = layout.SLOTS_PER_BUCKET
HEADER_WORDS: Final = layout.HEADER_BYTES // 8
EVICTIONS_WORD: Final = layout.EVICTIONS_OFFSET // 8
EXPIRED_WORD: Final = layout.EXPIRED_OFFSET // 8
BITS: Final = layout.WINNER_BITS
FREE: Final = layout.FREE
PENDING_BASE: Final = layout.PENDING_BASE
NO_VERDICT: Final = StepResult(False, 0, 0, 0)

# Serialises the twin's operations within a process: POSIX record locks
# exclude processes only, and closing any descriptor of a file drops this
# process's locks on it, so closes are serialised with operations too. A
# decision that interrupted its own thread's turn (a finalizer, a signal
# handler) is denied; a refund, reset or close made there waits for the
# end of the turn (see ratefuse.engine.turn).
_process_turn = Turn()


def _reinit_lock() -> None:  # pragma: no cover - runs in forked children
    global _process_turn
    _process_turn = Turn()  # it may have been held across fork


os.register_at_fork(after_in_child=_reinit_lock)


def _pending(state: int) -> bool:
    return state < 0 and state != FREE


class _ShmCore(Verbs):
    """The shared-memory table as a state locator, for the keyed and the
    single-subject cores; see ``_shm_c._ShmCore``."""

    def __init__(
        self,
        table: layout.ShmTable,
        clock: Callable[[], int] | None = None,
        *,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
    ) -> None:
        spec = table.params.spec
        self._spec = spec
        self._algorithm = REGISTRY.by_name(spec.algorithm).reference
        self._count_bits = layout.packing_bits(spec)
        self._count_mask = (1 << self._count_bits) - 1
        self._counts = REGISTRY.by_name(spec.algorithm).shm_counts
        super().__init__(clock, max_wait=max_wait, sleep=sleep, async_sleep=async_sleep)
        self._k0, self._k1 = table.k0, table.k1
        # Where a one-subject core's state is: the key b""'s slot.
        self._subject = key_fingerprint(self._k0, self._k1, b"")
        self._bucket_mask = table.params.buckets - 1
        self._unsigned = memoryview(table.mmap).cast("Q")
        self._signed = memoryview(table.mmap).cast("q")
        self.table = table
        self._closed = False

    def close(self) -> None:
        """`close` unmaps the table (idempotent); later calls raise ValueError."""

        def close() -> None:
            if not self._closed:
                self._closed = True
                self._unsigned.release()
                self._signed.release()
                self.table.close()

        _process_turn.run_or_defer(close)

    def __enter__(self: CoreT) -> CoreT:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{type(self).__name__} is closed")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Precondition: the process turn is held.
        self._check_open()
        fcntl.lockf(self.table.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self.table.fd, fcntl.LOCK_UN)

    # ---- state packing (see shm_layout.packing_bits) ----

    def _unpack(self, word: int) -> list[int]:
        bits, mask = self._count_bits, self._count_mask
        if self._counts == 0:
            return [word]
        if self._counts == 1:
            return [word >> bits, word & mask]
        return [word >> 2 * bits, (word >> bits) & mask, word & mask]

    def _pack(self, state: list[int]) -> int:
        bits = self._count_bits
        if self._counts == 0:
            return max(state[0], 0)  # a tat below 0 decides as 0
        if self._counts == 1:
            return state[0] << bits | state[1]
        return state[0] << 2 * bits | state[1] << bits | state[2]

    def _apply(
        self, op: int, state: list[int], now: int, cost: int, arg: int
    ) -> StepResult:
        if op == OP_STEP:
            return self._algorithm.step(self._spec, state, 0, now, cost, True)
        if op == OP_RESERVE:
            # As CompoundLimit.reserve: a denied reservation leaves the state as it
            # was (a window is not rolled forward).
            reserve = self._algorithm.reserve
            verdict = reserve(self._spec, state, 0, now, cost, arg, False)
            if verdict.allowed:
                verdict = reserve(self._spec, state, 0, now, cost, arg, True)
            return verdict
        self._algorithm.refund(self._spec, state, 0, now, cost, arg)
        return NO_VERDICT

    def _idle_at(self, word: int) -> int:
        return self._algorithm.idle_at(self._spec, self._unpack(word), 0)

    # ---- the table (word indexes into the mapping) ----

    def _bucket(self, fingerprint: int) -> int:
        return HEADER_WORDS + (fingerprint & self._bucket_mask) * layout.BUCKET_WORDS

    def _find(self, fingerprint: int) -> int:
        """`_find` is the word index of the key's confirmed slot, or -1;
        confirms the key's winning insertion. Precondition: locked."""
        bucket = self._bucket(fingerprint)
        for index in range(SLOTS):
            slot = bucket + 2 + 2 * index
            found, state = self._unsigned[slot], self._signed[slot + 1]
            if found == fingerprint:
                if state >= 0:
                    return slot
                winner = (state - PENDING_BASE + 1) << BITS | index
                if _pending(state) and self._signed[bucket] == winner:
                    self._signed[slot + 1] = 0
                    return slot
            elif found == 0 and state == 0:
                return -1
        return -1

    def _insert(self, fingerprint: int, now: int) -> int:
        """`_insert` stores the key as new and returns its slot (the same
        target as the compiled core's `insert`). Precondition: locked, and
        the key is absent."""
        bucket = self._bucket(fingerprint)
        sequence = self._signed[bucket]
        counter = sequence >> BITS
        free = idle_slot = victim = in_flight = -1
        victim_idle = 0
        for index in range(SLOTS):
            slot = bucket + 2 + 2 * index
            found, state = self._unsigned[slot], self._signed[slot + 1]
            if _pending(state):
                if sequence == (state - PENDING_BASE + 1) << BITS | index:
                    self._signed[slot + 1] = state = 0
                elif counter > state - PENDING_BASE:
                    free = index if free < 0 else free
                    continue
                else:
                    in_flight = index if in_flight < 0 else in_flight
                    continue
            if state == FREE:
                free = index if free < 0 else free
                continue
            if found == 0:
                free = index if free < 0 else free
                break
            idle = self._idle_at(state)
            if idle <= now:
                idle_slot = index if idle_slot < 0 else idle_slot
            elif victim < 0 or idle < victim_idle:
                victim, victim_idle = index, idle
        for target in (free, idle_slot, victim, in_flight):
            if target >= 0:
                break
        slot = bucket + 2 + 2 * target
        # The compiled core's claim, sequence advance and confirmation, in
        # the same order: each store is a state that protocol allows.
        self._signed[slot + 1] = PENDING_BASE + counter
        self._unsigned[slot] = fingerprint
        if free < 0 and target == victim:
            self._signed[EVICTIONS_WORD] += 1
        elif free < 0 and target == idle_slot:
            self._signed[EXPIRED_WORD] += 1
        self._signed[bucket] = (counter + 1) << BITS | target
        self._signed[slot + 1] = 0
        return slot

    def _run(
        self, fingerprint: int, op: int, now: int, cost: int, arg: int
    ) -> StepResult:
        """`_run` applies ``op`` to the key's state under the lock (a refund
        interrupting this thread's turn: at the end of that turn)."""
        self._check_open()
        if op == OP_REFUND:

            def refund() -> None:
                with self._locked():
                    self._run_locked(fingerprint, op, now, cost, arg)

            _process_turn.run_or_defer(refund)
            return NO_VERDICT
        if not _process_turn.enter():
            return NESTED
        try:
            with self._locked():
                verdict = self._run_locked(fingerprint, op, now, cost, arg)
                self._count(verdict.allowed)
                return verdict
        finally:
            _process_turn.exit()

    def _run_locked(
        self, fingerprint: int, op: int, now: int, cost: int, arg: int
    ) -> StepResult:
        # Precondition: the lock is held.
        slot = self._find(fingerprint)
        if slot < 0:
            state = [0, 0, 0]
            verdict = self._apply(op, state, now, cost, arg)
            idle = self._algorithm.idle_at(self._spec, state, 0)
            if op == OP_REFUND or idle <= now:
                return verdict
            slot = self._insert(fingerprint, now)
        state = self._unpack(self._signed[slot + 1])
        verdict = self._apply(op, state, now, cost, arg)
        self._signed[slot + 1] = self._pack(state)
        return verdict

    def counters(self) -> LimiterCounters:
        """`counters` snapshots this process's decisions (not the other
        processes' sharing the table) since construction (see
        :class:`ratefuse.core.counters.LimiterCounters`)."""
        return super().counters()

    def _step(self, where: int, cost: int, now: int) -> tuple[StepResult, int]:
        return self._run(where, OP_STEP, now, cost, 0), self._spec.capacity

    def _reserve(
        self, where: int, cost: int, bound: int, now: int
    ) -> tuple[StepResult, int, Refund]:
        verdict = self._run(where, OP_RESERVE, now, cost, bound)
        refund = partial(self._refund, where, cost, verdict.stamp)
        return verdict, self._spec.capacity, refund

    def _refund(self, where: int, cost: int, stamp: int, now: int | None) -> None:
        self._run(where, OP_REFUND, self._now(now), cost, stamp)

    def _forget(self, where: int) -> None:
        self._check_open()

        def forget() -> None:
            with self._locked():
                slot = self._find(where)
                if slot >= 0:
                    self._signed[slot + 1] = FREE
                    self._unsigned[slot] = 0

        _process_turn.run_or_defer(forget)

    def stats(self) -> dict[str, int]:
        """`stats` reports ``live_keys``, ``max_keys``, ``capacity``,
        ``evictions``, ``expired`` and ``memory_bytes`` (see the compiled
        core's `stats`)."""
        if self._closed:
            raise ValueError(f"{type(self).__name__} is closed")
        buckets = self._bucket_mask + 1
        live = 0
        for bucket in range(buckets):
            base = HEADER_WORDS + bucket * layout.BUCKET_WORDS + 2
            for slot in range(base, base + 2 * SLOTS, 2):
                live += self._unsigned[slot] != 0 and self._signed[slot + 1] >= 0
        return {
            "live_keys": live,
            "max_keys": self.table.params.max_keys,
            "capacity": buckets * SLOTS,
            "evictions": self._signed[EVICTIONS_WORD],
            "expired": self._signed[EXPIRED_WORD],
            "memory_bytes": layout.table_bytes(buckets),
        }


class ShmKeyedLimiterCore(_ShmCore, KeyedVerbs):
    """`ShmKeyedLimiterCore` decides costs per key against the limit of a
    shared-memory table; see the compiled twin for the contract."""

    def _locate(self, key: Key) -> int:
        return key_fingerprint(self._k0, self._k1, key)


class ShmLimiterCore(_ShmCore, SubjectVerbs):
    """`ShmLimiterCore` is `ShmKeyedLimiterCore` for one subject: its state
    is the key ``b""``'s (see ``_ShmCore._subject``)."""
