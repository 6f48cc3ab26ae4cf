"""Table tests: every algorithm on a fixed time grid, both implementations.

Times are in milliseconds for readability; the cores get nanoseconds. Each
row is (at_ms, cost, allowed, remaining, retry_after_s, reset_after_s, limit).
"""

from __future__ import annotations

import math

import pytest

from ratefuse.rates import Rate, build_specs

MS = 1_000_000
INF = math.inf

Row = tuple[int, int, bool, int, float, float, int]

# Rate 2/s, burst 2: emission interval T = 500 ms, tolerance tau = 1 s.
GCRA_TABLE: list[Row] = [
    (0, 1, True, 1, 0.0, 0.5, 2),
    (0, 1, True, 0, 0.0, 1.0, 2),
    (0, 1, False, 0, 0.5, 1.0, 2),
    (250, 1, False, 0, 0.25, 0.75, 2),
    (500, 1, True, 0, 0.0, 1.0, 2),
    (500, 3, False, 0, INF, 1.0, 2),  # cost above capacity: never
    (2000, 0, True, 2, 0.0, 0.0, 2),  # cost 0 asks without consuming
    (2000, 2, True, 0, 0.0, 1.0, 2),
]

# Rate 3/s: windows [0, 1 s), [1 s, 2 s), ...
FIXED_WINDOW_TABLE: list[Row] = [
    (0, 2, True, 1, 0.0, 1.0, 3),
    (100, 2, False, 1, 0.9, 0.9, 3),  # rejected calls do not count
    (100, 1, True, 0, 0.0, 0.9, 3),
    (999, 1, False, 0, 0.001, 0.001, 3),
    (1000, 3, True, 0, 0.0, 1.0, 3),
    (1500, 4, False, 0, INF, 0.5, 3),
    (5000, 0, True, 3, 0.0, 0.0, 3),
]

# Rate 10/s: estimate = prev * (1 s - elapsed) / 1 s + cur.
SLIDING_WINDOW_TABLE: list[Row] = [
    (0, 6, True, 4, 0.0, 2.0, 10),
    # 6 + 5 > 10 now; fits in the next window once 6 * (1 - e) + 5 <= 10.
    (500, 5, False, 4, 0.666666667, 1.5, 10),
    (1250, 5, True, 0, 0.0, 1.75, 10),  # 6 * 0.75 + 5 = 9.5
    # 4.5 + 6 > 10; fits once 6 * (1 - e) <= 4, at e = 1/3 s.
    (1250, 1, False, 0, 0.083333334, 1.75, 10),
    (3500, 0, True, 10, 0.0, 0.0, 10),
    (3500, 11, False, 10, INF, 0.0, 10),
]

# Rate 3/s, exact log.
SLIDING_LOG_TABLE: list[Row] = [
    (0, 1, True, 2, 0.0, 1.0, 3),
    (200, 2, True, 0, 0.0, 1.0, 3),
    (500, 1, False, 0, 0.5, 0.7, 3),  # the entry at 0 expires at 1 s
    (1000, 1, True, 0, 0.0, 1.0, 3),
    (1100, 3, False, 0, 0.9, 0.9, 3),  # needs entries at 200 and 1000 gone
    (1100, 4, False, 0, INF, 0.9, 3),
    (5000, 0, True, 3, 0.0, 0.0, 3),
]

TABLES = [
    ("gcra", Rate(2, 1.0), GCRA_TABLE),
    ("token_bucket", Rate(2, 1.0), GCRA_TABLE),
    ("leaky_bucket", Rate(2, 1.0), GCRA_TABLE),
    ("gcra", Rate(1, 0.5, burst=2), GCRA_TABLE),
    ("fixed_window", Rate(3, 1.0), FIXED_WINDOW_TABLE),
    ("sliding_window", Rate(10, 1.0), SLIDING_WINDOW_TABLE),
    ("sliding_log", Rate(3, 1.0), SLIDING_LOG_TABLE),
]


def run_table(core: object, table: list[Row]) -> None:
    for at_ms, cost, allowed, remaining, retry, reset, limit in table:
        decision = core.decide(cost, now=at_ms * MS)  # type: ignore[attr-defined]
        expected = (allowed, remaining, retry, reset, limit)
        assert decision.astuple() == pytest.approx(expected, abs=1e-9), (
            f"at {at_ms} ms, cost {cost}"
        )


@pytest.mark.parametrize(("algorithm", "rate", "table"), TABLES)
def test_algorithm_table(impl, algorithm: str, rate: Rate, table: list[Row]) -> None:
    core = impl.module("engine._subject").LimiterCore(build_specs([rate], algorithm))
    run_table(core, table)


@pytest.mark.parametrize(("algorithm", "rate", "table"), TABLES)
def test_try_acquire_agrees_with_decide(
    impl, algorithm: str, rate: Rate, table: list[Row]
) -> None:
    core = impl.module("engine._subject").LimiterCore(build_specs([rate], algorithm))
    for at_ms, cost, allowed, *_ in table:
        assert core.try_acquire(cost, now=at_ms * MS) is allowed


# "2/s; 3/10s" under gcra: A has T = 500 ms, tau = 1 s; B has
# T = 3.333333334 s (rounded up), tau = 10.000000002 s.
COMPOUND_TABLE: list[Row] = [
    (0, 1, True, 1, 0.0, 3.333333334, 2),
    (0, 1, True, 0, 0.0, 6.666666668, 2),
    # A denies; B would admit but consumes nothing: B still reports 1 left.
    (0, 1, False, 0, 0.5, 6.666666668, 2),
    (1000, 1, True, 0, 0.0, 9.000000002, 3),
    # B denies; A would admit, reported unconsumed. B binds.
    (1000, 1, False, 0, 2.333333334, 9.000000002, 3),
]


def test_compound_table(impl) -> None:
    specs = build_specs([Rate(2, 1.0), Rate(3, 10.0)], "gcra")
    run_table(impl.module("engine._subject").LimiterCore(specs), COMPOUND_TABLE)


def test_compound_consumes_nothing_when_one_denies(impl) -> None:
    specs = build_specs([Rate(5, 1.0), Rate(2, 60.0)], "fixed_window")
    core = impl.module("engine._subject").LimiterCore(specs)
    assert core.try_acquire(2, now=0)
    assert not core.try_acquire(1, now=0)  # the 2/min limit denies
    # The 5/s limit consumed nothing for the denial: 3 are left there.
    assert core.decide(0, now=0).astuple() == (True, 0, 0.0, 60.0, 2)
    assert not core.try_acquire(1, now=2_000 * MS)
    assert core.try_acquire(2, now=60_000 * MS)


def test_compound_reports_most_restrictive_denial(impl) -> None:
    specs = build_specs([Rate(1, 1.0), Rate(1, 10.0)], "fixed_window")
    core = impl.module("engine._subject").LimiterCore(specs)
    assert core.try_acquire(1, now=0)
    decision = core.decide(1, now=500 * MS)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(9.5)
    assert decision.limit == 1


def test_reset_forgets_everything(impl) -> None:
    for algorithm in ("gcra", "leaky_bucket", "fixed_window", "sliding_window"):
        specs = build_specs([Rate(2, 1.0)], algorithm)
        core = impl.module("engine._subject").LimiterCore(specs)
        assert core.try_acquire(2, now=10 * MS)
        assert not core.try_acquire(1, now=10 * MS)
        core.reset()
        assert core.try_acquire(2, now=10 * MS), algorithm
    core = impl.module("engine._subject").LimiterCore(
        build_specs([Rate(2, 1.0)], "sliding_log")
    )
    assert core.try_acquire(2, now=10 * MS)
    core.reset()
    assert core.try_acquire(2, now=10 * MS)


def test_time_stepping_back_never_over_admits(impl) -> None:
    for algorithm in (
        "gcra",
        "leaky_bucket",
        "fixed_window",
        "sliding_window",
        "sliding_log",
    ):
        specs = build_specs([Rate(3, 1.0)], algorithm)
        core = impl.module("engine._subject").LimiterCore(specs)
        admitted = sum(core.try_acquire(1, now=5_000 * MS) for _ in range(3))
        admitted += sum(core.try_acquire(1, now=4_000 * MS) for _ in range(3))
        assert admitted == 3, algorithm
