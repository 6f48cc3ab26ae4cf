"""The adaptive concurrency algorithms' public configs: `AIMD`, `Vegas` and
`Gradient2`, frozen and validated, each lowered by `to_params` to the
integers of :class:`.params.AdaptiveParams`.

Durations are float seconds and ratios floats here; the core keeps
thousandths and nanoseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, TypeAlias

from ratefuse.core.adaptive.params import (
    MAX_LIMIT,
    MAX_RTT_NS,
    MILLI,
    AdaptiveParams,
    AlgorithmId,
)

DEFAULT_INITIAL_LIMIT: Final = 20
DEFAULT_MIN_LIMIT: Final = 1
DEFAULT_MAX_LIMIT: Final = 1000
DEFAULT_AIMD_BACKOFF: Final = 0.9
DEFAULT_VEGAS_BACKOFF: Final = 0.75
DEFAULT_VEGAS_ALPHA: Final = 3
DEFAULT_VEGAS_BETA: Final = 6
DEFAULT_VEGAS_PROBE_EVERY: Final[int | None] = None
DEFAULT_GRADIENT2_BACKOFF: Final = 0.9
DEFAULT_GRADIENT2_TOLERANCE: Final = 1.5
DEFAULT_GRADIENT2_SMOOTHING: Final = 0.2
DEFAULT_GRADIENT2_LONG_WINDOW: Final = 100
DEFAULT_GRADIENT2_QUEUE_SIZE: Final = 4


def _check_int(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an int, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{field} must be within [{low}, {high}], got {value}")
    return value


def _milli(field: str, value: object, low: float, high: float) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{field} must be within [{low}, {high}], got {value}")
    return round(value * MILLI)


def _check_limits(initial: object, low: object, high: object) -> None:
    low = _check_int("min_limit", low, 1, MAX_LIMIT)
    high = _check_int("max_limit", high, 1, MAX_LIMIT)
    if low > high:
        raise ValueError(f"min_limit ({low}) must be <= max_limit ({high})")
    _check_int("initial_limit", initial, low, high)


@dataclass(frozen=True, slots=True)
class AIMD:
    """`AIMD` grows the limit by one call per sample while it is in use and
    multiplies it by ``backoff_ratio`` (0 < r < 1) on a drop (an error) or
    a call slower than ``timeout`` seconds (None: only errors). Simple and
    robust when errors or timeouts are the overload signal."""

    initial_limit: int = DEFAULT_INITIAL_LIMIT
    min_limit: int = DEFAULT_MIN_LIMIT
    max_limit: int = DEFAULT_MAX_LIMIT
    backoff_ratio: float = DEFAULT_AIMD_BACKOFF
    timeout: float | None = None

    def __post_init__(self) -> None:
        self.to_params()

    def to_params(self) -> AdaptiveParams:
        """`to_params` lowers the config to the core's integers."""
        _check_limits(self.initial_limit, self.min_limit, self.max_limit)
        timeout_ns = 0
        if self.timeout is not None:
            if isinstance(self.timeout, bool) or not isinstance(
                self.timeout, (int, float)
            ):
                raise ValueError(
                    f"timeout must be seconds or None, got {self.timeout!r}"
                )
            if not (self.timeout > 0 and math.isfinite(self.timeout)):
                raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
            timeout_ns = min(max(1, round(self.timeout * 1e9)), MAX_RTT_NS)
        return AdaptiveParams(
            AlgorithmId.AIMD,
            self.initial_limit,
            self.min_limit,
            self.max_limit,
            backoff_milli=_milli("backoff_ratio", self.backoff_ratio, 0.001, 0.999),
            timeout_ns=timeout_ns,
        )


@dataclass(frozen=True, slots=True)
class Vegas:
    """`Vegas` estimates the queue at the server from the latency over the
    least latency seen (``limit * (1 - no_load / rtt)``), grows while it is
    below ``alpha`` calls and shrinks while it is above ``beta``; on a drop
    it multiplies by ``backoff_ratio``. Every ``probe_every`` samples (None,
    the default: never) it forgets the least latency, to follow a server
    that became slower for good (at the price of taking the queue of that
    moment for no queue). Keeps latency close to the no-load latency."""

    initial_limit: int = DEFAULT_INITIAL_LIMIT
    min_limit: int = DEFAULT_MIN_LIMIT
    max_limit: int = DEFAULT_MAX_LIMIT
    alpha: int = DEFAULT_VEGAS_ALPHA
    beta: int = DEFAULT_VEGAS_BETA
    backoff_ratio: float = DEFAULT_VEGAS_BACKOFF
    probe_every: int | None = DEFAULT_VEGAS_PROBE_EVERY

    def __post_init__(self) -> None:
        self.to_params()

    def to_params(self) -> AdaptiveParams:
        """`to_params` lowers the config to the core's integers."""
        _check_limits(self.initial_limit, self.min_limit, self.max_limit)
        alpha = _check_int("alpha", self.alpha, 0, MAX_LIMIT)
        beta = _check_int("beta", self.beta, alpha, MAX_LIMIT)
        probe = 0
        if self.probe_every is not None:
            probe = _check_int("probe_every", self.probe_every, 1, 2**62)
        return AdaptiveParams(
            AlgorithmId.VEGAS,
            self.initial_limit,
            self.min_limit,
            self.max_limit,
            backoff_milli=_milli("backoff_ratio", self.backoff_ratio, 0.001, 0.999),
            alpha=alpha,
            beta=beta,
            probe_every=probe,
        )


@dataclass(frozen=True, slots=True)
class Gradient2:
    """`Gradient2` compares the recent (smoothed) latency with its long-term
    average over ``long_window`` round trips: the limit moves, by
    ``smoothing`` (0 < s <= 1) per round trip, toward ``limit * gradient +
    queue_size`` where the gradient is ``tolerance * long / recent`` clamped
    to [0.5, 1]. Latency may grow ``tolerance`` times (>= 1) before it
    shrinks; on a drop it multiplies by ``backoff_ratio``. Needs no no-load
    latency, so it suits servers whose latency drifts; its long-term
    average also absorbs a standing queue, so under sustained overload it
    drifts up (see the simulation in the README)."""

    initial_limit: int = DEFAULT_INITIAL_LIMIT
    min_limit: int = DEFAULT_MIN_LIMIT
    max_limit: int = DEFAULT_MAX_LIMIT
    tolerance: float = DEFAULT_GRADIENT2_TOLERANCE
    smoothing: float = DEFAULT_GRADIENT2_SMOOTHING
    long_window: int = DEFAULT_GRADIENT2_LONG_WINDOW
    queue_size: int = DEFAULT_GRADIENT2_QUEUE_SIZE
    backoff_ratio: float = DEFAULT_GRADIENT2_BACKOFF

    def __post_init__(self) -> None:
        self.to_params()

    def to_params(self) -> AdaptiveParams:
        """`to_params` lowers the config to the core's integers."""
        _check_limits(self.initial_limit, self.min_limit, self.max_limit)
        return AdaptiveParams(
            AlgorithmId.GRADIENT2,
            self.initial_limit,
            self.min_limit,
            self.max_limit,
            backoff_milli=_milli("backoff_ratio", self.backoff_ratio, 0.001, 0.999),
            tolerance_milli=_milli("tolerance", self.tolerance, 1.0, 100.0),
            smoothing_milli=_milli("smoothing", self.smoothing, 0.001, 1.0),
            long_window=_check_int("long_window", self.long_window, 1, 2**31),
            queue_size=_check_int("queue_size", self.queue_size, 0, MAX_LIMIT),
        )


AdaptiveAlgorithm: TypeAlias = AIMD | Vegas | Gradient2
