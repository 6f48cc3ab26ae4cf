"""`CompoundLimit`: the limits of one subject, decided together over one state.

A subject's state is a run of integer words (``words`` of them) holding each
limit's state back to back. `CompoundLimit.decide` admits a cost all-or-nothing:
every limit is asked without consuming, and only if all admit is the cost
consumed from each. Shared by the single-subject engine and the key table;
twin of ``ext/ratefuse/core/_compound_c.pyx``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ratefuse.core.algorithms import REGISTRY
from ratefuse.core.spec import NEVER, LimitSpec
from ratefuse.core.spec_check import check_specs
from ratefuse.core.step_result import StepResult


class CompoundLimit:
    """`CompoundLimit` decides costs against ``specs`` over a run of state words.

    Each limit's algorithm is the reference core of its record in
    :data:`ratefuse.core.algorithms.REGISTRY`."""

    def __init__(self, specs: Sequence[LimitSpec]) -> None:
        self.specs = check_specs(specs)
        records = [REGISTRY.by_name(spec.algorithm) for spec in self.specs]
        self._algorithms = [record.reference for record in records]
        self._steps = [algorithm.step for algorithm in self._algorithms]
        self._idle = [algorithm.idle_at for algorithm in self._algorithms]
        self._bases: list[int] = []
        words = 0
        for spec, record in zip(self.specs, records, strict=True):
            self._bases.append(words)
            words += record.state_words(spec.capacity)
        self.words = words

    def decide(
        self, state: list[int], offset: int, now: int, cost: int
    ) -> tuple[StepResult, LimitSpec]:
        """`decide` admits ``cost`` at ``now`` all-or-nothing; returns the
        merged result and the binding spec (see `combine`)."""
        if len(self.specs) == 1:
            return self._steps[0](self.specs[0], state, offset, now, cost, True), (
                self.specs[0]
            )
        results = self._step_all(state, offset, now, cost, commit=False)
        if all(result.allowed for result in results):
            results = self._step_all(state, offset, now, cost, commit=True)
        return combine(results, self.specs)

    def reserve(
        self, state: list[int], offset: int, now: int, cost: int, max_wait: int
    ) -> tuple[StepResult, LimitSpec, tuple[int, ...]]:
        """`reserve` reserves ``cost`` all-or-nothing, each limit's slot at
        most ``max_wait`` ns away; returns the merged result (its
        ``retry_after_ns`` is the delay until every slot has come), the
        binding spec, and the stamps a refund needs."""
        results = self._reserve_all(state, offset, now, cost, max_wait, commit=False)
        if all(result.allowed for result in results):
            results = self._reserve_all(state, offset, now, cost, max_wait, commit=True)
        merged, spec = combine(results, self.specs)
        return merged, spec, tuple(result.stamp for result in results)

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
    results: Sequence[StepResult], specs: Sequence[LimitSpec]
) -> tuple[StepResult, LimitSpec]:
    """`combine` merges the results of a compound limit into one.

    allowed: all allowed; remaining: the least; retry_after: the longest
    (NEVER wins); reset_after: the longest. The spec reported is the binding
    one: the denial with the longest retry_after, else the allowance with the
    least remaining (the first on ties).
    """
    allowed = all(result.allowed for result in results)
    binding = 0
    for index, result in enumerate(results):
        best = results[binding]
        if allowed:
            if result.remaining < best.remaining:
                binding = index
        elif not result.allowed and (
            best.allowed or _later(result.retry_after_ns, best.retry_after_ns)
        ):
            binding = index
    retry = 0
    for result in results:
        if _later(result.retry_after_ns, retry):
            retry = result.retry_after_ns
    merged = StepResult(
        allowed,
        min(result.remaining for result in results),
        retry,
        max(result.reset_after_ns for result in results),
    )
    return merged, specs[binding]


def _later(retry: int, than: int) -> bool:
    """`_later` orders retry delays with NEVER as the latest."""
    if than == NEVER:
        return False
    return retry == NEVER or retry > than
