"""BreakerConfig: defaults, lowering to a spec, and every bad field."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from ratefuse.breaker import (
    DEFAULT_FAILURE_RATE_THRESHOLD,
    DEFAULT_WINDOW_SIZE,
    BreakerConfig,
)
from ratefuse.core.breaker.spec import MAX_DURATION_NS, BreakerSpec


def test_defaults_lower_to_a_count_window_without_timing() -> None:
    config = BreakerConfig()
    assert config.failure_rate_threshold == DEFAULT_FAILURE_RATE_THRESHOLD
    assert config.to_spec() == BreakerSpec(
        count_window=True,
        window_size=DEFAULT_WINDOW_SIZE,
        bucket_ns=0,
        minimum_calls=100,
        failure_rate_ppm=500_000,
        slow_call_rate_ppm=1_000_000,
        slow_call_ns=0,
        wait_ns=60_000_000_000,
        max_wait_ns=MAX_DURATION_NS,
        backoff_multiplier=1.0,
        half_open_calls=10,
        max_half_open_ns=0,
    )


def test_the_defaults_are_resilience4js() -> None:
    # CircuitBreakerConfigTest.shouldSetDefaultSettings: minimum calls 100,
    # a 60 s wait, 10 half-open calls; a time window of 100 s in 1 s buckets.
    config = BreakerConfig()
    assert (config.minimum_calls, config.wait_duration, config.half_open_calls) == (
        100,
        60.0,
        10,
    )
    assert (config.window_size, config.failure_rate_threshold) == (100, 50.0)
    timed = BreakerConfig(window_type="time").to_spec()
    assert timed.window_size * timed.bucket_ns == 100_000_000_000
    assert timed.bucket_ns == 1_000_000_000


def test_a_time_window_lowers_to_buckets() -> None:
    spec = BreakerConfig(
        window_type="time",
        window_duration=10.0,
        window_buckets=4,
        slow_call_duration=0.25,
        failure_rate_threshold=12.5,
        max_wait_duration=60,
        max_half_open_duration=5,
    ).to_spec()
    assert (spec.count_window, spec.window_size, spec.bucket_ns) == (
        False,
        4,
        2_500_000_000,
    )
    assert (spec.slow_call_ns, spec.failure_rate_ppm) == (250_000_000, 125_000)
    assert (spec.max_wait_ns, spec.max_half_open_ns) == (60 * 10**9, 5 * 10**9)


def test_configs_are_frozen_and_replaceable() -> None:
    config = BreakerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.window_size = 3  # type: ignore[misc]
    assert dataclasses.replace(config, window_size=3).window_size == 3


BAD: list[tuple[str, Any, str]] = [
    ("failure_rate_threshold", 150, "must be in (0, 100], got 150"),
    ("failure_rate_threshold", 0, "must be in (0, 100], got 0"),
    ("failure_rate_threshold", math.nan, "got nan"),
    ("failure_rate_threshold", "50", "must be a number, got '50'"),
    ("failure_rate_threshold", True, "must be a number, got True"),
    ("slow_call_rate_threshold", -1.0, "must be in (0, 100], got -1.0"),
    ("slow_call_duration", 0.0, "must be > 0"),
    ("slow_call_duration", math.inf, "got inf"),
    ("window_type", "sliding", "must be 'count' or 'time', got 'sliding'"),
    ("window_size", 0, "must be in [1, 16777216], got 0"),
    ("window_size", 2.5, "must be an int, got 2.5"),
    ("window_size", 1 << 30, "got 1073741824"),
    ("window_duration", -5, "must be > 0"),
    ("window_buckets", 0, "must be in [1, 16777216], got 0"),
    ("minimum_calls", 0, "must be >= 1, got 0"),
    ("wait_duration", 0, "must be > 0"),
    ("wait_duration", math.nan, "got nan"),
    ("backoff_multiplier", 0.5, "must be finite and >= 1, got 0.5"),
    ("backoff_multiplier", math.inf, "got inf"),
    ("max_wait_duration", 10.0, "must be >= wait_duration (60.0), got 10.0"),
    ("half_open_calls", 0, "must be in [1, 16777216], got 0"),
    ("max_half_open_duration", -1.0, "must be > 0"),
    ("record_exceptions", [ValueError], "must be a tuple of exception types"),
    ("record_exceptions", (int,), "must be a tuple of exception types"),
    ("ignore_exceptions", ValueError, "must be a tuple of exception types"),
    ("exception_predicate", 3, "must be callable or None, got 3"),
    ("result_predicate", "bad", "must be callable or None, got 'bad'"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    BAD,
    ids=[f"{field}={value!r}" for field, value, _ in BAD],
)
def test_bad_fields_raise_value_error_naming_them(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field} ") as caught:
        BreakerConfig(**{field: value})
    assert str(caught.value).startswith(field)
    assert message in str(caught.value)


def test_time_window_buckets_must_be_at_least_a_millisecond() -> None:
    with pytest.raises(ValueError, match=r"^window_buckets must leave buckets"):
        BreakerConfig(window_type="time", window_duration=0.01, window_buckets=11)
    BreakerConfig(window_type="time", window_duration=0.01, window_buckets=10)


def test_minimum_calls_is_capped_by_a_count_window_only() -> None:
    assert BreakerConfig(window_size=10).to_spec().minimum_calls == 10
    config = BreakerConfig(window_type="time", window_buckets=2, minimum_calls=500)
    assert config.to_spec().minimum_calls == 500


def test_tiny_rates_and_durations_stay_positive() -> None:
    spec = BreakerConfig(
        failure_rate_threshold=1e-9, slow_call_duration=1e-12
    ).to_spec()
    assert (spec.failure_rate_ppm, spec.slow_call_ns) == (1, 1)


def test_every_field_has_a_bad_value_above() -> None:
    assert {field for field, _, _ in BAD} == {
        field.name for field in dataclasses.fields(BreakerConfig)
    }
