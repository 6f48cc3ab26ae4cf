"""The limiter engine, reference implementation: the spec of ``_engine_c``.

`LimiterCore` holds the state of one subject under one or more limits and
decides costs against all of them at once. It is the base class of the public
:class:`ratefuse.Limiter`; the compiled twin has the same names, signatures,
errors and decisions.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from ratefuse.core._compound_py import Program, combine
from ratefuse.core._decision_py import Decision, ns_to_seconds
from ratefuse.core.args import check_cost, resolve_now
from ratefuse.core.counters import LimiterCounters
from ratefuse.core.respec import keeps_state
from ratefuse.core.spec import LimitSpec
from ratefuse.core.verdict import Verdict
from ratefuse.engine.waiting import (
    Reservation,
    acquire_timeout,
    wait,
    wait_async,
    wait_bound_ns,
)

Sleep = Callable[[float], object]
AsyncSleep = Callable[[float], Awaitable[object]]

__all__ = ["Decision", "LimiterCore", "combine"]


class LimiterCore:
    """`LimiterCore` decides costs for one subject against ``specs``, all or
    nothing.

    ``clock`` returns integer nanoseconds; None means the monotonic clock.
    Every method taking ``now`` uses it instead of the clock when given.
    ``max_wait`` (seconds, None: unbounded) bounds every acquire's wait;
    ``sleep`` and ``async_sleep`` replace ``time.sleep`` and
    ``asyncio.sleep`` (tests pair them with a manual clock).
    Thread-safe: each decision is atomic.
    """

    def __init__(
        self,
        specs: Sequence[LimitSpec],
        clock: Callable[[], int] | None = None,
        *,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
    ) -> None:
        self._program = Program(specs)
        self._specs = self._program.specs
        self._state = [0] * self._program.words
        self._clock = clock
        self._max_wait_ns = wait_bound_ns(None, max_wait)
        self._max_wait = max_wait
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()
        self._allowed = 0
        self._denied = 0
        # Bumped when reconfigure starts the state anew: a reservation taken
        # before then has nothing left to refund.
        self._layout = 0

    @property
    def clock(self) -> Callable[[], int] | None:
        """`clock` is the injected clock, or None for the monotonic clock."""
        return self._clock

    def try_acquire(self, cost: int = 1, now: int | None = None) -> bool:
        """`try_acquire` consumes ``cost`` units if every limit admits them and
        reports whether it did. Cost 0 asks without consuming."""
        return self._decide(check_cost(cost), resolve_now(self._clock, now))[0].allowed

    def decide(self, cost: int = 1, now: int | None = None) -> Decision:
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        verdict, spec = self._decide(check_cost(cost), resolve_now(self._clock, now))
        return Decision(
            verdict.allowed,
            verdict.remaining,
            ns_to_seconds(verdict.retry_after_ns),
            ns_to_seconds(verdict.reset_after_ns),
            spec.capacity,
        )

    def reset(self) -> None:
        """`reset` forgets everything admitted: the state is as if new."""
        with self._lock:
            self._state = [0] * len(self._state)

    def reserve(
        self, cost: int = 1, max_wait: float | None = None, now: int | None = None
    ) -> Reservation:
        """`reserve` sets ``cost`` units aside if they can be used within
        ``max_wait`` seconds (None: the limiter's max_wait, else no bound).
        gcra and leaky_bucket schedule ahead; the window algorithms reserve
        only what they admit now."""
        units = check_cost(cost)
        bound = wait_bound_ns(max_wait, self._max_wait, "max_wait")
        return self._reserve(units, bound, resolve_now(self._clock, now))

    def _reserve(self, units: int, bound: int, at: int) -> Reservation:
        with self._lock:
            verdict, spec, stamps = self._program.reserve(
                self._state, 0, at, units, bound
            )
            self._count(verdict.allowed)
            layout = self._layout
        return reservation(verdict, spec, partial(self._refund, units, stamps, layout))

    def _first(self, cost: int, timeout: float | None) -> Reservation:
        bound = wait_bound_ns(timeout, self._max_wait)
        return self._reserve(check_cost(cost), bound, resolve_now(self._clock, None))

    def acquire(self, cost: int = 1, timeout: float | None = None) -> None:
        """`acquire` takes ``cost`` units, sleeping until they are admitted
        (never busy-waiting); raises RateLimitExceeded at once if that would
        take longer than ``timeout`` seconds or can never happen."""
        first = self._first(cost, timeout)
        if first.ok and first.delay == 0:
            return
        limit = acquire_timeout(timeout, self._max_wait)
        wait(first, partial(self.reserve, cost), self._clock_ns, limit, self._sleep)

    def acquire_async(
        self, cost: int = 1, timeout: float | None = None
    ) -> Awaitable[None]:
        """`acquire_async` is `acquire` for asyncio: ``await`` it."""
        first = self._first(cost, timeout)
        return wait_async(
            first,
            partial(self.reserve, cost),
            self._clock_ns,
            acquire_timeout(timeout, self._max_wait),
            self._async_sleep,
        )

    def _clock_ns(self) -> int:
        return resolve_now(self._clock, None)

    def _refund(
        self, cost: int, stamps: tuple[int, ...], layout: int, now: int | None
    ) -> None:
        at = resolve_now(self._clock, now)
        with self._lock:
            if layout == self._layout:
                self._program.refund(self._state, 0, at, cost, stamps)

    def _decide(self, cost: int, now: int) -> tuple[Verdict, LimitSpec]:
        with self._lock:
            decided = self._program.decide(self._state, 0, now, cost)
            self._count(decided[0].allowed)
            return decided

    def _count(self, allowed: bool) -> None:
        # Precondition: the lock is held.
        if allowed:
            self._allowed += 1
        else:
            self._denied += 1

    def counters(self) -> LimiterCounters:
        """`counters` snapshots the verdicts counted since construction."""
        with self._lock:
            return LimiterCounters(self._allowed, self._denied)

    def reconfigure(self, specs: Sequence[LimitSpec]) -> None:
        """`reconfigure` replaces the limits in one atomic step: every decision
        runs wholly under the old specs or wholly under the new ones.

        The state is kept when it means the same under the new specs (see
        :func:`ratefuse.core.respec.keeps_state`: same algorithms in the same
        order, and the same period for the window algorithms); otherwise it
        starts new, as after `reset`, and reservations taken before refund
        nothing. Counters are kept. Raises ValueError for bad specs, and then
        nothing changes.
        """
        program = Program(specs)
        with self._lock:
            if not keeps_state(self._program.specs, program.specs):
                self._state = [0] * program.words
                self._layout += 1
            self._program = program
            self._specs = program.specs


def reservation(
    verdict: Verdict, spec: LimitSpec, refund: Callable[[int | None], None]
) -> Reservation:
    """`reservation` wraps a reserve verdict (shared with the keyed engine)."""
    delay = ns_to_seconds(verdict.retry_after_ns)
    decision = Decision(
        verdict.allowed,
        verdict.remaining,
        0.0 if verdict.allowed else delay,
        ns_to_seconds(verdict.reset_after_ns),
        spec.capacity,
    )
    return Reservation(verdict.allowed, delay, decision, refund)
