"""`GCRA`: the facts of the generic cell rate algorithm (the token bucket).

Its twins: _gcra_py.py here, ext/ratefuse/core/algorithms/_gcra_c.pyx, and
the Lua scripts redis/lua/gcra.lua and gcra_lease.lua.
"""

from __future__ import annotations

from typing import Final

from ratefuse.core.algorithm import Algorithm

GCRA: Final = Algorithm(
    name="gcra",
    id=0,
    aliases=("token_bucket",),
    fixed_words=1,  # tat
    burst=True,
    time_state=True,
    deny_cache_exact=True,
    script="gcra.lua",
    lease_script="gcra_lease.lua",
    shm_counts=0,
)
