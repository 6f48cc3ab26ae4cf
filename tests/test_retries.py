"""Retries: the shared planner, the retry budget, the built-in decorator
and the tenacity strategies, on manual clocks (tenacity and the decorator
take a ``sleep`` that moves the clock; nothing sleeps)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from tenacity import AsyncRetrying, Retrying, stop_after_attempt

from breaker_support import ManualClock, make_breaker
from ratefuse import (
    BackendError,
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    Limiter,
    Rate,
    RateLimitExceeded,
    deadline,
)
from ratefuse.bench.retry_budget import BOUND, CALLS, FORMS, retries_received
from ratefuse.breaker import BreakerConfig, State
from ratefuse.engine.subject import Decision
from ratefuse.retry import Backoff, RetryBudget, next_wait, retry
from ratefuse.retry.tenacity import (
    retry_if_budget,
    stop_before_deadline,
    wait_retry_after,
)

S = 1_000_000_000
MS = 1_000_000


def half() -> float:
    return 0.5


def denied(retry_after: float) -> RateLimitExceeded:
    return RateLimitExceeded(Decision(False, 0, retry_after, retry_after, 1))


class Sleeper:
    """`Sleeper` records sleeps and moves ``clock`` by them."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    async def sleep_async(self, seconds: float) -> None:
        self(seconds)
        await asyncio.sleep(0)


# ---- the planner ----


def test_the_planner_waits_retry_after_plus_jitter_else_the_fallback() -> None:
    assert next_wait(denied(0.2), 9.0, 0.1, half) == pytest.approx(0.21)
    assert next_wait(CircuitOpenError("b", 3.0), 9.0, 0.0, half) == 3.0
    assert next_wait(BulkheadFullError("b", 1, 0.0), 0.4, 0.1, half) == 0.4
    assert next_wait(ValueError(), 0.4, 0.1, half) == 0.4
    assert next_wait(denied(math.inf), 0.4, 0.1, half) is None
    assert next_wait(DeadlineExceeded("acquire", 1.0, 0.0, 1.0), 0.4, 0.1, half) is None


def test_the_planner_refuses_a_wait_that_cannot_fit_the_deadline() -> None:
    clock = ManualClock()
    with deadline(1.0, clock=clock):
        assert next_wait(CircuitOpenError("b", 5.0), 0.1, 0.0, half) is None
        assert next_wait(denied(0.99), 0.1, 0.1, half) == 1.0  # jitter cut
        assert next_wait(BackendError("down"), 2.0, 0.1, half) is None
        assert next_wait(BackendError("down"), 0.5, 0.1, half) == 0.5


def test_backoff_grows_to_its_maximum() -> None:
    backoff = Backoff(initial=0.1, multiplier=2.0, maximum=0.5)
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]
    with pytest.raises(ValueError, match="multiplier"):
        Backoff(multiplier=0.5)
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=math.nan)


# ---- the retry budget ----


@pytest.mark.parametrize(
    ("field", "value"),
    [("ratio", -0.1), ("min_per_second", math.inf), ("window", 0.0), ("ratio", "1")],
)
def test_a_bad_budget_is_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        RetryBudget(**{field: value})


def test_the_budget_allows_its_floor_then_a_share_of_the_calls() -> None:
    clock = ManualClock(S)
    budget = RetryBudget(ratio=0.5, min_per_second=0.2, window=10.0, clock=clock)
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]
    for _ in range(4):
        budget.record_call()
    assert (budget.calls(), budget.retries(), budget.allowed()) == (4, 2, 4.0)
    assert [budget.try_retry() for _ in range(3)] == [True, True, False]
    clock.advance(25.0)  # two windows later, all is forgotten
    assert (budget.calls(), budget.retries()) == (0, 0)


class AlwaysFailing:
    """`AlwaysFailing` is an upstream that fails every call it receives."""

    def __init__(self) -> None:
        self.received = 0

    def __call__(self) -> None:
        self.received += 1
        raise BackendError("upstream down")


@pytest.mark.parametrize("form", sorted(FORMS))
def test_the_budget_bounds_the_retries(form: str) -> None:
    # 1 ms per call for 10 s (from 1 s: the run straddles two windows):
    # at most 20% of the calls plus the floor of 10/s for the run and a
    # window, and the budget was used, not just refused.
    retries = retries_received(FORMS[form])
    assert 0.2 * CALLS <= retries <= BOUND == 0.2 * CALLS + 10 * (10 + 10)


# ---- the built-in decorator ----


def limited_call(clock: ManualClock) -> Any:
    limiter = Limiter(Rate(10, 1.0, 1), clock=clock)  # one every 100 ms

    def call() -> str:
        decision = limiter.decide()
        if not decision.allowed:
            raise RateLimitExceeded(decision)
        return "ok"

    return call


def test_retry_waits_the_rate_limits_retry_after() -> None:
    clock = ManualClock(S)
    sleeper = Sleeper(clock)
    call = retry(3, sleep=sleeper, rng=lambda: 0.0)(limited_call(clock))
    assert call() == "ok"
    assert call() == "ok"
    assert sleeper.sleeps == [pytest.approx(0.1)]


def test_retry_waits_an_open_breaker_to_its_probe(impl: Any) -> None:
    clock = ManualClock(S)
    breaker = make_breaker(impl, BreakerConfig(wait_duration=2.0), clock=clock)
    breaker.transition_to(State.OPEN)
    sleeper = Sleeper(clock)
    call = retry(2, sleep=sleeper, rng=lambda: 0.0)(breaker.decorate(lambda: "up"))
    assert call() == "up"
    assert sleeper.sleeps == [2.0]


def test_retry_gives_up_at_once_when_the_breaker_outlasts_the_deadline(
    impl: Any,
) -> None:
    clock = ManualClock(S)
    breaker = make_breaker(impl, BreakerConfig(wait_duration=5.0), clock=clock)
    breaker.transition_to(State.OPEN)
    sleeper = Sleeper(clock)
    call = retry(10, sleep=sleeper)(breaker.decorate(lambda: "up"))
    with deadline(2.0, clock=clock), pytest.raises(CircuitOpenError):
        call()
    assert sleeper.sleeps == []


def test_retry_does_not_retry_a_deadline_or_other_errors() -> None:
    attempts: list[int] = []

    @retry(5, sleep=lambda _: None)
    def late() -> None:
        attempts.append(1)
        raise DeadlineExceeded("acquire", 1.0, 0.0, 1.0)

    @retry(5, sleep=lambda _: None)
    def wrong() -> None:
        attempts.append(2)
        raise KeyError

    with pytest.raises(DeadlineExceeded):
        late()
    with pytest.raises(KeyError):
        wrong()
    assert attempts == [1, 2]


def test_retry_stops_after_its_attempts() -> None:
    upstream = AlwaysFailing()
    with pytest.raises(BackendError):
        retry(3, sleep=lambda _: None)(upstream)()
    assert upstream.received == 3


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"jitter": 2.0}, "jitter"),
        ({"retry_on": (1,)}, "retry_on"),
    ],
)
def test_a_bad_retry_is_refused_naming_the_field(options: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        retry(**options)


def test_retry_of_a_coroutine_function_waits_with_its_async_sleep() -> None:
    clock = ManualClock(S)
    sleeper = Sleeper(clock)
    call = limited_call(clock)

    @retry(3, async_sleep=sleeper.sleep_async, rng=lambda: 0.0)
    async def fetch() -> str:
        return call()

    async def main() -> None:
        assert await fetch() == "ok"
        assert await fetch() == "ok"

    asyncio.run(main())
    assert sleeper.sleeps == [pytest.approx(0.1)]


# ---- tenacity ----


def test_tenacity_waits_retry_after_with_its_own_sleep() -> None:
    clock = ManualClock(S)
    sleeper = Sleeper(clock)
    call = limited_call(clock)
    call()
    retrying = Retrying(
        wait=wait_retry_after(rng=lambda: 1.0, jitter=0.5),
        stop=stop_after_attempt(3),
        sleep=sleeper,
        reraise=True,
    )
    assert retrying(call) == "ok"
    assert sleeper.sleeps == [pytest.approx(0.15)]


def test_tenacity_falls_back_for_errors_without_retry_after() -> None:
    clock = ManualClock(S)
    sleeper = Sleeper(clock)
    upstream = AlwaysFailing()
    retrying = Retrying(
        wait=wait_retry_after(), stop=stop_after_attempt(3), sleep=sleeper, reraise=True
    )
    with pytest.raises(BackendError):
        retrying(upstream)
    assert sleeper.sleeps == [0.1, 0.2]  # wait_exponential(multiplier=0.1)


def test_tenacity_stops_when_the_breaker_outlasts_the_deadline(impl: Any) -> None:
    clock = ManualClock(S)
    breaker = make_breaker(impl, BreakerConfig(wait_duration=5.0), clock=clock)
    breaker.transition_to(State.OPEN)
    sleeper = Sleeper(clock)
    retrying = Retrying(
        wait=wait_retry_after(),
        stop=stop_after_attempt(10) | stop_before_deadline(),
        sleep=sleeper,
        reraise=True,
    )
    guarded = breaker.decorate(lambda: "up")
    with deadline(2.0, clock=clock), pytest.raises(CircuitOpenError):
        retrying(guarded)
    assert sleeper.sleeps == []
    # With time enough, it waits the breaker out and gets through.
    with deadline(10.0, clock=clock):
        assert retrying(guarded) == "up"
    assert sleeper.sleeps == [pytest.approx(5.0, rel=0.11)]


def test_tenacity_stops_on_a_deadline_exceeded() -> None:
    attempts: list[int] = []

    def late() -> None:
        attempts.append(1)
        raise DeadlineExceeded("acquire", 1.0, 0.0, 1.0)

    retrying = Retrying(stop=stop_before_deadline(), sleep=lambda _: None, reraise=True)
    with pytest.raises(DeadlineExceeded):
        retrying(late)
    assert attempts == [1]


def test_async_tenacity_with_the_budget_and_the_planner() -> None:
    clock = ManualClock(S)
    sleeper = Sleeper(clock)
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0, clock=clock)
    upstream = AlwaysFailing()

    async def call() -> None:
        upstream()

    async def main() -> None:
        retrying = AsyncRetrying(
            wait=wait_retry_after(),
            retry=retry_if_budget(budget),
            stop=stop_after_attempt(5) | stop_before_deadline(),
            sleep=sleeper.sleep_async,
            reraise=True,
        )
        with pytest.raises(BackendError):
            await retrying(call)

    asyncio.run(main())
    assert upstream.received == 2  # the budget's floor: one retry in 10 s
    assert sleeper.sleeps == [0.1]
