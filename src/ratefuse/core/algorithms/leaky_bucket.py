"""`LEAKY_BUCKET`: the facts of the leaky bucket as a meter (and a shaper).

Its twins: _leaky_bucket_py.py here and
ext/ratefuse/core/algorithms/_leaky_bucket_c.pyx; no Lua script.
"""

from __future__ import annotations

from typing import Final

from ratefuse.core.algorithm import Algorithm

LEAKY_BUCKET: Final = Algorithm(
    name="leaky_bucket",
    id=1,
    fixed_words=2,  # level, last drain time
    burst=True,
    time_state=True,
    deny_cache_exact=False,
    script=None,
    shm_counts=None,
)
