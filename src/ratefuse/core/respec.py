"""When a limiter's state survives a change of its limits.

`reconfigure` on the cores swaps the specs in one atomic step. The state
words are kept when :func:`keeps_state` says they still mean the same thing
under the new specs; otherwise the state starts new (as after `reset`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ratefuse.core.algorithms import REGISTRY
from ratefuse.core.spec import LimitSpec


def keeps_state(old: Sequence[LimitSpec], new: Sequence[LimitSpec]) -> bool:
    """`keeps_state` is true when the state of ``old`` carries over to
    ``new``: as many limits, the same algorithm at each position, the same
    state size (sliding_log sizes its log by capacity) and, for the window
    algorithms, the same period."""
    if len(old) != len(new):
        return False
    for before, after in zip(old, new, strict=True):
        if before.algorithm != after.algorithm:
            return False
        if REGISTRY.state_words(before) != REGISTRY.state_words(after):
            return False
        # A window index means something else once the period changes.
        if (
            not REGISTRY.by_name(after.algorithm).time_state
            and before.period_ns != after.period_ns
        ):
            return False
    return True
