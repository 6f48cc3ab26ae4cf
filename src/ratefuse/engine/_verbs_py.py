"""The verbs, written once, reference implementation (twin of ``_verbs_c``).

`Verbs` holds what every limiter core shares (the clock, the wait bounds,
the sleeps, the outcome counts) and writes the verbs once over a state
locator: ``where`` names the state words of a key (a key's fingerprint in a
keyed table or a shared-memory table; `SUBJECT` for a core of one subject).
A core implements four steps over its own store and lock, `_step`,
`_reserve` and `_forget`; `SubjectVerbs` and
`KeyedVerbs` are the public signatures, without and with a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from ratefuse.core._decision_py import Decision, make_decision, ns_to_seconds
from ratefuse.core.args import check_cost, resolve_now
from ratefuse.core.counters import LimiterCounters
from ratefuse.core.keys import Key
from ratefuse.core.reservation import Refund, Reservation
from ratefuse.core.step_result import StepResult
from ratefuse.engine.waiting import (
    Again,
    AsyncSleep,
    Sleep,
    acquire_timeout,
    acquire_when_awaited,
    wait,
    wait_bound_ns,
)

__all__ = ["SUBJECT", "KeyedVerbs", "SubjectVerbs", "Verbs"]

# The location of a one-subject core's state (it has only one).
SUBJECT = 0


class Verbs:
    """`Verbs` is the base of every limiter core; see the module.

    ``clock`` returns integer nanoseconds; None means the monotonic clock.
    ``max_wait`` (seconds, None: unbounded) bounds every acquire's wait;
    ``sleep`` and ``async_sleep`` replace ``time.sleep`` and
    ``asyncio.sleep`` (tests pair them with a manual clock).
    """

    def __init__(
        self,
        clock: Callable[[], int] | None,
        *,
        max_wait: float | None,
        sleep: Sleep | None,
        async_sleep: AsyncSleep | None,
    ) -> None:
        self._clock = clock
        self._max_wait_ns = wait_bound_ns(None, max_wait)
        self._max_wait = max_wait
        self._sleep = sleep
        self._async_sleep = async_sleep
        # Decisions counted by outcome (index 1: allowed, 0: denied).
        self._outcome_counts = [0, 0]

    @property
    def clock(self) -> Callable[[], int] | None:
        """`clock` is the injected clock, or None for the monotonic clock."""
        return self._clock

    def counters(self) -> LimiterCounters:
        """`counters` snapshots the decisions counted since construction (see
        :class:`ratefuse.core.counters.LimiterCounters`)."""
        denied, allowed = self._outcome_counts
        return LimiterCounters(allowed, denied)

    # ---- the steps a core implements over its store ----

    def _step(self, where: int, cost: int, now: int) -> tuple[StepResult, int]:
        """`_step` decides ``cost`` for the state at ``where`` and counts the
        outcome, atomically; returns the verdict and the capacity of the
        limit that applied."""
        raise NotImplementedError

    def _reserve(
        self, where: int, cost: int, bound: int, now: int
    ) -> tuple[StepResult, int, Refund]:
        """`_reserve` is `_step` for a reservation of at most ``bound`` ns
        ahead; also returns what gives the units back."""
        raise NotImplementedError

    def _forget(self, where: int) -> None:
        """`_forget` makes the state at ``where`` as if new."""
        raise NotImplementedError

    def _count(self, allowed: bool) -> None:
        # Precondition: the core's lock is held.
        self._outcome_counts[allowed] += 1

    # ---- the verbs, over a location ----

    def _now(self, now: int | None) -> int:
        return resolve_now(self._clock, now)

    def _clock_ns(self) -> int:
        return resolve_now(self._clock, None)

    def _decision(self, where: int, cost: int, now: int | None) -> Decision:
        return make_decision(*self._step(where, check_cost(cost), self._now(now)))

    def _reservation(
        self, where: int, cost: int, max_wait: float | None, now: int | None
    ) -> Reservation:
        units = check_cost(cost)
        bound = wait_bound_ns(max_wait, self._max_wait, "max_wait")
        return self._reserved(where, units, bound, self._now(now))

    def _reserved(self, where: int, units: int, bound: int, at: int) -> Reservation:
        return make_reservation(*self._reserve(where, units, bound, at))

    def _first(self, where: int, cost: int, timeout: float | None) -> Reservation:
        bound = wait_bound_ns(timeout, self._max_wait)
        return self._reserved(where, check_cost(cost), bound, self._clock_ns())

    def _acquire(
        self, where: int, again: Again, cost: int, timeout: float | None
    ) -> None:
        first = self._first(where, cost, timeout)
        if first.ok and first.delay == 0:
            return
        limit = acquire_timeout(timeout, self._max_wait)
        wait(first, again, self._clock_ns, limit, self._sleep)

    def _acquire_async(
        self, where: int, again: Again, cost: int, timeout: float | None
    ) -> Awaitable[None]:
        # The arguments are checked now; the units are taken when awaited.
        units = check_cost(cost)
        bound = wait_bound_ns(timeout, self._max_wait)
        limit = acquire_timeout(timeout, self._max_wait)

        def first() -> Reservation:
            return self._reserved(where, units, bound, self._clock_ns())

        return acquire_when_awaited(
            first, again, self._clock_ns, limit, self._async_sleep
        )


class SubjectVerbs(Verbs):
    """`SubjectVerbs` are the verbs of a core of one subject (no key), whose
    state is at ``_subject``."""

    _subject = SUBJECT

    def try_acquire(self, cost: int = 1, now: int | None = None) -> bool:
        """`try_acquire` consumes ``cost`` units if every limit admits them and
        reports whether it did. Cost 0 asks without consuming."""
        return self._step(self._subject, check_cost(cost), self._now(now))[0].allowed

    def decide(self, cost: int = 1, now: int | None = None) -> Decision:
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        return self._decision(self._subject, cost, now)

    def reserve(
        self, cost: int = 1, max_wait: float | None = None, now: int | None = None
    ) -> Reservation:
        """`reserve` sets ``cost`` units aside if they can be used within
        ``max_wait`` seconds (None: the limiter's max_wait, else no bound).
        gcra and leaky_bucket schedule ahead; the window algorithms reserve
        only what they admit now."""
        return self._reservation(self._subject, cost, max_wait, now)

    def acquire(self, cost: int = 1, timeout: float | None = None) -> None:
        """`acquire` takes ``cost`` units, sleeping until they are admitted
        (never busy-waiting); raises RateLimitExceeded at once if that would
        take longer than ``timeout`` seconds or can never happen."""
        self._acquire(self._subject, partial(self.reserve, cost), cost, timeout)

    def acquire_async(
        self, cost: int = 1, timeout: float | None = None
    ) -> Awaitable[None]:
        """`acquire_async` is `acquire` for asyncio: ``await`` it."""
        return self._acquire_async(
            self._subject, partial(self.reserve, cost), cost, timeout
        )

    def reset(self) -> None:
        """`reset` forgets everything admitted: the state is as if new."""
        self._forget(self._subject)


class KeyedVerbs(Verbs):
    """`KeyedVerbs` are the verbs of a core of one state per key; a core
    locates a key's state with `_locate`."""

    def _locate(self, key: Key) -> int:
        """`_locate` is the location of ``key``'s state: its fingerprint."""
        raise NotImplementedError

    def try_acquire(self, key: Key, cost: int = 1, now: int | None = None) -> bool:
        """`try_acquire` consumes ``cost`` units of ``key``'s quota if every
        limit admits them and reports whether it did."""
        where = self._locate(key)
        return self._step(where, check_cost(cost), self._now(now))[0].allowed

    def decide(self, key: Key, cost: int = 1, now: int | None = None) -> Decision:
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        return self._decision(self._locate(key), cost, now)

    def reserve(
        self,
        key: Key,
        cost: int = 1,
        max_wait: float | None = None,
        now: int | None = None,
    ) -> Reservation:
        """`reserve` sets ``cost`` units of ``key``'s quota aside if they can
        be used within ``max_wait`` seconds (see SubjectVerbs.reserve)."""
        return self._reservation(self._locate(key), cost, max_wait, now)

    def acquire(self, key: Key, cost: int = 1, timeout: float | None = None) -> None:
        """`acquire` takes ``cost`` units of ``key``'s quota, sleeping until
        they are admitted (see SubjectVerbs.acquire)."""
        again = partial(self.reserve, key, cost)
        self._acquire(self._locate(key), again, cost, timeout)

    def acquire_async(
        self, key: Key, cost: int = 1, timeout: float | None = None
    ) -> Awaitable[None]:
        """`acquire_async` is `acquire` for asyncio: ``await`` it."""
        again = partial(self.reserve, key, cost)
        return self._acquire_async(self._locate(key), again, cost, timeout)

    def reset(self, key: Key) -> None:
        """`reset` forgets ``key``: its next decision is as if new."""
        self._forget(self._locate(key))


def make_reservation(verdict: StepResult, limit: int, refund: Refund) -> Reservation:
    """`make_reservation` wraps a reserve verdict; ``refund`` gives the units
    back if they were reserved. A held reservation's decision reports
    retry_after 0.0: the wait is its ``delay``."""
    delay = ns_to_seconds(verdict.retry_after_ns)
    decision = Decision(
        verdict.allowed,
        verdict.remaining,
        0.0 if verdict.allowed else delay,
        ns_to_seconds(verdict.reset_after_ns),
        limit,
    )
    return Reservation(verdict.allowed, delay, decision, refund)
