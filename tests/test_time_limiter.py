"""The time limiter: ``timeout=`` on the breaker's call forms, both cores.

The calls that must time out block on a real event that the test sets
afterwards; the timeouts are a few milliseconds of real waiting on it.
Nothing sleeps to let time pass: the breaker's clock is a manual one, and a
timed-out call is recorded with a duration of at least its timeout.
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest

from breaker_support import Boom, ManualClock, make_breaker
from ratefuse import (
    BulkheadFullError,
    CallTimeout,
    CircuitOpenError,
    DeadlineExceeded,
    deadline,
    remaining,
)
from ratefuse.breaker import BreakerConfig, State
from ratefuse.engine.breaker_forms import CallExecutor, TimedFunction

# Slow at 10 ms; one failed or slow call in a window of 4 is 25%.
CONFIG = BreakerConfig(
    window_size=4,
    minimum_calls=4,
    slow_call_duration=0.01,
    failure_rate_threshold=100.0,
    slow_call_rate_threshold=100.0,
)
SHORT = 0.02  # a timeout that expires: seconds of real waiting on an event
LONG = 30.0  # a timeout that does not (the test would hang before it)


class Blocked:
    """`Blocked` is a call that runs until released, and says when it ends."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.ended = threading.Event()
        self.deadline_seen: float | None = None

    def __call__(self, value: int = 1) -> int:
        self.deadline_seen = remaining()
        self.started.set()
        try:
            assert self.release.wait(LONG)
            return value
        finally:
            self.ended.set()


def test_a_sync_call_that_fits_returns_and_is_recorded(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG)
    calls: list[threading.Thread] = []

    @breaker.decorate(timeout=LONG)
    def double(x: int) -> int:
        """Doubles."""
        calls.append(threading.current_thread())
        return 2 * x

    assert isinstance(double, TimedFunction)
    assert (double.__name__, double.__doc__) == ("double", "Doubles.")
    assert double(4) == 8
    assert calls[0] is not threading.current_thread()  # a worker ran it

    @breaker.decorate(timeout=LONG)
    def boom() -> None:
        raise Boom

    with pytest.raises(Boom):
        boom()
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls, metrics.slow_calls) == (2, 1, 0)


def test_a_sync_call_that_times_out_is_abandoned_and_recorded(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG)
    blocked = Blocked()
    guarded = breaker.decorate(blocked, timeout=SHORT)
    with pytest.raises(CallTimeout) as timed_out:
        guarded(7)
    assert isinstance(timed_out.value, TimeoutError)
    assert timed_out.value.timeout == SHORT
    assert timed_out.value.name == "test"
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls, metrics.slow_calls) == (1, 1, 1)
    # The call runs on; when it returns, its result is dropped.
    assert not blocked.ended.is_set()
    blocked.release.set()
    assert blocked.ended.wait(LONG)
    assert breaker.metrics().calls == 1


def test_a_timeout_can_count_as_a_slow_success(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG)
    blocked = Blocked()
    guarded = breaker.decorate(blocked, timeout=SHORT, timeout_is_failure=False)
    with pytest.raises(CallTimeout):
        guarded()
    blocked.release.set()
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls, metrics.slow_calls) == (1, 0, 1)


def test_timeouts_open_the_breaker(impl: Any) -> None:
    config = BreakerConfig(window_size=2, minimum_calls=2, wait_duration=5.0)
    breaker = make_breaker(impl, config)
    blocked = Blocked()
    guarded = breaker.decorate(blocked, timeout=SHORT)
    for _ in range(2):
        with pytest.raises(CallTimeout):
            guarded()
    assert breaker.state == State.OPEN
    with pytest.raises(CircuitOpenError):
        guarded()
    blocked.release.set()


def test_a_full_executor_refuses_at_once_and_records_nothing(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG)
    executor = CallExecutor(1, name="one-worker")
    blocked = Blocked()
    guarded = breaker.decorate(blocked, timeout=SHORT, executor=executor)
    with pytest.raises(CallTimeout):
        guarded()
    assert executor.busy == 1  # the abandoned call still holds its worker
    with pytest.raises(BulkheadFullError) as full:
        guarded()
    assert full.value.name == "one-worker"
    assert breaker.metrics().calls == 1
    blocked.release.set()
    assert blocked.ended.wait(LONG)
    executor.shutdown()
    assert executor.busy == 0


def test_the_deadline_shortens_the_timeout_and_flows_into_the_worker(
    impl: Any,
) -> None:
    breaker = make_breaker(impl, CONFIG)
    blocked = Blocked()
    guarded = breaker.decorate(blocked, timeout=LONG)
    with deadline(SHORT), pytest.raises(CallTimeout) as timed_out:
        guarded()
    assert timed_out.value.timeout <= SHORT
    assert blocked.started.wait(LONG)  # a loaded machine may start it late
    assert blocked.deadline_seen is not None
    assert blocked.deadline_seen <= SHORT
    blocked.release.set()


def test_a_spent_deadline_refuses_before_taking_a_permit(impl: Any) -> None:
    clock = ManualClock()
    breaker = make_breaker(impl, CONFIG, clock=clock)
    guarded = breaker.decorate(lambda: 1, timeout=LONG)
    with deadline(0.0, clock=clock), pytest.raises(DeadlineExceeded) as refused:
        guarded()
    assert refused.value.what == "call"
    assert breaker.metrics().calls == 0


def test_call_with_timeout_and_the_fallback(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG, fallback=lambda *args: "fallback")
    assert breaker.call_with_timeout(LONG, divmod, 7, 2) == (3, 1)
    breaker.transition_to(State.OPEN)
    assert breaker.call_with_timeout(LONG, divmod, 7, 2) == "fallback"


def test_without_a_timeout_the_fast_form_is_unchanged(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG)
    plain = breaker.decorate(lambda: 1)
    assert type(plain) is type(breaker.guarded(lambda: 1))
    assert not isinstance(plain, TimedFunction)


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan, math.inf, "1"])
def test_a_bad_timeout_is_refused_naming_the_field(impl: Any, timeout: Any) -> None:
    breaker = make_breaker(impl, CONFIG)
    with pytest.raises(ValueError, match="timeout"):
        breaker.decorate(lambda: 1, timeout=timeout)


def test_generators_take_no_timeout(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG)

    def numbers() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        breaker.decorate(numbers, timeout=1.0)


def test_an_async_call_is_cancelled_at_the_timeout(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG)
    cancelled: list[bool] = []

    @breaker.decorate(timeout=SHORT)
    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def echo(x: int) -> int:
        await asyncio.sleep(0)
        return x

    quick = breaker.decorate(echo, timeout=LONG)

    async def main() -> None:
        with pytest.raises(CallTimeout):
            await stuck()
        assert await quick(5) == 5
        assert await breaker.call_with_timeout(LONG, echo, 6) == 6

    asyncio.run(main())
    assert cancelled == [True]
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls, metrics.slow_calls) == (3, 1, 1)


def test_an_async_caller_cancelled_cancels_the_call(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG)
    started = asyncio.Event
    cancelled: list[bool] = []

    async def main() -> None:
        begun = started()

        @breaker.decorate(timeout=LONG)
        async def stuck() -> None:
            begun.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        task = asyncio.ensure_future(stuck())
        await begun.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cancelled == [True]


def test_an_async_call_with_bad_arguments_records_its_error(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG)

    async def one(x: int) -> int:
        return x

    guarded = breaker.decorate(one, timeout=LONG)

    async def main() -> None:
        with pytest.raises(TypeError):
            await guarded(1, 2)  # type: ignore[call-arg]

    asyncio.run(main())
    assert breaker.metrics().calls == 1
