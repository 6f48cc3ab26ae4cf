"""`CompoundLimit`: the limits of one subject, decided together over one state.

A subject's state is a run of integer words (``words`` of them) holding each
limit's state back to back. `CompoundLimit.decide` admits a cost all-or-nothing:
every limit is asked without consuming, and only if all admit is the cost
consumed from each. Shared by the single-subject engine and the key table;
twin of ``ext/ratefuse/core/_compound_c.pyx``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

from ratefuse.core.algorithms import (
    _fixed_window_py,
    _gcra_py,
    _leaky_bucket_py,
    _sliding_log_py,
    _sliding_window_py,
)
from ratefuse.core.spec import NEVER, LimitSpec, state_words
from ratefuse.core.step_result import StepResult

Step = Callable[[LimitSpec, list[int], int, int, int, bool], StepResult]
IdleAt = Callable[[LimitSpec, list[int], int], int]
Reserve = Callable[[LimitSpec, list[int], int, int, int, int, bool], StepResult]
Refund = Callable[[LimitSpec, list[int], int, int, int, int], None]


class Algorithm(NamedTuple):
    """`Algorithm` is one algorithm's core functions."""

    step: Step
    idle_at: IdleAt
    reserve: Reserve
    refund: Refund


def _algorithm(module: Any, name: str) -> Algorithm:
    return Algorithm(*(getattr(module, f"{name}_{verb}") for verb in Algorithm._fields))


ALGORITHMS: Final[dict[str, Algorithm]] = {
    "gcra": _algorithm(_gcra_py, "gcra"),
    "leaky_bucket": _algorithm(_leaky_bucket_py, "leaky_bucket"),
    "fixed_window": _algorithm(_fixed_window_py, "fixed_window"),
    "sliding_window": _algorithm(_sliding_window_py, "sliding_window"),
    "sliding_log": _algorithm(_sliding_log_py, "sliding_log"),
}


class CompoundLimit:
    """`CompoundLimit` decides costs against ``specs`` over a run of state words."""

    def __init__(self, specs: Sequence[LimitSpec]) -> None:
        if not specs:
            raise ValueError("a limiter needs at least one limit, got none")
        self.specs = tuple(specs)
        self._algorithms = [ALGORITHMS[spec.algorithm] for spec in self.specs]
        self._steps = [algorithm.step for algorithm in self._algorithms]
        self._idle = [algorithm.idle_at for algorithm in self._algorithms]
        self._bases: list[int] = []
        words = 0
        for spec in self.specs:
            self._bases.append(words)
            words += state_words(spec)
        self.words = words

    def decide(
        self, state: list[int], offset: int, now: int, cost: int
    ) -> tuple[StepResult, LimitSpec]:
        """`decide` admits ``cost`` at ``now`` all-or-nothing; returns the
        merged verdict and the binding spec (see `combine`)."""
        if len(self.specs) == 1:
            return self._steps[0](self.specs[0], state, offset, now, cost, True), (
                self.specs[0]
            )
        verdicts = self._step_all(state, offset, now, cost, commit=False)
        if all(verdict.allowed for verdict in verdicts):
            verdicts = self._step_all(state, offset, now, cost, commit=True)
        return combine(verdicts, self.specs)

    def reserve(
        self, state: list[int], offset: int, now: int, cost: int, max_wait: int
    ) -> tuple[StepResult, LimitSpec, tuple[int, ...]]:
        """`reserve` reserves ``cost`` all-or-nothing, each limit's slot at
        most ``max_wait`` ns away; returns the merged verdict (its
        ``retry_after_ns`` is the delay until every slot has come), the
        binding spec, and the stamps a refund needs."""
        verdicts = self._reserve_all(state, offset, now, cost, max_wait, commit=False)
        if all(verdict.allowed for verdict in verdicts):
            verdicts = self._reserve_all(
                state, offset, now, cost, max_wait, commit=True
            )
        verdict, spec = combine(verdicts, self.specs)
        return verdict, spec, tuple(verdict.stamp for verdict in verdicts)

    def refund(
        self, state: list[int], offset: int, now: int, cost: int, stamps: Sequence[int]
    ) -> None:
        """`refund` gives back what is left of a reservation (see `reserve`)."""
        for algorithm, spec, base, stamp in zip(
            self._algorithms, self.specs, self._bases, stamps, strict=True
        ):
            algorithm.refund(spec, state, offset + base, now, cost, stamp)

    def _reserve_all(
        self,
        state: list[int],
        offset: int,
        now: int,
        cost: int,
        max_wait: int,
        commit: bool,
    ) -> list[StepResult]:
        return [
            algorithm.reserve(spec, state, offset + base, now, cost, max_wait, commit)
            for algorithm, spec, base in zip(
                self._algorithms, self.specs, self._bases, strict=True
            )
        ]

    def idle_at(self, state: list[int], offset: int) -> int:
        """`idle_at` is the first time at which every limit's state is new."""
        return max(
            idle(spec, state, offset + base)
            for idle, spec, base in zip(
                self._idle, self.specs, self._bases, strict=True
            )
        )

    def _step_all(
        self, state: list[int], offset: int, now: int, cost: int, commit: bool
    ) -> list[StepResult]:
        return [
            step(spec, state, offset + base, now, cost, commit)
            for step, spec, base in zip(
                self._steps, self.specs, self._bases, strict=True
            )
        ]


def combine(
    verdicts: Sequence[StepResult], specs: Sequence[LimitSpec]
) -> tuple[StepResult, LimitSpec]:
    """`combine` merges the verdicts of a compound limit into one.

    allowed: all allowed; remaining: the least; retry_after: the longest
    (NEVER wins); reset_after: the longest. The spec reported is the binding
    one: the denial with the longest retry_after, else the allowance with the
    least remaining (the first on ties).
    """
    allowed = all(verdict.allowed for verdict in verdicts)
    binding = 0
    for index, verdict in enumerate(verdicts):
        best = verdicts[binding]
        if allowed:
            if verdict.remaining < best.remaining:
                binding = index
        elif not verdict.allowed and (
            best.allowed or _later(verdict.retry_after_ns, best.retry_after_ns)
        ):
            binding = index
    retry = 0
    for verdict in verdicts:
        if _later(verdict.retry_after_ns, retry):
            retry = verdict.retry_after_ns
    merged = StepResult(
        allowed,
        min(verdict.remaining for verdict in verdicts),
        retry,
        max(verdict.reset_after_ns for verdict in verdicts),
    )
    return merged, specs[binding]


def _later(retry: int, than: int) -> bool:
    """`_later` orders retry delays with NEVER as the latest."""
    if than == NEVER:
        return False
    return retry == NEVER or retry > than
