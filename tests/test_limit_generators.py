"""`@limiter.limit()` on generator and async generator functions, both
implementations (issue 21, item 6, the limiter half).

A rate limit on a generator counts iterations started, not generators
created: one acquire when iteration starts (the first ``next``/``send``, or
``__anext__``), none for a generator never iterated. An async generator
waits with ``acquire_async`` and never blocks the event loop with the sync
``acquire``. Everything else (items, send, throw, close, return values) is
the generator's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from typing import Any

import pytest

from ratefuse import RateLimitExceeded
from ratefuse.engine.forms import KeyedForms, SubjectForms
from ratefuse.rates import build_specs, to_rates
from test_waiting import ManualClock


def limiter(impl: Any, clock: ManualClock, keyed: bool = False) -> Any:
    """`limiter` is ``impl``'s one-subject (or keyed) core with the public
    forms, 1/s with burst 1, on ``clock``; its sync sleep fails the test, so
    an async form that blocks is caught."""

    def blocking_sleep(seconds: float) -> None:
        raise AssertionError(f"the event loop was blocked by sleep({seconds})")

    specs = build_specs(to_rates("1/s"), "gcra")
    options = {"max_wait": None, "sleep": blocking_sleep}
    options["async_sleep"] = clock.async_sleep
    if keyed:
        core = impl.module("engine._keyed").KeyedLimiterCore
        cls = type("KeyedLimiter", (KeyedForms, core), {})
        return cls(specs, 100, clock, None, **options)
    core = impl.module("engine._subject").LimiterCore
    return type("Limiter", (SubjectForms, core), {})(specs, clock, **options)


def remaining(limiter: Any, *key: Any) -> int:
    return limiter.decide(*key, 0).remaining  # type: ignore[no-any-return]


def test_a_generator_takes_its_units_when_iteration_starts(impl) -> None:
    clock = ManualClock()
    limited = limiter(impl, clock)
    closed: list[str] = []

    @limited.limit()
    def numbers(count: int) -> Generator[int, int | None, str]:
        """Yields count numbers; a sent value is added to the next."""
        try:
            extra = 0
            for number in range(count):
                extra = (yield number + extra) or 0
        finally:
            closed.append("closed")
        return "done"

    assert numbers.__name__ == "numbers"
    assert numbers.__doc__
    created = numbers(3)
    assert remaining(limited) == 1  # creating it took nothing
    assert next(created) == 0
    assert remaining(limited) == 0  # iteration started: one unit
    assert created.send(10) == 11
    assert next(created) == 2
    with pytest.raises(StopIteration) as stopped:
        next(created)
    assert stopped.value.value == "done"
    assert remaining(limited) == 0  # one unit for the whole iteration

    clock.now_ns += 10**9
    thrown = numbers(5)
    next(thrown)
    with pytest.raises(KeyError):
        thrown.throw(KeyError("into the generator"))
    assert closed == ["closed", "closed"]

    clock.now_ns += 10**9
    never = numbers(1)
    del never
    assert remaining(limited) == 1  # never iterated, never charged


def test_a_generator_denied_without_waiting_raises_at_its_first_next(impl) -> None:
    clock = ManualClock()
    limited = limiter(impl, clock)

    @limited.limit(wait=False)
    def letters() -> Generator[str, None, None]:
        yield "a"

    first, second = letters(), letters()  # neither is charged yet
    assert list(first) == ["a"]
    with pytest.raises(RateLimitExceeded):
        next(second)


def test_an_async_generator_waits_without_blocking_the_event_loop(impl) -> None:
    clock = ManualClock()
    limited = limiter(impl, clock)

    @limited.limit()
    async def ticks(count: int) -> AsyncGenerator[int, None]:
        for tick in range(count):
            yield tick

    async def scenario() -> list[list[int]]:
        created = ticks(2)
        assert remaining(limited) == 1  # creating it took nothing
        first = [tick async for tick in created]
        # The second iteration must wait 1 s for its unit: asynchronously.
        second = [tick async for tick in ticks(3)]
        return [first, second]

    assert asyncio.run(scenario()) == [[0, 1], [0, 1, 2]]
    assert clock.sleeps == [1.0]
    assert clock.now_ns == 10**9


def test_an_async_generator_forwards_asend_athrow_and_aclose(impl) -> None:
    clock = ManualClock()
    limited = limiter(impl, clock, keyed=True)
    events: list[Any] = []

    @limited.limit(lambda user, count: user)
    async def echo(user: str, count: int) -> AsyncGenerator[Any, Any]:
        try:
            received = None
            for _ in range(count):
                try:
                    received = yield received
                except KeyError as error:
                    events.append(("caught", error.args[0]))
                    received = "recovered"
        finally:
            events.append("closed")

    async def scenario() -> None:
        talk = echo("ann", 10)
        assert remaining(limited, "ann") == 1
        assert await talk.asend(None) is None
        assert remaining(limited, "ann") == 0  # the key of the call's arguments
        assert remaining(limited, "bob") == 1
        assert await talk.asend("hello") == "hello"
        assert await talk.athrow(KeyError("boom")) == "recovered"
        await talk.aclose()
        assert events == [("caught", "boom"), "closed"]
        with pytest.raises(StopAsyncIteration):
            await talk.__anext__()
        # A second generator of the same key must wait for it.
        again = echo("ann", 1)
        assert await again.__anext__() is None
        await again.aclose()

    asyncio.run(scenario())
    assert clock.sleeps == [1.0]


def test_an_async_generator_denied_without_waiting_raises_at_first_anext(
    impl,
) -> None:
    clock = ManualClock()
    limited = limiter(impl, clock)

    @limited.limit(wait=False)
    async def one() -> AsyncGenerator[int, None]:
        yield 1

    async def scenario() -> None:
        first, second = one(), one()
        assert [item async for item in first] == [1]
        with pytest.raises(RateLimitExceeded):
            await second.__anext__()

    asyncio.run(scenario())
    assert clock.sleeps == []
