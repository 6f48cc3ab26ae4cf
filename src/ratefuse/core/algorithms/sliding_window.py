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
