"""When a limiter's state survives a change of its limits.

`reconfigure` on the cores swaps the specs in one atomic step. The state
words are kept when :func:`keeps_state` says they still mean the same thing
under the new specs; otherwise the state starts new (as after `reset`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ratefuse.core.spec import LimitSpec, state_words

# Algorithms whose state is an absolute time (the theoretical arrival time),
# meaningful under any rate. The window algorithms store a window index,
# which means something else once the period changes.
_TIME_STATE = frozenset({"gcra", "leaky_bucket"})


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
        if state_words(before) != state_words(after):
            return False
        if after.algorithm not in _TIME_STATE and before.period_ns != after.period_ns:
            return False
    return True
