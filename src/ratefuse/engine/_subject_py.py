"""The limiter engine, reference implementation: the spec of ``_subject_c``.

`LimiterCore` holds the state of one subject under one or more limits and
decides costs against all of them at once. It is the base class of the public
:class:`ratefuse.Limiter`; the compiled twin has the same names, signatures,
errors and decisions. The verbs are :class:`~._verbs_py.SubjectVerbs`'; this
module holds the state and its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from ratefuse.core._compound_py import CompoundLimit
from ratefuse.core._decision_py import Decision
from ratefuse.core.reservation import Refund
from ratefuse.core.respec import keeps_state
from ratefuse.core.spec import LimitSpec
from ratefuse.core.step_result import StepResult
from ratefuse.engine._verbs_py import SubjectVerbs
from ratefuse.engine.turn import NESTED, Turn
from ratefuse.engine.waiting import AsyncSleep, Sleep

__all__ = ["Decision", "LimiterCore"]


class LimiterCore(SubjectVerbs):
    """`LimiterCore` decides costs for one subject against ``specs``, all or
    nothing.

    ``clock``, ``max_wait``, ``sleep`` and ``async_sleep``: see
    :class:`~._verbs_py.Verbs`. Every method taking ``now`` uses it instead
    of the clock when given. Thread-safe: each decision is atomic. A
    decision made by a finalizer or signal handler that interrupted a
    decision of this limiter on its own thread is denied with retry_after
    inf, consuming nothing (see :mod:`ratefuse.engine.turn`); a refund,
    reset or reconfigure made there happens when the interrupted one ends.
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
        super().__init__(clock, max_wait=max_wait, sleep=sleep, async_sleep=async_sleep)
        self._program = CompoundLimit(specs)
        self._specs = self._program.specs
        self._state = [0] * self._program.words
        self._turn = Turn()
        # The reset epoch: bumped when reconfigure starts the state anew, so
        # that a reservation taken before then refunds nothing.
        self._epoch = 0

    def _step(self, where: int, cost: int, now: int) -> tuple[StepResult, int]:
        verdict, spec = self._decide(cost, now)
        return verdict, spec.capacity

    def _decide(self, cost: int, now: int) -> tuple[StepResult, LimitSpec]:
        """`_decide` decides ``cost`` (checked) at ``now`` and counts it;
        returns the verdict and the limit that applied."""
        if not self._turn.enter():
            return NESTED, self._specs[0]
        try:
            decided = self._program.decide(self._state, 0, now, cost)
            self._count(decided[0].allowed)
        finally:
            self._turn.exit()
        return decided

    def _reserve(
        self, where: int, cost: int, bound: int, now: int
    ) -> tuple[StepResult, int, Refund]:
        if not self._turn.enter():
            return NESTED, self._specs[0].capacity, _nothing_to_refund
        try:
            verdict, spec, stamps = self._program.reserve(
                self._state, 0, now, cost, bound
            )
            self._count(verdict.allowed)
            epoch = self._epoch
        finally:
            self._turn.exit()
        return verdict, spec.capacity, partial(self._refund, cost, stamps, epoch)

    def _refund(
        self, cost: int, stamps: tuple[int, ...], epoch: int, now: int | None
    ) -> None:
        at = self._now(now)

        def refund() -> None:
            if epoch == self._epoch:
                self._program.refund(self._state, 0, at, cost, stamps)

        self._turn.run_or_defer(refund)

    def _forget(self, where: int) -> None:
        def forget() -> None:
            self._state = [0] * len(self._state)

        self._turn.run_or_defer(forget)

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
        program = CompoundLimit(specs)

        def swap() -> None:
            if not keeps_state(self._program.specs, program.specs):
                self._state = [0] * program.words
                self._epoch += 1
            self._program = program
            self._specs = program.specs

        self._turn.run_or_defer(swap)


def _nothing_to_refund(now: int | None) -> None:
    """`_nothing_to_refund` is the refund of a reservation that took nothing."""
