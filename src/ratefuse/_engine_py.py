"""The limiter engine, reference implementation: the spec of ``_engine_c``.

`LimiterCore` holds the state of one subject under one or more limits and
decides costs against all of them at once. It is the base class of the public
:class:`ratefuse.Limiter`; the compiled twin has the same names, signatures,
errors and decisions.
"""

from __future__ import annotations

import math
import operator
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from ._fixed_window_py import fixed_window_step
from ._gcra_py import gcra_step
from ._leaky_bucket_py import leaky_bucket_step
from ._sliding_log_py import sliding_log_step
from ._sliding_window_py import sliding_window_step
from ._spec import MAX_COST, MAX_NOW_NS, NEVER, LimitSpec, state_words
from ._verdict import Verdict

Step = Callable[[LimitSpec, list[int], int, int, int, bool], Verdict]

STEPS: Final[dict[str, Step]] = {
    "gcra": gcra_step,
    "leaky_bucket": leaky_bucket_step,
    "fixed_window": fixed_window_step,
    "sliding_window": sliding_window_step,
    "sliding_log": sliding_log_step,
}


class Decision:
    """`Decision` is the answer to one request for ``cost`` units.

    ``allowed``: the cost was admitted and consumed. ``remaining``: units
    that would be admitted right now after this decision. ``retry_after``:
    seconds until this cost could be admitted (0.0 if allowed, ``inf`` if it
    never can). ``reset_after``: seconds until the state is as if nothing had
    been admitted. ``limit``: the capacity of the limit that applied.
    Immutable; compares equal to a compiled Decision with the same fields.
    """

    __slots__ = ("allowed", "limit", "remaining", "reset_after", "retry_after")

    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float
    limit: int

    def __init__(
        self,
        allowed: bool,
        remaining: int,
        retry_after: float,
        reset_after: float,
        limit: int,
    ) -> None:
        for name, value in (
            ("allowed", allowed),
            ("remaining", remaining),
            ("retry_after", retry_after),
            ("reset_after", reset_after),
            ("limit", limit),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Decision is immutable: cannot set {name!r}")

    def astuple(self) -> tuple[bool, int, float, float, int]:
        """`astuple` returns the fields in declaration order."""
        return (
            self.allowed,
            self.remaining,
            self.retry_after,
            self.reset_after,
            self.limit,
        )

    def __eq__(self, other: object) -> bool:
        astuple = getattr(other, "astuple", None)
        if astuple is None or not type(other).__name__ == "Decision":
            return NotImplemented
        return bool(self.astuple() == astuple())

    def __hash__(self) -> int:
        return hash(self.astuple())

    def __reduce__(self) -> tuple[type[Decision], tuple[bool, int, float, float, int]]:
        return (Decision, self.astuple())

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed}, remaining={self.remaining}, "
            f"retry_after={self.retry_after!r}, reset_after={self.reset_after!r}, "
            f"limit={self.limit})"
        )


def ns_to_seconds(ns: int) -> float:
    """`ns_to_seconds` converts like C: round to double, then divide."""
    return math.inf if ns == NEVER else float(ns) / 1e9


def check_cost(cost: int) -> int:
    """`check_cost` returns ``cost`` as an int in [0, 2**63) or raises.

    Floats are refused, not truncated; outside int64 is OverflowError, as
    in the compiled engine.
    """
    cost = operator.index(cost)
    if not -MAX_COST - 1 <= cost <= MAX_COST:
        raise OverflowError(f"cost must be in [0, 2**63), got {cost}")
    if cost < 0:
        raise ValueError(f"cost must be >= 0, got {cost}")
    return cost


def check_now(now: int) -> int:
    """`check_now` returns ``now`` as an int in [0, 2**62] or raises."""
    now = operator.index(now)
    if not 0 <= now <= MAX_NOW_NS:
        raise ValueError(f"now must be in [0, 2**62] nanoseconds, got {now}")
    return now


class LimiterCore:
    """`LimiterCore` decides costs for one subject against ``specs``, all or
    nothing.

    ``clock`` returns integer nanoseconds; None means the monotonic clock.
    Every method taking ``now`` uses it instead of the clock when given.
    Thread-safe: each decision is atomic.
    """

    def __init__(
        self, specs: Sequence[LimitSpec], clock: Callable[[], int] | None = None
    ) -> None:
        if not specs:
            raise ValueError("a limiter needs at least one limit, got none")
        self._specs = tuple(specs)
        self._steps = tuple(STEPS[spec.algorithm] for spec in self._specs)
        self._bases: list[int] = []
        words = 0
        for spec in self._specs:
            self._bases.append(words)
            words += state_words(spec)
        self._state = [0] * words
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def clock(self) -> Callable[[], int] | None:
        """`clock` is the injected clock, or None for the monotonic clock."""
        return self._clock

    def _now(self, now: int | None) -> int:
        if now is not None:
            return check_now(now)
        if self._clock is None:
            return time.monotonic_ns()
        return check_now(self._clock())

    def try_acquire(self, cost: int = 1, now: int | None = None) -> bool:
        """`try_acquire` consumes ``cost`` units if every limit admits them and
        reports whether it did. Cost 0 asks without consuming."""
        return self._decide(check_cost(cost), self._now(now))[0].allowed

    def decide(self, cost: int = 1, now: int | None = None) -> Decision:
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        verdict, spec = self._decide(check_cost(cost), self._now(now))
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

    def _decide(self, cost: int, now: int) -> tuple[Verdict, LimitSpec]:
        with self._lock:
            if len(self._specs) == 1:
                verdict = self._steps[0](
                    self._specs[0], self._state, 0, now, cost, True
                )
                return verdict, self._specs[0]
            verdicts = self._step_all(now, cost, commit=False)
            if all(verdict.allowed for verdict in verdicts):
                verdicts = self._step_all(now, cost, commit=True)
            return combine(verdicts, self._specs)

    def _step_all(self, now: int, cost: int, commit: bool) -> list[Verdict]:
        return [
            step(spec, self._state, base, now, cost, commit)
            for step, spec, base in zip(
                self._steps, self._specs, self._bases, strict=True
            )
        ]


def combine(
    verdicts: Sequence[Verdict], specs: Sequence[LimitSpec]
) -> tuple[Verdict, LimitSpec]:
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
    merged = Verdict(
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
