"""`Decision`, reference implementation (twin of ``_decision_c``)."""

from __future__ import annotations

import math

from ratefuse.core.spec import NEVER
from ratefuse.core.step_result import StepResult


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
        if astuple is None or type(other).__name__ != "Decision":
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


def make_decision(verdict: StepResult, limit: int) -> Decision:
    """`make_decision` is the Decision of ``verdict`` under a limit of
    capacity ``limit``."""
    return Decision(
        verdict.allowed,
        verdict.remaining,
        ns_to_seconds(verdict.retry_after_ns),
        ns_to_seconds(verdict.reset_after_ns),
        limit,
    )
