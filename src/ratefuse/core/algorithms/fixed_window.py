"""`FIXED_WINDOW`: the facts of the fixed window counter.

Its twins: _fixed_window_py.py here,
ext/ratefuse/core/algorithms/_fixed_window_c.pyx and redis/lua/fixed_window.lua.
"""

from __future__ import annotations

from typing import Final

from ratefuse.core.algorithm import Algorithm

FIXED_WINDOW: Final = Algorithm(
    name="fixed_window",
    id=2,
    fixed_words=2,  # window index, count
    burst=False,
    time_state=False,
    deny_cache_exact=True,
    script="fixed_window.lua",
    shm_counts=1,
)
