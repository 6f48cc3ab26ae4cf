"""Hostile input through the public API, both implementations (issue 21).

Hypothesis throws wrong types, NaN and infinities, huge ints, bytes, empty
strings, negative and huge costs and odd keys at the configuration path
(`Rate`, `parse`, `Limiter`, `KeyedLimiter`) and at every verb of the
limiters (one subject, keyed, ``decide_many``, shared memory) and the
breaker's two-step protocol. It requires:

- only documented errors: ValueError or TypeError (ratefuse's own
  subclasses included) whose message names the field, never Python's own
  OverflowError, "not iterable" or int-to-str error;
- identical behaviour between the compiled and the reference twins, call
  for call: the same result, or the same error type and message.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breaker_support import ManualClock, make_breaker
from ratefuse import KeyedLimiter, Limiter, Rate, parse
from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.engine.batch import import_numpy
from ratefuse.limiter import lower_limits
from ratefuse.shm import ShmBackend, ShmKeyedLimiter
from shm_support import core as shm_core

NOW = 10**12  # the fixed time of every decision: no clock is read

# Values no argument should choke on, whatever it expects.
HUGE_INTS = [10**5000, -(10**5000), 2**62 + 1, 2**63, 2**64, -(2**63) - 1, 10**20]
ODD_NUMBERS = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    1e300,
    -1e300,
    5e-324,
    Fraction(1, 3),
    Decimal("1.5"),
    Decimal("NaN"),
    numpy.int64(3),
    numpy.int64(-3),
    numpy.uint64(2**64 - 1),
    numpy.float64(math.nan),
    numpy.float32(2.5),
    numpy.array(2),
    numpy.array([1, 2]),
]
ordinary = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=20),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.sampled_from(ODD_NUMBERS),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.sampled_from(["", " ", "10/s", "0/s", "1/0s", "x/s", "\x00", "\udc80"]),
    st.lists(st.integers(min_value=-2, max_value=3), max_size=3),
    st.tuples(st.integers(min_value=-9, max_value=9), st.text(max_size=2)),
    st.just(object()),
    st.just(bytearray(b"ab")),
    st.just(memoryview(b"ab")),
)
hostile: st.SearchStrategy[Any] = st.one_of(ordinary, st.sampled_from(HUGE_INTS))
keys = st.one_of(
    st.text(max_size=8),
    st.binary(max_size=8),
    st.integers(),
    st.sampled_from(HUGE_INTS),
    st.sampled_from(["", b"", 0, -1, True, "\udc80", "{x}", "a:b"]),
    hostile,
)
costs = st.one_of(st.integers(min_value=0, max_value=12), hostile)
nows = st.one_of(st.just(NOW), st.just(None), hostile)

# Words an error message about each argument must contain (the field).
FIELDS = (
    "cost",
    "now",
    "key",
    "limit",
    "period",
    "burst",
    "rate",
    "algorithm",
    "max_wait",
    "timeout",
    "max_keys",
    "duration",
    "real number",  # the C double argument of the compiled breaker's durations
    "clock",
    "sleep",
    "mode",
    "path",
)


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """`outcome` is what ``call`` did, comparable across twins: ("ok", the
    result in plain values) or ("error", type name, message). Any error
    but a ValueError or TypeError naming a field fails the test."""
    try:
        result = call()
    except (ValueError, TypeError) as error:
        refused: BaseException | None = error
    else:
        return ("ok", plain(result))
    message = str(refused)
    assert any(field in message for field in FIELDS), (
        f"{type(refused).__name__} names no field: {message!r}"
    )
    for python_own in ("not iterable", "Exceeds the limit", "object of type"):
        assert python_own not in message, message
    return ("error", type(refused).__name__, message)


def plain(value: Any) -> Any:
    """`plain` turns a decision, a reservation, an array into values that
    compare across implementations."""
    if isinstance(value, numpy.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    if isinstance(value, list):
        return [plain(item) for item in value]
    if hasattr(value, "allowed") and hasattr(value, "retry_after"):
        return ("decision", value.allowed, value.remaining, value.retry_after)
    if hasattr(value, "delay") and hasattr(value, "cancel"):
        return ("reservation", value.ok, value.delay)
    if value is None or isinstance(value, (bool, int, float, str, dict)):
        return value
    return ("object", type(value).__name__)  # a core, a permit: by kind


def same(
    compiled: Callable[[], Any], reference: Callable[[], Any], messages: bool = True
) -> None:
    """`same` requires both twins to do the same thing: the same result or
    the same error (with the same message, if ``messages``)."""
    one, other = outcome(compiled), outcome(reference)
    if not messages and one[0] == other[0] == "error":
        one, other = one[:2], other[:2]
    assert one == other


def subject_cores(compiled: Any, reference: Any, specs: Any) -> tuple[Any, Any]:
    return tuple(  # type: ignore[return-value]
        impl.module("engine._subject").LimiterCore(specs, lambda: NOW)
        for impl in (compiled, reference)
    )


def keyed_cores(compiled: Any, reference: Any, specs: Any) -> tuple[Any, Any]:
    secret = bytes(range(16))
    return tuple(  # type: ignore[return-value]
        impl.module("engine._keyed").KeyedLimiterCore(specs, 64, lambda: NOW, secret)
        for impl in (compiled, reference)
    )


LIMITS = lower_limits("5/s; 20/m", "gcra")[2]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(
    limits=st.one_of(hostile, st.lists(hostile, max_size=2)),
    period=hostile,
    burst=hostile,
    algorithm=hostile,
)
def test_configuration_refuses_with_documented_errors(
    limits, period, burst, algorithm
) -> None:
    outcome(lambda: Rate(limits, period))
    outcome(lambda: Rate(5, period, burst))
    outcome(lambda: parse(limits))
    outcome(lambda: lower_limits(limits, "gcra"))
    outcome(lambda: lower_limits("5/s", algorithm))
    outcome(lambda: Limiter(limits, burst=burst))  # type: ignore[call-overload]
    outcome(lambda: KeyedLimiter("5/s", max_keys=limits))
    outcome(lambda: Limiter("5/s", clock=period, sleep=burst))
    outcome(lambda: ShmBackend("fuzz-table", max_keys=limits, mode=period))


@FUZZ
@given(cost=costs, now=nows, max_wait=hostile)
def test_one_subject_verbs_agree_on_hostile_input(
    compiled, reference, cost, now, max_wait
) -> None:
    one, other = subject_cores(compiled, reference, LIMITS)
    same(lambda: one.try_acquire(cost, now), lambda: other.try_acquire(cost, now))
    same(lambda: one.decide(cost, now), lambda: other.decide(cost, now))
    same(
        lambda: one.reserve(cost, max_wait, now),
        lambda: other.reserve(cost, max_wait, now),
    )
    same(lambda: one.decide(0, NOW), lambda: other.decide(0, NOW))
    for impl in (compiled, reference):
        outcome(
            lambda impl=impl: impl.module("engine._subject").LimiterCore(
                LIMITS, max_wait=max_wait
            )
        )


@FUZZ
@given(key=keys, cost=costs, now=nows, max_wait=hostile)
def test_keyed_verbs_agree_on_hostile_input(
    compiled, reference, key, cost, now, max_wait
) -> None:
    one, other = keyed_cores(compiled, reference, LIMITS)
    same(
        lambda: one.try_acquire(key, cost, now),
        lambda: other.try_acquire(key, cost, now),
    )
    same(lambda: one.decide(key, cost, now), lambda: other.decide(key, cost, now))
    same(
        lambda: one.reserve(key, cost, max_wait, now),
        lambda: other.reserve(key, cost, max_wait, now),
    )
    same(lambda: one.reset(key), lambda: other.reset(key))
    same(lambda: one.decide(key, 0, NOW), lambda: other.decide(key, 0, NOW))
    same(lambda: one.stats(), lambda: other.stats())


batch_keys = st.one_of(
    hostile,
    st.lists(keys, max_size=4),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=4).map(
        lambda values: numpy.array(values, dtype=numpy.int64)
    ),
)
batch_costs = st.one_of(
    hostile,
    st.lists(costs, max_size=4),
    st.lists(st.integers(min_value=-2, max_value=4), max_size=4).map(numpy.array),
)


@FUZZ
@given(batch=batch_keys, spent=batch_costs, now=nows, waits=st.booleans())
def test_decide_many_agrees_on_hostile_input(
    compiled, reference, batch, spent, now, waits
) -> None:
    import_numpy()
    one, other = keyed_cores(compiled, reference, LIMITS)
    same(
        lambda: one.decide_many(batch, spent, now, waits),
        lambda: other.decide_many(batch, spent, now, waits),
    )
    same(lambda: one.stats(), lambda: other.stats())


@pytest.fixture(scope="module")
def shm_pair(compiled, reference) -> Iterator[tuple[Any, Any]]:
    """`shm_pair` is a keyed shared-memory core of each twin, each on its
    own table (a table refuses the other implementation)."""
    with tempfile.TemporaryDirectory() as directory:
        cores = tuple(
            shm_core(
                impl.name,
                ShmBackend(Path(directory) / impl.name, 256),
                Rate(5, 1.0),
                clock=lambda: NOW,
            )
            for impl in (compiled, reference)
        )
        yield cores  # type: ignore[misc]
        for core in cores:
            core.close()


@FUZZ
@given(key=keys, cost=costs, now=nows, batch=batch_keys, spent=batch_costs)
def test_shared_memory_verbs_agree_on_hostile_input(
    shm_pair, key, cost, now, batch, spent
) -> None:
    one, other = shm_pair
    same(
        lambda: one.try_acquire(key, cost, now),
        lambda: other.try_acquire(key, cost, now),
    )
    same(lambda: one.decide(key, cost, now), lambda: other.decide(key, cost, now))
    same(
        lambda: ShmKeyedLimiter.decide_many_decisions(one, batch, spent, now),
        lambda: ShmKeyedLimiter.decide_many_decisions(other, batch, spent, now),
    )
    same(lambda: one.reset(key), lambda: other.reset(key))


# A duration is a C double argument of the compiled breaker (its hot path):
# an int beyond a float's range is Python's OverflowError and an array of
# several numbers numpy's TypeError in both twins, left as they are.
durations = ordinary.filter(
    lambda value: not (isinstance(value, numpy.ndarray) and value.size != 1)
)


@FUZZ
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["success", "error", "release"]), durations, nows),
        max_size=6,
    )
)
def test_the_breaker_two_step_agrees_on_hostile_input(
    compiled, reference, steps
) -> None:
    config = BreakerConfig(minimum_calls=2, window_size=4)
    breakers = [
        make_breaker(impl, config, clock=ManualClock())
        for impl in (compiled, reference)
    ]

    def run(breaker: Any, kind: str, duration: Any, now: Any) -> Any:
        permit = breaker.permit_or_error(now)
        if not hasattr(permit, "on_success"):
            return ("open", type(permit).__name__)
        try:
            if kind == "success":
                permit.on_success(duration)
            elif kind == "error":
                permit.on_error(duration, RuntimeError("upstream"))
            else:
                permit.release(now)
        finally:
            if kind != "release":
                permit.release()  # a refused outcome leaves the permit held
        return breaker.state

    for kind, duration, now in steps:
        # The compiled breaker's durations are a C double argument, refused
        # by Cython's own message ("must be real number"): types only.
        same(
            partial(run, breakers[0], kind, duration, now),
            partial(run, breakers[1], kind, duration, now),
            messages=False,
        )
