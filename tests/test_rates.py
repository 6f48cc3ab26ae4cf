"""Rates: parsing and validation (bad configuration fails at construction)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from ratefuse import Rate, parse
from ratefuse.rates import SLIDING_LOG_MAX_LIMIT, build_specs, to_rates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/s", [Rate(10, 1.0)]),
        ("10/second", [Rate(10, 1.0)]),
        ("10 / seconds", [Rate(10, 1.0)]),
        ("100 per minute", [Rate(100, 60.0)]),
        ("100 PER MINUTE", [Rate(100, 60.0)]),
        ("5/10s", [Rate(5, 10.0)]),
        ("1000 per 2 hours", [Rate(1000, 7200.0)]),
        ("3/d", [Rate(3, 86400.0)]),
        ("50/250ms", [Rate(50, 0.25)]),
        ("10/s; 1000/h", [Rate(10, 1.0), Rate(1000, 3600.0)]),
        ("10/s, 20/m,", [Rate(10, 1.0), Rate(20, 60.0)]),
    ],
)
def test_parse(text: str, expected: list[Rate]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ; ", "10", "10/", "ten/s", "10/fortnight", "-1/s", "10/s/s", "1.5/s"]
)
def test_parse_rejects_with_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="rate") as error:
        parse(text)
    part = text.split(";")[0].strip()
    if part:
        assert repr(part) in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"limit": 0}, "limit", "0"),
        ({"limit": -3}, "limit", "-3"),
        ({"limit": 2.5}, "limit", "2.5"),
        ({"limit": True}, "limit", "True"),
        ({"limit": 2**41}, "limit", str(2**41)),
        ({"limit": 1, "period": 0}, "period", "0"),
        ({"limit": 1, "period": -1.0}, "period", "-1.0"),
        ({"limit": 1, "period": math.nan}, "period", "nan"),
        ({"limit": 1, "period": math.inf}, "period", "inf"),
        ({"limit": 1, "period": "1s"}, "period", "'1s'"),
        ({"limit": 1, "period": 1e-12}, "period", "1e-12"),
        ({"limit": 1, "period": 1e12}, "period", "1000000000000.0"),
        ({"limit": 10, "burst": 0}, "burst", "0"),
        ({"limit": 10, "burst": 1.5}, "burst", "1.5"),
        ({"limit": 2_000_000_000, "period": 1.0}, "limit", "2000000000"),
    ],
)
def test_rate_validation_names_field_and_value(kwargs, field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field) as error:
        Rate(**kwargs)
    assert value in str(error.value)


def test_rate_derived_integers() -> None:
    rate = Rate(3, 1.0)
    assert rate.period_ns == 1_000_000_000
    assert rate.interval_ns == 333_333_334  # rounded up: never faster than 3/s
    assert rate.capacity == 3
    assert Rate(3, 1.0, burst=7).capacity == 7
    assert Rate(1, timedelta(minutes=2)).period == 120.0


def test_to_rates_accepts_strings_rates_and_sequences() -> None:
    assert to_rates("1/s") == (Rate(1, 1.0),)
    assert to_rates(Rate(1, 1.0)) == (Rate(1, 1.0),)
    assert to_rates(["1/s; 2/m", Rate(3, 5.0)]) == (
        Rate(1, 1.0),
        Rate(2, 60.0),
        Rate(3, 5.0),
    )
    with pytest.raises(ValueError, match="limits"):
        to_rates([])
    with pytest.raises(ValueError, match="42"):
        to_rates([42])  # type: ignore[list-item]


def test_build_specs_rejects_what_an_algorithm_cannot_honour() -> None:
    with pytest.raises(ValueError, match=r"algorithm.*'tokenbucket'"):
        build_specs([Rate(1, 1.0)], "tokenbucket")
    with pytest.raises(ValueError, match="burst=5"):
        build_specs([Rate(1, 1.0, burst=5)], "fixed_window")
    with pytest.raises(ValueError, match=f"at most {SLIDING_LOG_MAX_LIMIT}"):
        build_specs([Rate(SLIDING_LOG_MAX_LIMIT + 1, 60.0)], "sliding_log")
    with pytest.raises(ValueError, match="burst"):
        build_specs([Rate(1, 86400.0 * 365, burst=2**40)], "gcra")
    assert build_specs([Rate(1, 1.0)], "token_bucket")[0].algorithm == "gcra"
