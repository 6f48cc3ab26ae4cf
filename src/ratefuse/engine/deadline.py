"""Deadlines: a time budget that flows with the call.

``with ratefuse.deadline(2.0):`` (or ``async with``) sets an absolute
deadline in a :class:`contextvars.ContextVar`, so it follows the call
through functions, threads started with ``contextvars.copy_context`` and
asyncio tasks created inside the block (a task copies its creator's
context). Nested deadlines keep the earlier one. Every wait in ratefuse
reads it through `current`: the planner of ``acquire`` and of the Redis
retries (`ratefuse.engine.waiting.plan`), the bulkhead's queue, the breaker's
``timeout=`` and the retry helpers; a wait that cannot fit what is left is
refused at once with :class:`~ratefuse.core.errors.DeadlineExceeded`.

A deadline reads its own clock (``time.monotonic_ns`` unless one is
injected), so its budget means the same to every limiter, whatever clock
each of them was given.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Final

from ratefuse.core.args import shown
from ratefuse.core.errors import DeadlineExceeded

Clock = Callable[[], int]


class Budget:
    """`Budget` is one deadline: ``at_ns`` on ``clock`` (ns). Immutable."""

    __slots__ = ("at_ns", "clock")

    def __init__(self, at_ns: int, clock: Clock) -> None:
        self.at_ns = at_ns
        self.clock = clock

    def remaining(self) -> float:
        """`remaining` is the seconds left before the deadline, >= 0."""
        left = self.at_ns - self.clock()
        return left / 1e9 if left > 0 else 0.0

    def __repr__(self) -> str:
        return f"<Budget {self.remaining():.6g}s left>"


# The budget of the running call; None: no deadline.
BUDGET: Final[ContextVar[Budget | None]] = ContextVar("ratefuse_deadline", default=None)

# `current` is the running call's budget, or None (ContextVar.get, bound:
# this is the whole deadline check on a wait with no deadline set).
current: Final = BUDGET.get


def remaining() -> float | None:
    """`remaining` is the seconds left before the running call's deadline
    (>= 0), or None when no deadline is set."""
    budget = BUDGET.get()
    return None if budget is None else budget.remaining()


def check_seconds(field: str, seconds: object) -> float:
    """`check_seconds` is ``seconds`` as a float after checking that it is
    a finite number >= 0; ValueError naming ``field`` otherwise."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"{field} must be a number of seconds, got {shown(seconds)}")
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ValueError(
            f"{field} must be finite and >= 0 seconds, got {shown(seconds)}"
        )
    return float(seconds)


class Deadline:
    """`Deadline` sets a budget of ``seconds`` for its block (``with`` or
    ``async with``), starting when the block is entered; a deadline already
    set that ends sooner stays in force. ``clock`` (ns, default
    ``time.monotonic_ns``) is what the budget is measured on: inject the
    same manual clock as the limiters' in tests. Re-entrant: each entry
    sets its own budget and its exit restores the previous one."""

    __slots__ = ("_clock", "_seconds", "_tokens")

    def __init__(self, seconds: float, *, clock: Clock | None = None) -> None:
        self._seconds = check_seconds("seconds", seconds)
        self._clock: Clock = time.monotonic_ns if clock is None else clock
        self._tokens: list[Token[Budget | None]] = []

    @property
    def seconds(self) -> float:
        """`seconds` is the budget each entry sets."""
        return self._seconds

    def __enter__(self) -> Budget:
        outer = BUDGET.get()
        budget = Budget(self._clock() + math.ceil(self._seconds * 1e9), self._clock)
        if outer is not None and outer.remaining() <= self._seconds:
            budget = outer  # the earlier deadline wins
        self._tokens.append(BUDGET.set(budget))
        return budget

    def __exit__(self, *exc_info: object) -> None:
        BUDGET.reset(self._tokens.pop())

    async def __aenter__(self) -> Budget:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()

    def __repr__(self) -> str:
        return f"<Deadline {self._seconds:.6g}s>"


def deadline(seconds: float, *, clock: Clock | None = None) -> Deadline:
    """`deadline` is the `Deadline` of ``seconds`` (a context manager, sync
    or async): ``with ratefuse.deadline(2.0): ...``."""
    return Deadline(seconds, clock=clock)


def bounded(wait: float | None) -> tuple[float | None, bool]:
    """`bounded` is (the tighter of ``wait`` and the time left, whether the
    deadline is the tighter); ``wait`` None means no bound."""
    budget = BUDGET.get()
    if budget is None:
        return wait, False
    left = budget.remaining()
    if wait is None or left < wait:
        return left, True
    return wait, False


def refuse_if_spent(what: str) -> Budget | None:
    """`refuse_if_spent` raises DeadlineExceeded naming ``what`` when the
    running call's deadline has no time left (a wait of any length cannot
    fit it); else it returns that deadline (None: none), for a caller that
    bounds its I/O by it next."""
    budget = BUDGET.get()
    if budget is not None and budget.at_ns <= budget.clock():
        raise DeadlineExceeded(what, None, 0.0)
    return budget
