"""The local fallback: a :class:`ratefuse.keyed.KeyedLimiter` at a share of
the quota.

Used by the ``"local"`` failure policy while Redis cannot answer. Its
limits are the shared ones scaled by ``share`` (at least 1 unit), on the
local monotonic clock. It is keyed by the schema's fixed-length tags, so a
1 MB subject costs 32 bytes here; the table is bounded by ``max_keys`` and
counts its evictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ratefuse.keyed import KeyedLimiter
from ratefuse.rates import Rate


def scale_rate(rate: Rate, share: float) -> Rate:
    """`scale_rate` is ``rate`` at ``share`` of its limit and burst, rounded
    down (at least 1), so the local limiter never admits more than its
    share."""
    limit = max(1, math.floor(rate.limit * share))
    burst = None if rate.burst is None else max(1, math.floor(rate.burst * share))
    return Rate(limit, rate.period, burst)


def local_limiter(
    rates: Sequence[Rate], algorithm: str, share: float, max_keys: int
) -> KeyedLimiter:
    """`local_limiter` is the fallback limiter for ``rates`` at ``share``."""
    return KeyedLimiter(
        [scale_rate(rate, share) for rate in rates], algorithm, max_keys=max_keys
    )
