"""Specs given to the cores directly (constructors, `reconfigure`) are
checked as the public config objects check theirs (issue 21, item 1): a
zero period used to kill the compiled core with SIGFPE at the next decision
and raise ZeroDivisionError in the reference; a negative capacity answered
negative `remaining`."""

from __future__ import annotations

import pytest

from ratefuse.core.spec import LimitSpec
from ratefuse.rates import Rate, build_specs

GOOD = build_specs([Rate(10, 1.0)], "gcra")

# (spec, the field the error names)
BAD: list[tuple[object, str]] = [
    (LimitSpec("fixed_window", 1, 0, 0), "period_ns"),
    (LimitSpec("sliding_window", 1, 0, 0), "period_ns"),
    (LimitSpec("sliding_log", 1, 0, 0), "period_ns"),
    (LimitSpec("gcra", 1, 0, 0), "period_ns"),
    (LimitSpec("gcra", -5, -1, -1), "capacity"),
    (LimitSpec("gcra", 0, 10, 1), "capacity"),
    (LimitSpec("gcra", 1, 10, 0), "interval_ns"),
    (LimitSpec("gcra", 1, 10, 11), "interval_ns"),
    (LimitSpec("leaky_bucket", 1, 10, -1), "interval_ns"),
    (LimitSpec("gcra", 2**40, 2**58, 2**21), "interval_ns \\* capacity"),
    (LimitSpec("fixed_window", 2**40 + 1, 10, 0), "capacity"),
    (LimitSpec("fixed_window", 3, 2**58 + 1, 0), "period_ns"),
    (LimitSpec("fixed_window", 3, 10, 1), "interval_ns"),
    (LimitSpec("sliding_log", 100_001, 10, 0), "capacity"),
    (LimitSpec("fixed_window", True, 10, 0), "capacity"),
    (LimitSpec("fixed_window", 3, 10.0, 0), "period_ns"),  # type: ignore[arg-type]
    (LimitSpec("nope", 3, 10, 0), "algorithm"),
    (("gcra", 1, 10, 1), "LimitSpec"),
]


def _cores(impl, specs):
    yield impl.module("engine._subject").LimiterCore(specs)
    yield impl.module("engine._keyed").KeyedLimiterCore(specs, 64)


@pytest.mark.parametrize(("spec", "field"), BAD, ids=[repr(s) for s, _ in BAD])
def test_reconfigure_refuses_a_bad_spec_and_changes_nothing(impl, spec, field) -> None:
    for core in _cores(impl, GOOD):
        with pytest.raises(ValueError, match=field):
            core.reconfigure([GOOD[0], spec])
        with pytest.raises(ValueError, match=field):
            core.reconfigure([spec])
        assert core._specs == GOOD
        args = ("k",) if hasattr(core, "max_keys") else ()
        assert core.decide(*args, now=5).remaining == 9


@pytest.mark.parametrize(("spec", "field"), BAD, ids=[repr(s) for s, _ in BAD])
def test_constructors_refuse_a_bad_spec(impl, spec, field) -> None:
    with pytest.raises(ValueError, match=field):
        impl.module("engine._subject").LimiterCore([spec])
    with pytest.raises(ValueError, match=field):
        impl.module("engine._keyed").KeyedLimiterCore([spec], 64)


@pytest.mark.parametrize(
    "spec",
    [
        LimitSpec("gcra", 1, 1, 1),
        LimitSpec("leaky_bucket", 2**40, 2**58, 2**20),
        LimitSpec("fixed_window", 2**40, 2**58, 0),
        LimitSpec("sliding_window", 1, 1, 0),
        LimitSpec("sliding_log", 100_000, 10**9, 0),
    ],
)
def test_the_bounds_themselves_are_accepted(impl, spec) -> None:
    for core in _cores(impl, GOOD):
        core.reconfigure([spec])
        args = ("k",) if hasattr(core, "max_keys") else ()
        assert core.decide(*args, cost=0, now=5).remaining == spec.capacity
