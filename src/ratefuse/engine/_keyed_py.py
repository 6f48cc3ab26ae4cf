"""The keyed limiter engine, reference implementation (twin of ``_keyed_c``).

`KeyedLimiterCore` holds one state per key (str, bytes or int) in a bounded
:class:`~ratefuse.core._keytable_py.KeyTable` and decides costs per key against
the same limits, all or nothing. The compiled twin has the same names,
signatures, errors and decisions, evictions included.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from ratefuse.core._compound_py import Program
from ratefuse.core._decision_py import Decision, ns_to_seconds
from ratefuse.core._keys_py import PROCESS_SECRET, fingerprint, split_secret
from ratefuse.core._keytable_py import KeyTable
from ratefuse.core.args import check_cost, resolve_now
from ratefuse.core.counters import LimiterCounters
from ratefuse.core.respec import keeps_state
from ratefuse.core.spec import LimitSpec
from ratefuse.core.verdict import Verdict
from ratefuse.engine._subject_py import AsyncSleep, Sleep, reservation
from ratefuse.engine.waiting import (
    Reservation,
    acquire_timeout,
    wait,
    wait_async,
    wait_bound_ns,
)

Key = str | bytes | int
DEFAULT_MAX_KEYS = 1_000_000
MAX_MAX_KEYS = 1 << 32


def check_max_keys(max_keys: int) -> int:
    """`check_max_keys` returns ``max_keys`` if it is an int in [1, 2**32]."""
    if isinstance(max_keys, bool) or not isinstance(max_keys, int):
        raise ValueError(f"max_keys must be an int, got {max_keys!r}")
    if not 1 <= max_keys <= MAX_MAX_KEYS:
        raise ValueError(f"max_keys must be in [1, 2**32], got {max_keys!r}")
    return max_keys


class KeyedLimiterCore:
    """`KeyedLimiterCore` decides costs per key against ``specs``.

    ``max_keys`` bounds the live states (see KeyTable for what happens when
    full); ``clock`` returns integer nanoseconds, None meaning the monotonic
    clock; ``secret`` (16 bytes) keys the fingerprints, None meaning the
    per-process secret. ``max_wait``, ``sleep`` and ``async_sleep`` are as
    for LimiterCore. Thread-safe: each decision is atomic.
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
        self._program = Program(specs)
        self._specs = self._program.specs
        self._k0, self._k1 = split_secret(PROCESS_SECRET if secret is None else secret)
        self._table = KeyTable(
            self._program.words, check_max_keys(max_keys), self._program.idle_at
        )
        self._clock = clock
        self._max_wait_ns = wait_bound_ns(None, max_wait)
        self._max_wait = max_wait
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()
        self._allowed = 0
        self._denied = 0
        # Bumped when reconfigure starts the table anew: a reservation taken
        # before then has nothing left to refund.
        self._layout = 0

    @property
    def clock(self) -> Callable[[], int] | None:
        """`clock` is the injected clock, or None for the monotonic clock."""
        return self._clock

    @property
    def max_keys(self) -> int:
        """`max_keys` is the most states the table holds."""
        return self._table.max_keys

    def try_acquire(self, key: Key, cost: int = 1, now: int | None = None) -> bool:
        """`try_acquire` consumes ``cost`` units of ``key``'s quota if every
        limit admits them and reports whether it did."""
        fingerprint_ = fingerprint(self._k0, self._k1, key)
        units = check_cost(cost)
        return self._decide(fingerprint_, units, resolve_now(self._clock, now))[
            0
        ].allowed

    def decide(self, key: Key, cost: int = 1, now: int | None = None) -> Decision:
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        fingerprint_ = fingerprint(self._k0, self._k1, key)
        units = check_cost(cost)
        verdict, spec = self._decide(fingerprint_, units, resolve_now(self._clock, now))
        return Decision(
            verdict.allowed,
            verdict.remaining,
            ns_to_seconds(verdict.retry_after_ns),
            ns_to_seconds(verdict.reset_after_ns),
            spec.capacity,
        )

    def reset(self, key: Key) -> None:
        """`reset` forgets ``key``: its next decision is as if new."""
        fingerprint_ = fingerprint(self._k0, self._k1, key)
        with self._lock:
            slot = self._table.find(fingerprint_)
            if slot >= 0:
                self._table.remove(slot)

    def reserve(
        self,
        key: Key,
        cost: int = 1,
        max_wait: float | None = None,
        now: int | None = None,
    ) -> Reservation:
        """`reserve` sets ``cost`` units of ``key``'s quota aside if they can
        be used within ``max_wait`` seconds (see LimiterCore.reserve)."""
        fingerprint_ = fingerprint(self._k0, self._k1, key)
        units = check_cost(cost)
        bound = wait_bound_ns(max_wait, self._max_wait, "max_wait")
        return self._reserve(fingerprint_, units, bound, resolve_now(self._clock, now))

    def _first(self, key: Key, cost: int, timeout: float | None) -> Reservation:
        fingerprint_ = fingerprint(self._k0, self._k1, key)
        units = check_cost(cost)
        bound = wait_bound_ns(timeout, self._max_wait)
        return self._reserve(fingerprint_, units, bound, resolve_now(self._clock, None))

    def _reserve(
        self, fingerprint_: int, units: int, bound: int, at: int
    ) -> Reservation:
        with self._lock:
            program, table = self._program, self._table
            slot = table.find(fingerprint_)
            if slot >= 0:
                verdict, spec, stamps = program.reserve(
                    table.states, slot * program.words, at, units, bound
                )
            else:
                scratch = [0] * program.words
                verdict, spec, stamps = program.reserve(scratch, 0, at, units, bound)
                if program.idle_at(scratch, 0) > at:
                    table.insert(fingerprint_, scratch, at)
            self._count(verdict.allowed)
            layout = self._layout
        return reservation(
            verdict, spec, partial(self._refund, fingerprint_, units, stamps, layout)
        )

    def acquire(self, key: Key, cost: int = 1, timeout: float | None = None) -> None:
        """`acquire` takes ``cost`` units of ``key``'s quota, sleeping until
        they are admitted (see LimiterCore.acquire)."""
        first = self._first(key, cost, timeout)
        if first.ok and first.delay == 0:
            return
        again = partial(self.reserve, key, cost)
        limit = acquire_timeout(timeout, self._max_wait)
        wait(first, again, self._clock_ns, limit, self._sleep)

    def acquire_async(
        self, key: Key, cost: int = 1, timeout: float | None = None
    ) -> Awaitable[None]:
        """`acquire_async` is `acquire` for asyncio: ``await`` it."""
        first = self._first(key, cost, timeout)
        again = partial(self.reserve, key, cost)
        limit = acquire_timeout(timeout, self._max_wait)
        return wait_async(first, again, self._clock_ns, limit, self._async_sleep)

    def _clock_ns(self) -> int:
        return resolve_now(self._clock, None)

    def _refund(
        self,
        fingerprint_: int,
        cost: int,
        stamps: tuple[int, ...],
        layout: int,
        now: int | None,
    ) -> None:
        at = resolve_now(self._clock, now)
        with self._lock:
            if layout != self._layout:
                return  # the table was started anew since: nothing to refund
            slot = self._table.find(fingerprint_)
            if slot >= 0:  # an evicted or dropped key has nothing to refund
                self._program.refund(
                    self._table.states, slot * self._program.words, at, cost, stamps
                )

    def stats(self) -> dict[str, int]:
        """`stats` reports ``live_keys``, ``max_keys``, ``capacity`` (slots),
        ``evictions`` (states removed before they were idle: the only
        over-admission), ``expired`` (idle states dropped, harmlessly) and
        ``memory_bytes`` (the table's state, as the compiled engine counts
        it: 8 bytes per slot word)."""
        with self._lock:
            table = self._table  # a reconfigure may swap it: read it locked
            return {
                "live_keys": table.live,
                "max_keys": table.max_keys,
                "capacity": table.capacity,
                "evictions": table.evictions,
                "expired": table.expired,
                "memory_bytes": table.capacity * (1 + table.words) * 8,
            }

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
        numpy = _numpy()
        key_list = keys.tolist() if isinstance(keys, numpy.ndarray) else list(keys)
        cost_list = _costs(numpy, costs, len(key_list))
        allowed = numpy.zeros(len(key_list), dtype=numpy.bool_)
        waits = numpy.zeros(len(key_list), dtype=numpy.float64)
        fingerprints = [fingerprint(self._k0, self._k1, key) for key in key_list]
        at = resolve_now(self._clock, now)
        # One turn for the whole batch, as the compiled engine takes: a
        # reconfigure lands before or after it, never inside.
        with self._lock:
            for index, (fingerprint_, cost) in enumerate(
                zip(fingerprints, cost_list, strict=True)
            ):
                verdict = self._decide_locked(fingerprint_, cost, at)[0]
                allowed[index] = verdict.allowed
                waits[index] = ns_to_seconds(verdict.retry_after_ns)
        return (allowed, waits) if retry_after else allowed

    def _decide(
        self, fingerprint_: int, cost: int, now: int
    ) -> tuple[Verdict, LimitSpec]:
        with self._lock:
            return self._decide_locked(fingerprint_, cost, now)

    def _decide_locked(
        self, fingerprint_: int, cost: int, now: int
    ) -> tuple[Verdict, LimitSpec]:
        # Precondition: the lock is held.
        program, table = self._program, self._table
        slot = table.find(fingerprint_)
        if slot >= 0:
            decided = program.decide(table.states, slot * program.words, now, cost)
        else:
            scratch = [0] * program.words
            decided = program.decide(scratch, 0, now, cost)
            if program.idle_at(scratch, 0) > now:
                table.insert(fingerprint_, scratch, now)
        self._count(decided[0].allowed)
        return decided

    def _count(self, allowed: bool) -> None:
        # Precondition: the lock is held.
        if allowed:
            self._allowed += 1
        else:
            self._denied += 1

    def counters(self) -> LimiterCounters:
        """`counters` snapshots the verdicts counted since construction, one
        per key of decide_many (see :class:`ratefuse.core.counters.LimiterCounters`)."""
        with self._lock:
            return LimiterCounters(self._allowed, self._denied)

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
        program = Program(specs)
        with self._lock:
            if keeps_state(self._program.specs, program.specs):
                self._table.idle_at = program.idle_at
            else:
                old = self._table
                self._table = KeyTable(program.words, old.max_keys, program.idle_at)
                self._table.evictions = old.evictions
                self._table.expired = old.expired
                self._layout += 1
            self._program = program
            self._specs = program.specs


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - exercised without numpy
        raise ImportError(
            "decide_many needs numpy: pip install 'ratefuse[numpy]'"
        ) from exc
    return numpy


def _costs(numpy: Any, costs: Any, count: int) -> list[int]:
    """`_costs` expands ``costs`` to one validated cost per key."""
    if costs is None:
        return [1] * count
    if isinstance(costs, numpy.ndarray) and costs.ndim == 0:
        costs = costs.item()  # a 0-d array is one cost
    if isinstance(costs, int) or (
        isinstance(costs, numpy.integer) and numpy.ndim(costs) == 0
    ):
        return [check_cost(costs)] * count
    listed = costs.tolist() if isinstance(costs, numpy.ndarray) else list(costs)
    if len(listed) != count:
        shape = (
            f"shape {costs.shape}" if isinstance(costs, numpy.ndarray) else len(listed)
        )
        raise ValueError(
            f"costs must have one cost per key: got {shape} for {count} keys"
        )
    return [check_cost(cost) for cost in listed]
