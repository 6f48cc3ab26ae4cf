"""Bad input, both implementations: every refusal is a ValueError or a
TypeError that names the field, never Python's own OverflowError, "not
iterable" or int-to-str error, and the twins refuse alike (issue 21, item
16)."""

from __future__ import annotations

import math
from typing import Any

import numpy
import pytest

from breaker_support import make_breaker
from ratefuse import KeyedLimiter, Limiter, Rate, RateLimitExceeded, parse
from ratefuse.core import implementation as _impl
from ratefuse.rates import build_specs, to_rates
from ratefuse.shm import ShmBackend, ShmKeyedLimiter
from shm_support import core as shm_core

HUGE = 10**5000  # above the 4,300 digits Python prints


def _id(value: object) -> str:
    # A test id: pytest's own str() of a huge int raises.
    if isinstance(value, int) and value.bit_length() > 64:
        return f"int of {value.bit_length()} bits"
    return repr(value)[:40]


def keyed(impl: Any, limits: str = "10/s") -> Any:
    """`keyed` is an in-memory keyed core of ``impl``."""
    specs = build_specs(to_rates(limits), "gcra")
    return impl.module("engine._keyed").KeyedLimiterCore(specs, 1000)


def subject(impl: Any, limits: str = "10/s") -> Any:
    """`subject` is a one-subject core of ``impl``."""
    return impl.module("engine._subject").LimiterCore(
        build_specs(to_rates(limits), "gcra")
    )


@pytest.mark.parametrize(
    ("period", "match"),
    [
        (1e300, "period must be between 1 ns and"),
        (1e20, "period must be between 1 ns and"),
        (10**40, "period must be between 1 ns and"),
        (float("inf"), "period must be finite and > 0"),
        (float("nan"), "period must be finite and > 0"),
        (-1e300, "period must be finite and > 0"),
        (1e-300, "period must be between 1 ns and"),
        ("1", "period must be a number of seconds"),
    ],
)
def test_a_rate_with_an_unrepresentable_period_is_a_value_error(
    period: Any, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Rate(10, period)


def test_a_rate_with_a_huge_limit_or_burst_names_it_without_printing_it() -> None:
    with pytest.raises(ValueError, match=r"limit must be in .* an int of 16610 bits"):
        Rate(HUGE)
    with pytest.raises(
        ValueError, match=r"burst must be in .* a negative int of 16610 bits"
    ):
        Rate(10, 1.0, burst=-HUGE)
    with pytest.raises(ValueError, match="limit must be in"):
        parse("9" * 5000 + "/s")


@pytest.mark.parametrize(
    ("limits", "match"),
    [
        (None, "limits must be a rate string .* got None"),
        (10, "limits must be a rate string .* got 10"),
        (1.5, "limits must be a rate string .* got 1.5"),
        (b"10/s", r"got b'10/s' \(decode it to a str\)"),
        (bytearray(b"10/s"), "limits must be a rate string"),
        ([b"10/s"], "limits must be rate strings or Rate, got b'10/s'"),
        ([], "limits names no rate"),
        ("", "rate text names no rate"),
        ("x" * 10_000, r"cannot parse rate 'xxx.*\.\.\. \(10002 characters\)"),
    ],
)
def test_bad_limits_are_a_value_error_naming_them(limits: Any, match: str) -> None:
    for build in (Limiter, KeyedLimiter):
        with pytest.raises(ValueError, match=match):
            build(limits)


def test_burst_as_a_keyword_points_to_the_rate_that_means_it(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"pass Limiter\(Rate\(10, 1.0, burst=20\)\)"):
        Limiter("10/s", burst=20)  # type: ignore[call-overload]
    with pytest.raises(
        TypeError, match=r"pass KeyedLimiter\(Rate\(100, 60.0, burst=5\)\)"
    ):
        KeyedLimiter("100/minute", burst=5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"Rate\(limit, period, burst=20\)"):
        Limiter("10/s; 100/h", burst=20)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"pass Rate\(10, 1.0, burst=20\) as the"):
        ShmBackend(tmp_path / "t").keyed_limiter("10/s", burst=20)
    Limiter(Rate(10, 1, burst=20))  # the form the messages point to


def test_a_cost_above_capacity_says_it_can_never_be_admitted() -> None:
    limiter = Limiter("10/s")
    with pytest.raises(RateLimitExceeded) as raised:
        limiter.acquire(cost=11)
    assert math.isinf(raised.value.retry_after)
    assert str(raised.value) == (
        "rate limit exceeded: the cost can never be admitted, it is above the "
        "capacity 10"
    )
    assert "inf" not in str(raised.value)


def test_huge_int_keys_are_keys_in_both_twins(impl, tmp_path) -> None:
    core = keyed(impl, "1/h")
    for key in (HUGE, -HUGE, 2**63, -(2**63) - 1):
        assert core.try_acquire(key, 1, 0)
        assert not core.try_acquire(key, 1, 0)
    assert core.try_acquire(HUGE + 1, 1, 0)  # a neighbour is another key
    assert core.decide_many([HUGE, 10**6000], None, 0).tolist() == [False, True]
    shm = shm_core(impl.name, ShmBackend(tmp_path / "t"), Rate(1, 3600.0))
    assert shm.try_acquire(HUGE, 1, 0)
    assert not shm.try_acquire(HUGE, 1, 0)
    assert shm.try_acquire(-HUGE, 1, 0)


def test_huge_ints_in_messages_are_described_not_printed(impl) -> None:
    core = subject(impl)
    for value, match in (
        (HUGE, r"cost must be in \[0, 2\*\*63\), got an int of 16610 bits"),
        (-HUGE, "cost must be >= 0, got a negative int of 16610 bits"),
    ):
        with pytest.raises(ValueError, match=match):
            core.try_acquire(value, now=0)
    with pytest.raises(ValueError, match=r"now must be in .* an int of 16610 bits"):
        core.decide(1, now=HUGE)
    from ratefuse.core.args import shown

    assert shown(2**255 - 1) == repr(2**255 - 1)
    assert shown(2**255) == "an int of 256 bits"


@pytest.mark.parametrize(
    ("costs", "error", "match"),
    [
        (1.5, ValueError, "costs must be None, an int, or one int per key, got 1.5"),
        ("ab", ValueError, "costs must be None, an int, or one int per key"),
        (b"\x01\x01", ValueError, "costs must be None, an int, or one int per key"),
        (object(), ValueError, "costs must be None, an int, or one int per key"),
        ([1], ValueError, "costs must have one cost per key: got 1 for 2 keys"),
        ([1, -1], ValueError, "cost must be >= 0, got -1"),
        ([1, 1.5], ValueError, "cost must be an int, got 1.5"),
        (numpy.array([1.5, 1.0]), ValueError, "cost must be an int, got 1.5"),
        (numpy.array([1, -2]), ValueError, "cost must be >= 0, got -2"),
        (-1, ValueError, "cost must be >= 0, got -1"),
        (HUGE, ValueError, "cost must be in .* an int of 16610 bits"),
    ],
    ids=lambda value: _id(value),
)
def test_decide_many_refuses_bad_costs_alike(impl, costs, error, match) -> None:
    core = keyed(impl)
    with pytest.raises(error, match=match):
        core.decide_many(["a", "b"], costs, 0)
    assert core.stats()["live_keys"] == 0  # nothing was decided


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ("ab", "keys must be a sequence of keys or a numpy int64 array, got 'ab'"),
        (b"ab", "keys must be a sequence of keys"),
        (5, "keys must be a sequence of keys or a numpy int64 array, got 5"),
        (None, "keys must be a sequence of keys"),
        (numpy.int64(5), "keys must be a sequence of keys"),
        (numpy.array(5), "keys must be a sequence of keys"),
        ([None], "key must be str, bytes or int, got NoneType"),
        (["a", 1.5], "key must be str, bytes or int, got float"),
    ],
)
def test_decide_many_refuses_bad_keys_alike(impl, keys, match) -> None:
    core = keyed(impl)
    with pytest.raises(TypeError, match=match):
        core.decide_many(keys, None, 0)
    assert core.stats()["live_keys"] == 0


def test_decide_many_checks_keys_before_costs_in_both_twins(impl) -> None:
    # The twins disagreed here: the reference checked the costs first.
    with pytest.raises(TypeError, match="key must be str, bytes or int"):
        keyed(impl).decide_many([None], [-1], 0)


def test_shm_decide_many_checks_its_arguments_as_the_in_memory_one(
    impl, tmp_path
) -> None:
    limiter = shm_core(impl.name, ShmBackend(tmp_path / "t"), Rate(10, 1.0))
    # The public class's batch, on this implementation's core.
    decide_many = ShmKeyedLimiter.decide_many_decisions
    with pytest.raises(ValueError, match="costs must be None, an int, or one"):
        decide_many(limiter, ["a", "b"], 1.5, 0)
    with pytest.raises(TypeError, match="keys must be a sequence of keys"):
        decide_many(limiter, "ab", None, 0)
    with pytest.raises(TypeError, match="key must be str, bytes or int"):
        decide_many(limiter, ["a", None], [-1, 1], 0)
    assert limiter.decide("a", 0, 0).remaining == 10  # nothing was decided
    decided = decide_many(limiter, ["a", "b"], numpy.int64(3), 0)
    assert [decision.remaining for decision in decided] == [7, 7]


def test_integer_like_durations_are_accepted_by_both_breaker_twins(impl) -> None:
    breaker = make_breaker(impl)
    for duration in (numpy.int64(2), numpy.float32(0.5), 2, True):
        breaker.permit_or_error().on_success(duration)
    with pytest.raises(TypeError):
        breaker.permit_or_error().on_success("1")
    with pytest.raises(ValueError, match="duration must be >= 0 seconds"):
        breaker.permit_or_error().on_error(numpy.int64(-1), None)


def test_the_implementations_under_test_are_both_present() -> None:
    assert _impl.IMPLEMENTATION in ("cython", "python")


def test_huge_int_waits_are_a_value_error_naming_them(impl) -> None:
    # float() of them is an OverflowError wherever the bound is used.
    specs = build_specs(to_rates("1/s"), "gcra")
    subject = impl.module("engine._subject").LimiterCore
    with pytest.raises(ValueError, match=r"max_wait must be at most .* an int of"):
        subject(specs, max_wait=HUGE)
    core = subject(specs, max_wait=10**300)  # a float can hold it: no bound
    assert core.reserve(1, 10**300, 0).ok
    with pytest.raises(ValueError, match=r"max_wait must be at most .* an int of"):
        core.reserve(1, HUGE, 0)
    with pytest.raises(ValueError, match=r"timeout must be at most .* an int of"):
        core.acquire(0, timeout=HUGE)
    with pytest.raises(ValueError, match="timeout must be >= 0 seconds, got a neg"):
        core.acquire(0, timeout=-HUGE)
    core.acquire(0, timeout=10**300)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ShmBackend("t", mode=HUGE),
        lambda: ShmBackend(HUGE),
        lambda: ShmBackend("t", max_keys=HUGE),
        lambda: KeyedLimiter("1/s", max_keys=HUGE),
        lambda: Limiter("1/s", clock=HUGE),
        lambda: Limiter("1/s", algorithm=HUGE),  # type: ignore[arg-type]
        lambda: Limiter(numpy.array(5)),
    ],
)
def test_every_configuration_message_survives_a_huge_value(build) -> None:
    with pytest.raises(ValueError, match=r"an int of 16610 bits|got array"):
        build()
