"""`AdaptiveParams`: the integers an adaptive limit's core decides by.

Both twins of the core (``_limit_c`` and ``_limit_py``) read this record,
so they share its ids and bounds. Ratios are in thousandths (``*_milli``)
and the limit is kept in millionths of a call, so every step is integer
arithmetic on non-negative numbers: the compiled and the reference twin
then make bit-identical decisions (no float rounding, no FMA contraction,
no signed division whose rounding differs between C and Python).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

MILLI: Final = 1000
# The limit is held in millionths of a call, so that a step of one call per
# round trip (1/limit per sample) stays exact up to MAX_LIMIT.
LIMIT_SCALE: Final = 1_000_000
# The largest limit a core holds: its millionths times a ratio in
# thousandths stay far below 2**63.
MAX_LIMIT: Final = 1_000_000
# Round-trip times are clamped to [1 ns, MAX_RTT_NS] (1000 s) before a step,
# so that products of a time and a ratio in thousandths cannot overflow.
MAX_RTT_NS: Final = 1_000_000_000_000
# How much the smoothed round-trip time moves toward a sample: 1/8, as TCP's.
SMOOTHING_DIVISOR: Final = 8


class AlgorithmId(IntEnum):
    """`AlgorithmId` names the step an adaptive core runs on each sample."""

    AIMD = 0
    VEGAS = 1
    GRADIENT2 = 2


@dataclass(frozen=True, slots=True)
class AdaptiveParams:
    """`AdaptiveParams` is one algorithm's configuration in integers.

    ``initial_limit``, ``min_limit`` and ``max_limit`` bound the limit (calls).
    ``backoff_milli``: the limit's factor on a drop (AIMD, Vegas).
    ``timeout_ns`` (0: none): a slower call counts as a drop (AIMD).
    ``alpha`` and ``beta``: the queue estimate (calls) below which Vegas
    grows and above which it shrinks. ``probe_every`` (0: never): Vegas
    forgets its no-load time every this many samples, to notice a slower
    server. ``tolerance_milli``: how much slower than the long-term time a
    sample may be before Gradient2 shrinks; ``smoothing_milli``: how far
    Gradient2 moves toward its new estimate per round trip; ``long_window``:
    round trips in its long-term average; ``queue_size``: the headroom (calls)
    it adds above the estimate.
    """

    algorithm: AlgorithmId
    initial_limit: int
    min_limit: int
    max_limit: int
    backoff_milli: int = 900
    timeout_ns: int = 0
    alpha: int = 3
    beta: int = 6
    probe_every: int = 0
    tolerance_milli: int = 1500
    smoothing_milli: int = 200
    long_window: int = 100
    queue_size: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.max_limit <= MAX_LIMIT:
            raise ValueError(
                f"limits must satisfy 1 <= min_limit <= max_limit <= {MAX_LIMIT}, "
                f"got min_limit={self.min_limit}, max_limit={self.max_limit}"
            )
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            raise ValueError(
                f"initial_limit must be within [{self.min_limit}, {self.max_limit}], "
                f"got {self.initial_limit}"
            )
        _check_range("backoff_milli", self.backoff_milli, 1, MILLI - 1)
        _check_range("timeout_ns", self.timeout_ns, 0, MAX_RTT_NS)
        _check_range("alpha", self.alpha, 0, MAX_LIMIT)
        _check_range("beta", self.beta, self.alpha, MAX_LIMIT)
        _check_range("probe_every", self.probe_every, 0, 2**62)
        _check_range("tolerance_milli", self.tolerance_milli, MILLI, 100 * MILLI)
        _check_range("smoothing_milli", self.smoothing_milli, 1, MILLI)
        _check_range("long_window", self.long_window, 1, 2**31)
        _check_range("queue_size", self.queue_size, 0, MAX_LIMIT)


def _check_range(field: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{field} must be within [{low}, {high}], got {value}")
