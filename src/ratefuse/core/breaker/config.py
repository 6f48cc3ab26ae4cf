"""`BreakerConfig`: what a circuit breaker decides by, validated.

Public durations are float seconds; rates are percentages. `to_spec` lowers
a config to the integers of :class:`.spec.BreakerSpec`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from ratefuse.core.args import is_exception_types
from ratefuse.core.breaker.spec import (
    MAX_DURATION_NS,
    MAX_HALF_OPEN_CALLS,
    MAX_WINDOW_SIZE,
    RATE_SCALE,
    BreakerSpec,
)

DEFAULT_FAILURE_RATE_THRESHOLD: Final = 50.0
DEFAULT_SLOW_CALL_RATE_THRESHOLD: Final = 100.0
DEFAULT_SLOW_CALL_DURATION: Final[float | None] = None
DEFAULT_WINDOW_TYPE: Final[Literal["count", "time"]] = "count"
DEFAULT_WINDOW_SIZE: Final = 100
DEFAULT_WINDOW_DURATION: Final = 100.0
DEFAULT_WINDOW_BUCKETS: Final = 100
DEFAULT_MINIMUM_CALLS: Final = 100
DEFAULT_WAIT_DURATION: Final = 60.0
DEFAULT_BACKOFF_MULTIPLIER: Final = 1.0
DEFAULT_MAX_WAIT_DURATION: Final[float | None] = None
DEFAULT_HALF_OPEN_CALLS: Final = 10
DEFAULT_MAX_HALF_OPEN_DURATION: Final[float | None] = None
DEFAULT_RECORD_EXCEPTIONS: Final[tuple[type[BaseException], ...]] = (Exception,)
DEFAULT_IGNORE_EXCEPTIONS: Final[tuple[type[BaseException], ...]] = ()

# The longest duration a config accepts: 2**61 ns, about 73 years.
MAX_DURATION_S: Final = MAX_DURATION_NS / 1e9
# The shortest bucket of a time-based window.
MIN_BUCKET_NS: Final = 1_000_000


@dataclass(frozen=True)
class BreakerConfig:
    """`BreakerConfig` holds a circuit breaker's rules. Immutable; derive
    variants with :func:`dataclasses.replace`. Every field is validated at
    construction and a bad value raises ValueError naming the field.

    failure_rate_threshold: percent in (0, 100]; a window with this share of
        failed calls or more opens the breaker.
    slow_call_rate_threshold: percent in (0, 100]; likewise for slow calls.
    slow_call_duration: seconds; a call taking longer is slow. None (the
        default) turns slow-call tracking off, and then the breaker never
        reads the clock to time a call.
    window_type: "count" (the last ``window_size`` calls) or "time" (the
        calls of the last ``window_duration`` seconds, in ``window_buckets``
        buckets; the window drops a whole bucket at a time).
    window_size: calls in a count window, >= 1.
    window_duration: seconds covered by a time window, > 0.
    window_buckets: buckets of a time window, >= 1, each >= 1 ms.
    minimum_calls: calls the window must hold before any rate can open the
        breaker, >= 1; a count window uses at most ``window_size`` (a full
        window is always enough), as Resilience4j does.
    wait_duration: seconds OPEN rejects before letting a probe through, > 0.
    backoff_multiplier: >= 1; each time the breaker opens again before it
        has closed (a failed or expired probe round, a manual OPEN or
        FORCED_OPEN) the wait is multiplied by it. 1 keeps it constant.
    max_wait_duration: seconds; the wait never grows beyond it. None: no
        bound but the 73-year limit of every duration.
    half_open_calls: probes per HALF_OPEN round, >= 1; when
        min(``minimum_calls``, ``half_open_calls``) of them are recorded,
        their rates close or re-open the breaker.
    max_half_open_duration: seconds a probe round may wait for its
        outcomes; past it the breaker re-opens as of that deadline (with
        the wait grown), seen by the next call. None: forever.
    record_exceptions: exceptions that count as failures (subject to
        ``exception_predicate``); other exceptions count as successes.
    ignore_exceptions: exceptions that count as nothing (checked first).
    exception_predicate: None, or a function of a recordable exception that
        returns true if it counts as a failure.
    result_predicate: None, or a function of a call's result that returns
        true if the result counts as a failure (an HTTP 503, say).
    """

    failure_rate_threshold: float = DEFAULT_FAILURE_RATE_THRESHOLD
    slow_call_rate_threshold: float = DEFAULT_SLOW_CALL_RATE_THRESHOLD
    slow_call_duration: float | None = DEFAULT_SLOW_CALL_DURATION
    window_type: Literal["count", "time"] = DEFAULT_WINDOW_TYPE
    window_size: int = DEFAULT_WINDOW_SIZE
    window_duration: float = DEFAULT_WINDOW_DURATION
    window_buckets: int = DEFAULT_WINDOW_BUCKETS
    minimum_calls: int = DEFAULT_MINIMUM_CALLS
    wait_duration: float = DEFAULT_WAIT_DURATION
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    max_wait_duration: float | None = DEFAULT_MAX_WAIT_DURATION
    half_open_calls: int = DEFAULT_HALF_OPEN_CALLS
    max_half_open_duration: float | None = DEFAULT_MAX_HALF_OPEN_DURATION
    record_exceptions: tuple[type[BaseException], ...] = DEFAULT_RECORD_EXCEPTIONS
    ignore_exceptions: tuple[type[BaseException], ...] = DEFAULT_IGNORE_EXCEPTIONS
    exception_predicate: Callable[[BaseException], bool] | None = None
    result_predicate: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        _check_rate("failure_rate_threshold", self.failure_rate_threshold)
        _check_rate("slow_call_rate_threshold", self.slow_call_rate_threshold)
        if self.slow_call_duration is not None:
            _check_duration("slow_call_duration", self.slow_call_duration)
        if self.window_type not in ("count", "time"):
            raise ValueError(
                f"window_type must be 'count' or 'time', got {self.window_type!r}"
            )
        _check_int("window_size", self.window_size, 1, MAX_WINDOW_SIZE)
        _check_duration("window_duration", self.window_duration)
        _check_int("window_buckets", self.window_buckets, 1, MAX_WINDOW_SIZE)
        if self.window_type == "time" and self._bucket_ns() < MIN_BUCKET_NS:
            raise ValueError(
                "window_buckets must leave buckets of at least 0.001 s, got "
                f"{self.window_buckets} buckets over {self.window_duration} s"
            )
        _check_int("minimum_calls", self.minimum_calls, 1, None)
        _check_duration("wait_duration", self.wait_duration)
        multiplier = _check_real("backoff_multiplier", self.backoff_multiplier)
        if not 1.0 <= multiplier < math.inf:
            raise ValueError(
                f"backoff_multiplier must be finite and >= 1, got {multiplier}"
            )
        if self.max_wait_duration is not None:
            _check_duration("max_wait_duration", self.max_wait_duration)
            if self.max_wait_duration < self.wait_duration:
                raise ValueError(
                    "max_wait_duration must be >= wait_duration "
                    f"({self.wait_duration}), got {self.max_wait_duration}"
                )
        _check_int("half_open_calls", self.half_open_calls, 1, MAX_HALF_OPEN_CALLS)
        if self.max_half_open_duration is not None:
            _check_duration("max_half_open_duration", self.max_half_open_duration)
        _check_exception_types("record_exceptions", self.record_exceptions)
        _check_exception_types("ignore_exceptions", self.ignore_exceptions)
        _check_callable("exception_predicate", self.exception_predicate)
        _check_callable("result_predicate", self.result_predicate)

    def _bucket_ns(self) -> int:
        return seconds_to_ns(self.window_duration) // self.window_buckets

    def to_spec(self) -> BreakerSpec:
        """`to_spec` lowers the config to the integers the cores decide with."""
        count_window = self.window_type == "count"
        return BreakerSpec(
            count_window=count_window,
            window_size=self.window_size if count_window else self.window_buckets,
            bucket_ns=0 if count_window else self._bucket_ns(),
            minimum_calls=(
                min(self.minimum_calls, self.window_size)
                if count_window
                else self.minimum_calls
            ),
            failure_rate_ppm=rate_to_ppm(self.failure_rate_threshold),
            slow_call_rate_ppm=rate_to_ppm(self.slow_call_rate_threshold),
            slow_call_ns=(
                0
                if self.slow_call_duration is None
                else seconds_to_ns(self.slow_call_duration)
            ),
            wait_ns=seconds_to_ns(self.wait_duration),
            max_wait_ns=(
                MAX_DURATION_NS
                if self.max_wait_duration is None
                else seconds_to_ns(self.max_wait_duration)
            ),
            backoff_multiplier=float(self.backoff_multiplier),
            half_open_calls=self.half_open_calls,
            max_half_open_ns=(
                0
                if self.max_half_open_duration is None
                else seconds_to_ns(self.max_half_open_duration)
            ),
        )


def seconds_to_ns(seconds: float) -> int:
    """`seconds_to_ns` rounds a validated duration to whole nanoseconds, >= 1."""
    return max(1, min(round(seconds * 1e9), MAX_DURATION_NS))


def rate_to_ppm(percent: float) -> int:
    """`rate_to_ppm` turns a validated percentage into parts per million."""
    return max(1, round(percent * (RATE_SCALE / 100)))


def _check_real(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} must be a number, got {value!r}")
    return float(value)


def _check_rate(field: str, value: object) -> None:
    if not 0.0 < _check_real(field, value) <= 100.0:
        raise ValueError(f"{field} must be in (0, 100], got {value}")


def _check_duration(field: str, value: object) -> None:
    if not 0.0 < _check_real(field, value) <= MAX_DURATION_S:
        raise ValueError(
            f"{field} must be > 0 and <= {MAX_DURATION_S:.6g} seconds, got {value}"
        )


def _check_int(field: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{field} must be {bounds}, got {value}")


def _check_exception_types(field: str, value: object) -> None:
    if not is_exception_types(value):
        raise ValueError(f"{field} must be a tuple of exception types, got {value!r}")


def _check_callable(field: str, value: object) -> None:
    if value is not None and not callable(value):
        raise ValueError(f"{field} must be callable or None, got {value!r}")
