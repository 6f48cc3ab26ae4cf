"""`LimitSpec`: one limit, lowered to the integers the cores decide with.

Both engines (compiled and reference) take a tuple of LimitSpec; the public
config objects (:mod:`ratefuse.rates`) build them and validate every field,
and the cores check the specs they are given (`ratefuse.core.spec_check`),
so a LimitSpec that a core decides with is known to be valid.
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
# The longest tolerance (interval_ns * capacity) of the meters: the cores'
# int64 arithmetic must hold now + 2 * tau + the longest wait, and with
# now <= 2**62, tau <= 2**60 and waits <= 2**60 it stays below 2**63.
MAX_TOLERANCE_NS: Final = 1 << 60


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
