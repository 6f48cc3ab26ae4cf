"""Load shedding by priority: PriorityLimiter on both cores (a manual
clock, every algorithm), PriorityBulkhead with threads and tasks, and an
overload on each where critical work keeps its share while sheddable work
is refused first."""

from __future__ import annotations

import asyncio
import math
import random
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse import Rate
from ratefuse.protocols import is_keyed
from ratefuse.rates import build_specs
from ratefuse.shedding import (
    LoadShedError,
    Priority,
    PriorityBulkhead,
    PriorityLimiter,
    PriorityShares,
    parse_priority,
)
from web_support import ManualClock

SHEDDABLE, DEFAULT, CRITICAL = Priority.SHEDDABLE, Priority.DEFAULT, Priority.CRITICAL


def core(impl: Any, clock: ManualClock, rate: Rate, algorithm: str = "gcra") -> Any:
    return impl.module("engine._subject").LimiterCore(
        build_specs([rate], algorithm), clock
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (CRITICAL, CRITICAL),
        ("critical", CRITICAL),
        (b" Sheddable ", SHEDDABLE),
        ("2", CRITICAL),
        (0, SHEDDABLE),
        (None, DEFAULT),
        ("", DEFAULT),
        ("urgent", DEFAULT),
        (7, DEFAULT),
        (True, DEFAULT),
        (1.5, DEFAULT),
    ],
)
def test_parse_priority(value: object, expected: Priority) -> None:
    assert parse_priority(value) is expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sheddable": -1}, "sheddable must be between 0 and 100, got -1"),
        ({"critical": 101}, "critical must be between 0 and 100, got 101"),
        ({"default": 0.8}, "default must be an int percentage, got 0.8"),
        ({"default": 40}, "shares must not grow as the priority falls"),
    ],
)
def test_bad_shares_name_the_field_and_value(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PriorityShares(**options)


def test_allowances_round_down() -> None:
    shares = PriorityShares()
    assert [shares.allowance(p, 10) for p in Priority] == [5, 8, 10]
    assert [shares.allowance(p, 3) for p in Priority] == [1, 2, 3]


def test_each_priority_stops_at_its_share_of_the_burst(impl: Any) -> None:
    clock = ManualClock()
    limiter = PriorityLimiter(core(impl, clock, Rate(10, 10.0)))
    assert not is_keyed(limiter)
    # Sheddable: 5 of 10, then refused while 5 are left.
    assert [limiter.try_acquire(priority=SHEDDABLE) for _ in range(6)] == [True] * 5 + [
        False
    ]
    # Default: up to 8 in all, critical all 10.
    assert [limiter.try_acquire(priority=DEFAULT) for _ in range(4)] == [True] * 3 + [
        False
    ]
    assert [limiter.try_acquire(priority=CRITICAL) for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert limiter.stats().admitted == (5, 3, 2)
    assert limiter.stats().refused == (1, 1, 1)


def test_a_refusal_says_when_the_priority_could_pass(impl: Any) -> None:
    clock = ManualClock()
    limiter = PriorityLimiter(core(impl, clock, Rate(10, 10.0)))  # 1 unit / s
    for _ in range(5):
        assert limiter.try_acquire(priority=SHEDDABLE)
    decision = limiter.decide(priority=SHEDDABLE)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(1.0)  # one more unit refilled
    clock.advance(1.0)
    assert limiter.try_acquire(priority=SHEDDABLE)
    # More than its allowance: never at this priority.
    assert limiter.decide(6, SHEDDABLE).retry_after == math.inf
    # Cost 0 asks without consuming, at any priority.
    assert limiter.decide(0, CRITICAL).remaining == 5


@pytest.mark.parametrize(
    "algorithm", ["gcra", "fixed_window", "sliding_window", "sliding_log"]
)
def test_shedding_never_admits_more_than_the_limiter(impl: Any, algorithm: str) -> None:
    clock = ManualClock()
    plain = core(impl, clock, Rate(20, 1.0), algorithm)
    limiter = PriorityLimiter(core(impl, clock, Rate(20, 1.0), algorithm))
    draw = random.Random(5)
    admitted = plain_admitted = 0
    for _ in range(2000):
        clock.advance(draw.random() * 0.02)
        admitted += limiter.try_acquire(priority=Priority(draw.randrange(3)))
        plain_admitted += plain.try_acquire()
    assert admitted <= plain_admitted
    assert admitted >= 0.9 * plain_admitted  # critical still uses the headroom


def test_under_overload_critical_keeps_its_share_and_sheddable_goes_first(
    impl: Any,
) -> None:
    # 100/s with a burst of 100; every 10 ms (one unit refilled) there
    # arrive a sheddable and a default request, and a critical one every
    # fourth step: 2.25 times the capacity, in random order.
    clock = ManualClock()
    limiter = PriorityLimiter(core(impl, clock, Rate(100, 1.0)))
    draw = random.Random(11)
    demand = [0, 0, 0]
    admitted_late = [0, 0, 0]  # after the first second (the burst spent)
    for step in range(1000):
        clock.advance(0.01)
        arrivals = [SHEDDABLE, DEFAULT] + ([CRITICAL] if step % 4 == 0 else [])
        draw.shuffle(arrivals)
        for priority in arrivals:
            allowed = limiter.try_acquire(priority=priority)
            if step >= 100:
                demand[priority] += 1
                admitted_late[priority] += allowed
    assert admitted_late[CRITICAL] == demand[CRITICAL]  # all of it
    assert admitted_late[SHEDDABLE] == 0  # refused first, and entirely
    # Default gets the rest of the capacity, 100/s minus critical's 25/s,
    # and what was left of its allowance of the burst after the first
    # second (at most 30: it stops at 20 left, sheddable at 50).
    assert 0.75 * 900 - 5 <= admitted_late[DEFAULT] <= 0.75 * 900 + 30
    admitted, refused = limiter.stats().admitted, limiter.stats().refused
    assert sum(admitted) <= 100 + 1000  # burst + 10 s at 100/s
    assert refused[SHEDDABLE] > refused[DEFAULT] > refused[CRITICAL] == 0


def test_the_limiter_argument_is_checked() -> None:
    with pytest.raises(TypeError, match="limiter must have a decide method"):
        PriorityLimiter(object())
    with pytest.raises(TypeError, match="shares must be PriorityShares"):
        PriorityLimiter(core_stub(), {"sheddable": 10})  # type: ignore[arg-type]


def core_stub() -> Any:
    from ratefuse import Limiter

    return Limiter("1/s")


def test_bulkhead_allowances() -> None:
    bulkhead = PriorityBulkhead(10)
    assert bulkhead.allowances == (5, 8, 10)
    assert [bulkhead.try_acquire(SHEDDABLE) for _ in range(6)] == [True] * 5 + [False]
    assert [bulkhead.try_acquire(DEFAULT) for _ in range(4)] == [True] * 3 + [False]
    with pytest.raises(
        LoadShedError, match="SHEDDABLE request: 8 in use, SHEDDABLE may use 5"
    ):
        bulkhead.acquire(SHEDDABLE)
    with bulkhead.holding(CRITICAL):
        assert bulkhead.in_use == 9
    assert bulkhead.in_use == 8
    for _ in range(8):
        bulkhead.release()
    with pytest.raises(RuntimeError, match="released too many times"):
        bulkhead.release()
    assert bulkhead.stats().admitted == (5, 3, 1)
    assert bulkhead.stats().refused == (2, 1, 0)


@pytest.mark.parametrize(
    ("argument", "error"),
    [(0, "max_concurrent must be >= 1, got 0"), (2.0, "must be an int, got 2.0")],
)
def test_bulkhead_arguments_are_checked(argument: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        PriorityBulkhead(argument)


def test_a_slot_is_released_when_the_block_raises() -> None:
    bulkhead = PriorityBulkhead(1)
    with pytest.raises(KeyError), bulkhead.holding(CRITICAL):
        raise KeyError("x")
    assert bulkhead.in_use == 0


def test_threads_overload_the_bulkhead_and_critical_keeps_its_slots() -> None:
    # 60 threads, 20 of each priority in random order, each holding its
    # slot until all have tried: sheddable gets at most 5 of 10 slots,
    # default at most 8 in all, so critical always finds 2 or more.
    bulkhead = PriorityBulkhead(10)
    order = [priority for priority in Priority for _ in range(20)]
    random.Random(3).shuffle(order)
    tried = threading.Barrier(len(order) + 1)
    done = threading.Event()
    admitted = [0, 0, 0]
    lock = threading.Lock()

    def call(priority: Priority) -> None:
        try:
            with bulkhead.holding(priority):
                with lock:
                    admitted[priority] += 1
                tried.wait(10)
                done.wait(10)
        except LoadShedError:
            tried.wait(10)

    threads = [threading.Thread(target=call, args=(p,)) for p in order]
    for thread in threads:
        thread.start()
    tried.wait(10)
    assert sum(admitted) == 10  # full
    assert admitted[SHEDDABLE] <= 5
    assert admitted[CRITICAL] >= 2
    assert bulkhead.stats().refused[SHEDDABLE] >= 15
    done.set()
    for thread in threads:
        thread.join(10)
    assert bulkhead.in_use == 0


def test_tasks_share_the_bulkhead_and_cancellation_releases() -> None:
    bulkhead = PriorityBulkhead(2, PriorityShares(sheddable=50, default=50))

    async def run() -> None:
        hold = asyncio.Event()

        async def call(priority: Priority) -> None:
            async with bulkhead.holding_async(priority):
                await hold.wait()

        first = asyncio.create_task(call(DEFAULT))
        await asyncio.sleep(0)
        assert bulkhead.in_use == 1
        with pytest.raises(LoadShedError):
            await call(DEFAULT)
        second = asyncio.create_task(call(CRITICAL))
        await asyncio.sleep(0)
        assert bulkhead.in_use == 2
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert bulkhead.in_use == 1
        hold.set()
        await first
        assert bulkhead.in_use == 0

    asyncio.run(run())


def test_prometheus_samples() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from ratefuse import Limiter
    from ratefuse.metrics import RatefuseCollector

    limiter = PriorityLimiter(Limiter("2/s"))
    bulkhead = PriorityBulkhead(4)
    collector = RatefuseCollector()
    collector.add_limiter("api", limiter)
    collector.add_limiter("pool", bulkhead)
    prometheus = CollectorRegistry()
    prometheus.register(collector)
    limiter.try_acquire(priority=SHEDDABLE)
    limiter.try_acquire(priority=SHEDDABLE)
    bulkhead.try_acquire(CRITICAL)
    text = generate_latest(prometheus).decode()
    assert (
        'ratefuse_priority_limiter_requests_total{limiter="api",priority="sheddable",'
        'result="refused"} 1.0' in text
    )
    assert (
        'ratefuse_priority_bulkhead_requests_total{limiter="pool",priority="critical",'
        'result="admitted"} 1.0' in text
    )
    assert 'ratefuse_priority_bulkhead_in_use{limiter="pool"} 1.0' in text


def test_a_registry_limiter_keeps_its_shares_across_updates() -> None:
    # The config registry changes a limiter's rates in place, so a
    # PriorityLimiter around it applies its shares to the new capacity.
    from ratefuse.config import Registry

    clock = ManualClock()
    registry = Registry({"limiters": {"api": {"rate": "10/minute"}}}, clock=clock)
    limiter = PriorityLimiter(registry.limiter("api"))
    assert sum(limiter.try_acquire(priority=SHEDDABLE) for _ in range(20)) == 5
    registry.update({"limiters": {"api": {"rate": "40/minute"}}})
    clock.advance(60.0)
    assert sum(limiter.try_acquire(priority=SHEDDABLE) for _ in range(40)) == 20
    assert limiter.rates == registry.limiter("api").rates


@settings(max_examples=200, deadline=None)
@given(
    algorithm=st.sampled_from(
        ["gcra", "fixed_window", "sliding_window", "sliding_log"]
    ),
    shares=st.tuples(st.integers(0, 100), st.integers(0, 100), st.integers(0, 100)).map(
        sorted
    ),
    trace=st.lists(
        st.tuples(st.integers(0, 300), st.integers(0, 4), st.sampled_from(Priority)),
        max_size=120,
    ),
)
def test_every_decision_keeps_the_headroom_of_higher_priorities(
    impl: Any,
    algorithm: str,
    shares: list[int],
    trace: list[tuple[int, int, Priority]],
) -> None:
    # An admission at priority p leaves at least capacity - allowance(p)
    # units; a refusal changes nothing; CRITICAL with a share of 100 is
    # refused only when the limiter alone would refuse too.
    clock = ManualClock()
    limiter = PriorityLimiter(
        core(impl, clock, Rate(10, 1.0), algorithm),
        PriorityShares(critical=shares[2], default=shares[1], sheddable=shares[0]),
    )
    inner = limiter.limiter
    for advance_ms, cost, priority in trace:
        clock.advance(advance_ms / 1000)
        before = inner.decide(0)
        reserve = before.limit - limiter.shares.allowance(priority, before.limit)
        decision = limiter.decide(cost, priority)
        after = inner.decide(0)
        if decision.allowed:
            assert after.remaining >= reserve
            assert before.remaining >= cost + reserve
        else:
            assert after.remaining == before.remaining
            assert before.remaining < cost + reserve
