"""`SLIDING_LOG`: the facts of the sliding log (exact; memory grows with
the limit).

Its twins: _sliding_log_py.py here,
ext/ratefuse/core/algorithms/_sliding_log_c.pyx and redis/lua/sliding_log.lua.
"""

from __future__ import annotations

from typing import Final

from ratefuse.core.algorithm import Algorithm

# The log keeps one entry per admitted call (16 bytes each), so its memory
# grows with the limit; past this, use sliding_window.
SLIDING_LOG_MAX_LIMIT: Final = 100_000

SLIDING_LOG: Final = Algorithm(
    name="sliding_log",
    id=4,
    fixed_words=3,  # head, count, total
    words_per_unit=2,  # the ring of (time, cost) entries
    burst=False,
    time_state=False,
    deny_cache_exact=False,
    max_limit=SLIDING_LOG_MAX_LIMIT,
    script="sliding_log.lua",
    shm_counts=None,
)
