"""The public Limiter: construction, clock and now, reset, bad input."""

from __future__ import annotations

import math
import pickle
from fractions import Fraction

import pytest

import ratefuse
from ratefuse import Limiter, Rate
from ratefuse.rates import build_specs

MS = 1_000_000


class ManualClock:
    """`ManualClock` is a clock the test moves by hand (integer ns)."""

    def __init__(self, now_ns: int = 0) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def test_quick_start_example() -> None:
    clock = ManualClock()
    limiter = Limiter("2/s", clock=clock)
    assert [limiter.try_acquire() for _ in range(3)] == [True, True, False]
    decision = limiter.decide()
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(0.5)
    clock.now_ns += 500 * MS
    assert limiter.try_acquire()


def test_every_algorithm_name_builds_a_limiter() -> None:
    for algorithm in ratefuse.ALGORITHMS:
        limiter = Limiter("3/s", algorithm=algorithm, clock=ManualClock())
        assert sum(limiter.try_acquire() for _ in range(5)) == 3, algorithm
    assert Limiter("1/s", algorithm="token_bucket").algorithm == "gcra"


def test_compound_limit_from_one_string() -> None:
    clock = ManualClock()
    limiter = Limiter("2/s; 3/m", clock=clock)
    admitted = 0
    for _ in range(10):
        admitted += limiter.try_acquire()
        clock.now_ns += 1_000 * MS
    assert admitted == 3
    assert limiter.rates == (Rate(2, 1.0), Rate(3, 60.0))


def test_explicit_now_overrides_the_clock() -> None:
    clock = ManualClock(10_000 * MS)
    limiter = Limiter("1/s", clock=clock)
    assert limiter.try_acquire(now=0)
    assert limiter.try_acquire()  # the clock is 10 s later
    assert not limiter.try_acquire(now=10_500 * MS)


def test_default_clock_is_the_monotonic_clock() -> None:
    limiter = Limiter("5/h")
    assert limiter.clock is None
    assert sum(limiter.try_acquire() for _ in range(10)) == 5
    decision = limiter.decide()
    assert 719.0 < decision.retry_after <= 720.0


def test_reset() -> None:
    limiter = Limiter("1/h", clock=ManualClock())
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    limiter.reset()
    assert limiter.try_acquire()


def test_decision_fields_and_value_semantics(impl) -> None:
    engine = impl.module("engine._subject")
    core = engine.LimiterCore(build_specs([Rate(2, 1.0)], "gcra"))
    decision = core.decide(1, now=0)
    assert isinstance(decision, engine.Decision)
    assert decision.astuple() == (True, 1, 0.0, 0.5, 2)
    assert decision == engine.Decision(True, 1, 0.0, 0.5, 2)
    assert hash(decision) == hash(engine.Decision(True, 1, 0.0, 0.5, 2))
    assert decision != engine.Decision(True, 0, 0.0, 0.5, 2)
    assert decision != (True, 1, 0.0, 0.5, 2)
    assert repr(decision) == (
        "Decision(allowed=True, remaining=1, retry_after=0.0, reset_after=0.5, limit=2)"
    )
    assert pickle.loads(pickle.dumps(decision)) == decision
    with pytest.raises(AttributeError):
        decision.allowed = False
    never = core.decide(3, now=0)
    assert never.retry_after == math.inf


def test_decisions_compare_across_implementations(compiled, reference) -> None:
    fields = (False, 0, 0.25, 1.0, 2)
    assert compiled.module("engine._subject").Decision(*fields) == reference.module(
        "engine._subject"
    ).Decision(*fields)


@pytest.mark.parametrize(
    ("cost", "error", "match"),
    [
        (-1, ValueError, "cost must be >= 0, got -1"),
        (1.5, ValueError, "cost must be an int, got 1.5"),
        (2.0, ValueError, "cost must be an int, got 2.0"),
        (Fraction(1, 1), ValueError, "cost must be an int"),
        ("1", ValueError, "cost must be an int"),
        (None, ValueError, "cost must be an int, got None"),
        (2**63, ValueError, "cost must be in"),
        (-(2**63) - 1, ValueError, "cost must be >= 0"),
    ],
)
def test_bad_cost_is_refused_alike(impl, cost, error, match: str) -> None:
    core = impl.module("engine._subject").LimiterCore(
        build_specs([Rate(2, 1.0)], "gcra")
    )
    for verb in (core.try_acquire, core.decide):
        with pytest.raises(error, match=match):
            verb(cost, now=0)
    assert core.decide(0, now=0).remaining == 2  # nothing was consumed


@pytest.mark.parametrize(
    ("now", "error", "match"),
    [
        (-1, ValueError, "now must be in"),
        (2**62 + 1, ValueError, "now must be in"),
        (2**64, ValueError, "now must be in"),
        (1.5, ValueError, "now must be an int"),
        ("0", ValueError, "now must be an int"),
    ],
)
def test_bad_now_is_refused_alike(impl, now, error, match: str) -> None:
    core = impl.module("engine._subject").LimiterCore(
        build_specs([Rate(2, 1.0)], "gcra")
    )
    with pytest.raises(error, match=match):
        core.try_acquire(1, now=now)
    with pytest.raises(error, match=match):
        impl.module("engine._subject").LimiterCore(
            build_specs([Rate(2, 1.0)], "gcra"), clock=lambda: now
        ).decide()


def test_integer_like_costs_are_accepted(impl) -> None:
    numpy = pytest.importorskip("numpy")
    core = impl.module("engine._subject").LimiterCore(
        build_specs([Rate(5, 1.0)], "gcra")
    )
    assert core.decide(numpy.int64(3), now=0).remaining == 2
    assert core.decide(True, now=0).remaining == 1


def test_limiter_construction_errors() -> None:
    with pytest.raises(ValueError, match="clock must be callable"):
        Limiter("1/s", clock=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="algorithm"):
        Limiter("1/s", algorithm="bogus")
    with pytest.raises(ValueError, match="at least one limit"):
        ratefuse.engine.subject.LimiterCore([])
    with pytest.raises(ValueError, match="cannot parse rate '10 per'"):
        Limiter("10 per")


def test_repr() -> None:
    assert repr(Limiter("10/s; 1000/h")) == (
        "Limiter('10/1s; 1000/3600s', algorithm='gcra')"
    )


def test_public_names() -> None:
    assert ratefuse.IMPLEMENTATION in ("cython", "python")
    assert ratefuse.Decision is ratefuse.engine.subject.Decision
    for name in ratefuse.__all__:
        assert hasattr(ratefuse, name), name
