"""Generators and async generators hold a breaker permit or a bulkhead slot
through their iteration (issue 21, item 6).

The breaker recorded success when the generator was created, so failures
during iteration were never counted, and the bulkhead released its slot
before the first item. Both now hold from the first ``next()`` to the end
and report the end on every exit path: exhaustion, an exception, an early
close.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from breaker_support import Boom, ManualClock, make_breaker
from ratefuse.breaker import BreakerConfig, CircuitBreaker, State
from ratefuse.bulkhead import Bulkhead
from ratefuse.core.errors import CircuitOpenError


def breaker_of(impl: Any) -> CircuitBreaker:
    """`breaker_of` opens on the first failure (window 10, minimum 1)."""
    config = BreakerConfig(
        window_size=10, minimum_calls=1, wait_duration=1, half_open_calls=1
    )
    return make_breaker(impl, config, clock=ManualClock())


def items(fail_at: int | None = None) -> Iterator[int]:
    for index in range(3):
        if index == fail_at:
            raise Boom
        yield index


async def async_items(fail_at: int | None = None) -> AsyncIterator[int]:
    for index in range(3):
        await asyncio.sleep(0)
        if index == fail_at:
            raise Boom
        yield index


def drain_async(iterator: AsyncIterator[int], take: int | None = None) -> list[int]:
    async def run() -> list[int]:
        seen = []
        async for item in iterator:
            seen.append(item)
            if len(seen) == take:
                await iterator.aclose()  # type: ignore[attr-defined]
                break
        return seen

    return asyncio.run(run())


def test_a_failure_during_iteration_opens_the_breaker(impl: Any) -> None:
    breaker = breaker_of(impl)
    generator = breaker(items)(fail_at=1)
    assert breaker.metrics().calls == 0  # nothing recorded at creation
    with pytest.raises(Boom):
        list(generator)
    assert breaker.state == State.OPEN


def test_a_failure_during_async_iteration_opens_the_breaker(impl: Any) -> None:
    breaker = breaker_of(impl)
    with pytest.raises(Boom):
        drain_async(breaker(async_items)(fail_at=1))
    assert breaker.state == State.OPEN


def test_exhaustion_and_an_early_close_record_one_success(impl: Any) -> None:
    breaker = breaker_of(impl)
    assert list(breaker(items)()) == [0, 1, 2]
    generator = breaker(items)()
    assert next(generator) == 0
    generator.close()
    assert drain_async(breaker(async_items)(), take=1) == [0]
    assert drain_async(breaker.call(async_items)) == [0, 1, 2]
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls) == (4, 0)


def test_a_probe_is_held_while_iterating_and_its_end_decides(impl: Any) -> None:
    breaker = breaker_of(impl)
    breaker.transition_to(State.OPEN)
    breaker.clock.advance(1)  # type: ignore[union-attr]
    generator = breaker(items)()
    assert next(generator) == 0
    assert breaker.state == State.HALF_OPEN
    assert breaker.try_acquire() is None  # the one probe is out
    generator.close()
    assert breaker.state == State.CLOSED


def test_a_rejected_generator_raises_at_the_first_next(impl: Any) -> None:
    breaker = breaker_of(impl)
    breaker.force_open()
    generator = breaker(items)()
    with pytest.raises(CircuitOpenError):
        next(generator)
    guarded = breaker.decorate(items, fallback=lambda: iter([9]))
    assert list(guarded()) == [9]


def test_a_generator_holds_a_bulkhead_slot_until_it_ends() -> None:
    bulkhead = Bulkhead(max_concurrent=1)
    generator = bulkhead(items)()
    assert bulkhead.in_use == 0  # nothing held at creation
    assert next(generator) == 0
    assert bulkhead.in_use == 1
    generator.close()
    assert bulkhead.in_use == 0
    with pytest.raises(Boom):
        list(bulkhead(items)(fail_at=2))
    assert bulkhead.in_use == 0
    assert list(bulkhead(items)()) == [0, 1, 2]
    assert bulkhead.in_use == 0


def test_an_async_generator_holds_a_bulkhead_slot_until_it_ends() -> None:
    bulkhead = Bulkhead(max_concurrent=1)
    seen_in_use = []

    async def run() -> None:
        async for _ in bulkhead(async_items)():
            seen_in_use.append(bulkhead.in_use)
        assert bulkhead.in_use == 0
        with pytest.raises(Boom):
            async for _ in bulkhead(async_items)(fail_at=1):
                pass
        assert bulkhead.in_use == 0
        iterator = bulkhead(async_items)()
        assert await iterator.__anext__() == 0
        assert bulkhead.in_use == 1
        await iterator.aclose()  # type: ignore[attr-defined]

    asyncio.run(run())
    assert seen_in_use == [1, 1, 1]
    assert bulkhead.in_use == 0


def test_send_and_throw_reach_the_inner_generator(impl: Any) -> None:
    def echo() -> Iterator[Any]:
        received = yield "ready"
        try:
            yield received
        except KeyError:
            yield "caught"

    breaker = breaker_of(impl)
    generator = breaker(echo)()
    assert next(generator) == "ready"
    assert generator.send(5) == 5
    assert generator.throw(KeyError()) == "caught"
    generator.close()
    assert breaker.metrics().calls == 1
