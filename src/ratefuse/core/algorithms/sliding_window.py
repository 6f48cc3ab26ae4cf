"""`SLIDING_WINDOW`: the facts of the sliding window counter (two weighted
windows).

Its twins: _sliding_window_py.py here,
ext/ratefuse/core/algorithms/_sliding_window_c.pyx and
redis/lua/sliding_window.lua.
"""

from __future__ import annotations

from typing import Final

from ratefuse.core.algorithm import Algorithm

SLIDING_WINDOW: Final = Algorithm(
    name="sliding_window",
    id=3,
    fixed_words=3,  # window index, current count, previous count
    burst=False,
    time_state=False,
    deny_cache_exact=False,
    script="sliding_window.lua",
    shm_counts=2,
)


def retry_offset(period: int, limit: int, cur: int, prev: int, cost: int) -> int:
    """`retry_offset` is the offset from the window start at which ``cost``
    fits (the reference step and the reader of Redis's lean replies both
    use it). Precondition: cost <= limit and it does not fit now."""
    room = limit - cur - cost
    if room >= 0:
        # Later in this window, as prev's weight decays: the least e with
        # prev * (period - e) <= room * period.
        needed = period - room * period // prev
        if needed < period:
            return needed
    # In the next window cur becomes prev and cur restarts at zero.
    if cur == 0:
        return period
    needed = period - (limit - cost) * period // cur
    return period + (needed if needed > 0 else 0)
