"""The keyed limiter engine, reference implementation (twin of ``_keyed_c``).

`KeyedLimiterCore` holds one state per key (str, bytes or int) in a bounded
:class:`~ratefuse.core._keytable_py.KeyTable` and decides costs per key against
the same limits, all or nothing. The compiled twin has the same names,
signatures, errors and decisions, evictions included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ratefuse.core._compound_py import CompoundLimit
from ratefuse.core._decision_py import ns_to_seconds
from ratefuse.core._keys_py import fingerprint
from ratefuse.core._keytable_py import KeyTable
from ratefuse.core.args import resolve_now
from ratefuse.core.keys import (
    DEFAULT_MAX_KEYS,
    PROCESS_SECRET,
    Key,
    check_max_keys,
    split_secret,
)
from ratefuse.core.reservation import Refund
from ratefuse.core.respec import keeps_state
from ratefuse.core.spec import LimitSpec
from ratefuse.core.step_result import StepResult
from ratefuse.engine._verbs_py import KeyedVerbs
from ratefuse.engine.batch import batch_costs, batch_keys, import_numpy, one_cost
from ratefuse.engine.turn import NESTED, Turn
from ratefuse.engine.waiting import AsyncSleep, Sleep

__all__ = ["KeyedLimiterCore"]


class KeyedLimiterCore(KeyedVerbs):
    """`KeyedLimiterCore` decides costs per key against ``specs``.

    ``max_keys`` bounds the live states (see KeyTable for what happens when
    full); ``secret`` (16 bytes) keys the fingerprints, None meaning the
    per-process secret. ``clock``, ``max_wait``, ``sleep`` and
    ``async_sleep``: see :class:`~._verbs_py.Verbs`. Thread-safe: each
    decision is atomic. A decision made by a finalizer or signal handler
    that interrupted a decision of this limiter on its own thread is denied
    with retry_after inf, consuming nothing (see :mod:`ratefuse.engine.turn`);
    a refund, reset or reconfigure made there happens when the interrupted
    one ends.
    """

    def __init__(
        self,
        specs: Sequence[LimitSpec],
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], int] | None = None,
        secret: bytes | None = None,
        *,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
    ) -> None:
        self._program = CompoundLimit(specs)
        self._specs = self._program.specs
        self._k0, self._k1 = split_secret(PROCESS_SECRET if secret is None else secret)
        self._table = KeyTable(
            self._program.words, check_max_keys(max_keys), self._program.idle_at
        )
        super().__init__(clock, max_wait=max_wait, sleep=sleep, async_sleep=async_sleep)
        self._turn = Turn()
        # The reset epoch: bumped when reconfigure starts the table anew, so
        # that a reservation taken before then refunds nothing.
        self._epoch = 0

    @property
    def max_keys(self) -> int:
        """`max_keys` is the most states the table holds."""
        return self._table.max_keys

    def _locate(self, key: Key) -> int:
        return fingerprint(self._k0, self._k1, key)

    def _step(self, where: int, cost: int, now: int) -> tuple[StepResult, int]:
        if not self._turn.enter():
            return NESTED, self._specs[0].capacity
        try:
            verdict, spec = self._step_locked(where, cost, now)
        finally:
            self._turn.exit()
        return verdict, spec.capacity

    def _reserve(
        self, where: int, cost: int, bound: int, now: int
    ) -> tuple[StepResult, int, Refund]:
        if not self._turn.enter():
            return NESTED, self._specs[0].capacity, _nothing_to_refund
        try:
            program, table = self._program, self._table
            slot = table.find(where)
            if slot >= 0:
                verdict, spec, stamps = program.reserve(
                    table.states, slot * program.words, now, cost, bound
                )
            else:
                scratch = [0] * program.words
                verdict, spec, stamps = program.reserve(scratch, 0, now, cost, bound)
                if program.idle_at(scratch, 0) > now:
                    table.insert(where, scratch, now)
            self._count(verdict.allowed)
            epoch = self._epoch
        finally:
            self._turn.exit()
        refund = partial(self._refund, where, cost, stamps, epoch)
        return verdict, spec.capacity, refund

    def _refund(
        self,
        where: int,
        cost: int,
        stamps: tuple[int, ...],
        epoch: int,
        now: int | None,
    ) -> None:
        at = self._now(now)

        def refund() -> None:
            if epoch != self._epoch:
                return  # the table was started anew since: nothing to refund
            slot = self._table.find(where)
            if slot >= 0:  # an evicted or dropped key has nothing to refund
                self._program.refund(
                    self._table.states, slot * self._program.words, at, cost, stamps
                )

        self._turn.run_or_defer(refund)

    def _forget(self, where: int) -> None:
        def forget() -> None:
            slot = self._table.find(where)
            if slot >= 0:
                self._table.remove(slot)

        self._turn.run_or_defer(forget)

    def stats(self) -> dict[str, int]:
        """`stats` reports ``live_keys``, ``max_keys``, ``capacity`` (slots),
        ``evictions`` (states removed before they were idle: the only
        over-admission), ``expired`` (idle states dropped, harmlessly) and
        ``memory_bytes`` (the table's state, as the compiled engine counts
        it: 8 bytes per slot word)."""
        # Read in the turn (a reconfigure may swap the table); a call that
        # interrupted its own thread's turn reads it as it is.
        entered = self._turn.enter()
        try:
            table = self._table
            return {
                "live_keys": table.live,
                "max_keys": table.max_keys,
                "capacity": table.capacity,
                "evictions": table.evictions,
                "expired": table.expired,
                "memory_bytes": table.capacity * (1 + table.words) * 8,
            }
        finally:
            if entered:
                self._turn.exit()

    def decide_many(
        self,
        keys: Any,
        costs: Any = None,
        now: int | None = None,
        retry_after: bool = False,
    ) -> Any:
        """`decide_many` decides every key in order, as consecutive
        `try_acquire` calls at one time, and returns a numpy bool array
        (and, if ``retry_after``, a float64 array of seconds).

        ``keys``: a numpy int64 array of key ids (the same keys as Python
        ints) or a sequence of keys; ``costs``: None (each 1), an int, or one
        per key. Needs numpy (the ``numpy`` extra).
        """
        numpy = import_numpy()
        # Checked in the compiled engine's order: keys, costs, now.
        key_list = batch_keys(numpy, keys)
        fingerprints = [self._locate(key) for key in key_list]
        cost = one_cost(numpy, costs)
        cost_list = (
            [cost] * len(key_list)
            if cost is not None
            else batch_costs(numpy, costs, len(key_list))
        )
        allowed = numpy.zeros(len(key_list), dtype=numpy.bool_)
        waits = numpy.zeros(len(key_list), dtype=numpy.float64)
        at = resolve_now(self._clock, now)
        # One turn for the whole batch, as the compiled engine takes: a
        # reconfigure lands before or after it, never inside. A batch that
        # interrupted its own thread's turn is denied as a whole.
        if not self._turn.enter():
            waits[:] = ns_to_seconds(NESTED.retry_after_ns)
            return (allowed, waits) if retry_after else allowed
        try:
            for index, (fingerprint_, cost) in enumerate(
                zip(fingerprints, cost_list, strict=True)
            ):
                verdict = self._step_locked(fingerprint_, cost, at)[0]
                allowed[index] = verdict.allowed
                waits[index] = ns_to_seconds(verdict.retry_after_ns)
        finally:
            self._turn.exit()
        return (allowed, waits) if retry_after else allowed

    def _step_locked(
        self, where: int, cost: int, now: int
    ) -> tuple[StepResult, LimitSpec]:
        # Precondition: the lock is held.
        program, table = self._program, self._table
        slot = table.find(where)
        if slot >= 0:
            decided = program.decide(table.states, slot * program.words, now, cost)
        else:
            scratch = [0] * program.words
            decided = program.decide(scratch, 0, now, cost)
            if program.idle_at(scratch, 0) > now:
                table.insert(where, scratch, now)
        self._count(decided[0].allowed)
        return decided

    def reconfigure(self, specs: Sequence[LimitSpec]) -> None:
        """`reconfigure` replaces the limits of every key in one atomic step:
        each decision, and each decide_many batch as a whole, runs under the
        old specs or the new ones, never a mix.

        Every key's state is kept when it means the same under the new specs
        (see :func:`ratefuse.core.respec.keeps_state`); otherwise the table starts
        empty, as if every key were reset, and reservations taken before
        refund nothing. Counters, evictions and max_keys are kept. Raises
        ValueError for bad specs, and then nothing changes.
        """
        program = CompoundLimit(specs)

        def swap() -> None:
            if keeps_state(self._program.specs, program.specs):
                self._table.idle_at = program.idle_at
            else:
                old = self._table
                self._table = KeyTable(program.words, old.max_keys, program.idle_at)
                self._table.evictions = old.evictions
                self._table.expired = old.expired
                self._epoch += 1
            self._program = program
            self._specs = program.specs

        self._turn.run_or_defer(swap)


def _nothing_to_refund(now: int | None) -> None:
    """`_nothing_to_refund` is the refund of a reservation that took nothing."""
