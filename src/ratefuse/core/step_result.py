"""`StepResult`: what a core step returns, in integer nanoseconds.

Shared by every reference core; the compiled cores fill a C struct with the
same fields (ext/ratefuse/core/_step.pxd).
"""

from __future__ import annotations

from typing import NamedTuple


class StepResult(NamedTuple):
    """`StepResult` is one limit's answer; ``retry_after_ns`` is NEVER (-1)
    when the cost exceeds the capacity, and 0 when allowed (for a
    reservation: the delay until its slot). ``stamp`` identifies a
    reservation for a refund (0 for a plain step)."""

    allowed: bool
    remaining: int
    retry_after_ns: int
    reset_after_ns: int
    stamp: int = 0
