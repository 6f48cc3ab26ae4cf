"""Validation of per-call arguments (cost, now), shared by the reference
engines and the backends; the compiled engines inline the fast path of the
same checks and call these on every failure, so that both twins raise the
same errors with the same messages (``ext/ratefuse/core/_args.pxd``). Not a
twin: no decision is made here, so there is one Python implementation."""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from typing import Final

from ratefuse.core.spec import MAX_COST, MAX_NOW_NS

# Error messages show at most this many characters of a value: a caller's
# megabyte string or million-digit int must not become the message (an int
# above 4,300 digits cannot even be printed).
SHOWN_CHARACTERS: Final = 80
# Ints this wide or wider are described by their size, never printed.
SHOWN_INT_BITS: Final = 256


def shown(value: object) -> str:
    """`shown` is ``repr(value)`` for an error message, bounded: an int of
    256 bits or more is described by its size, anything else is cut to 80
    characters; a container whose repr cannot be printed (it holds an int
    beyond Python's 4,300-digit limit) is described by its type."""
    if isinstance(value, int) and value.bit_length() >= SHOWN_INT_BITS:
        sign = "a negative" if value < 0 else "an"
        return f"{sign} int of {value.bit_length()} bits"
    try:
        text = repr(value)
    except ValueError:
        return f"a {type(value).__name__} too large to print"
    if len(text) > SHOWN_CHARACTERS:
        return f"{text[: SHOWN_CHARACTERS - 3]}... ({len(text)} characters)"
    return text


def is_exception_types(value: object) -> bool:
    """`is_exception_types` is true if ``value`` is a tuple of exception
    classes (what ``except`` and ``isinstance`` accept), as every option
    naming the errors to act on must be."""
    return isinstance(value, tuple) and all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in value
    )


def check_cost(cost: int) -> int:
    """`check_cost` returns ``cost`` as an int in [0, 2**63) or raises
    ValueError naming it; floats are refused, not truncated."""
    try:
        cost = operator.index(cost)
    except TypeError:
        raise ValueError(f"cost must be an int, got {shown(cost)}") from None
    if cost < 0:
        raise ValueError(f"cost must be >= 0, got {shown(cost)}")
    if cost > MAX_COST:
        raise ValueError(f"cost must be in [0, 2**63), got {shown(cost)}")
    return cost


def check_now(now: int) -> int:
    """`check_now` returns ``now`` as an int in [0, 2**62] or raises."""
    try:
        now = operator.index(now)
    except TypeError:
        raise ValueError(
            f"now must be an int (nanoseconds), got {shown(now)}"
        ) from None
    if not 0 <= now <= MAX_NOW_NS:
        raise ValueError(f"now must be in [0, 2**62] nanoseconds, got {shown(now)}")
    return now


def resolve_now(clock: Callable[[], int] | None, now: int | None) -> int:
    """`resolve_now` is the time of a decision: ``now`` if given, else
    ``clock()`` (None: the monotonic clock), checked as `check_now`."""
    if now is not None:
        return check_now(now)
    if clock is None:
        return time.monotonic_ns()
    return check_now(clock())
