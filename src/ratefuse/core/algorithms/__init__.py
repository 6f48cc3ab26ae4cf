"""The rate-limit algorithms and their registry.

Each algorithm is one record of its facts (``<name>.py``, an `Algorithm`)
beside its reference twin (``_<name>_py.py``); the compiled twins are in
ext/ratefuse/core/algorithms/, the Lua scripts in ratefuse/redis/lua/.
"""

from __future__ import annotations

from typing import Final

from ratefuse.core.algorithm import Algorithm, Registry
from ratefuse.core.algorithms.fixed_window import FIXED_WINDOW
from ratefuse.core.algorithms.gcra import GCRA
from ratefuse.core.algorithms.leaky_bucket import LEAKY_BUCKET
from ratefuse.core.algorithms.sliding_log import SLIDING_LOG
from ratefuse.core.algorithms.sliding_window import SLIDING_WINDOW

# Every algorithm, in id order (the compiled table in
# ext/ratefuse/core/_compound_c.pyx follows it): one line each.
REGISTRY: Final = Registry(
    GCRA,
    LEAKY_BUCKET,
    FIXED_WINDOW,
    SLIDING_WINDOW,
    SLIDING_LOG,
)

__all__ = ["REGISTRY", "Algorithm"]
