"""`LimitSpec`: one limit, lowered to the integers the cores decide with.

Both engines (compiled and reference) take a tuple of LimitSpec; the public
config objects (:mod:`ratefuse.rates`) build them and validate every field,
so a LimitSpec reaching a core is known to be valid.
"""

from __future__ import annotations

from typing import Final, NamedTuple

# retry_after_ns of a cost that can never be admitted (cost > capacity).
NEVER: Final = -1

# Bounds that keep every core's integer arithmetic inside int64 (products
# that could exceed it are taken in 128 bits in the compiled cores).
MAX_NOW_NS: Final = 1 << 62
MAX_COST: Final = (1 << 63) - 1
MAX_CAPACITY: Final = 1 << 40
MAX_PERIOD_NS: Final = 1 << 58


class LimitSpec(NamedTuple):
    """`LimitSpec` is one limit as the cores see it.

    ``capacity`` is the most units admitted at once (burst for gcra and
    leaky_bucket, limit for the window algorithms); ``period_ns`` the period;
    ``interval_ns`` the emission interval (period / limit, rounded up to the
    nanosecond so the limiter never admits more than the rate; 0 for the
    window algorithms).
    """

    algorithm: str  # the canonical name of its record in core.algorithms
    capacity: int
    period_ns: int
    interval_ns: int
