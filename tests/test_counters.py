"""Counters kept inside the cores, on both implementations: every verdict
is counted once, by outcome, through every verb; the counters survive reset
and reconfigure; and the two implementations count alike on random traces."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breaker_support import Boom, ManualClock, make_breaker
from ratefuse.breaker import BreakerConfig, State
from ratefuse.core.counters import BreakerCounters, LimiterCounters
from ratefuse.core.errors import RateLimitExceeded
from ratefuse.rates import Rate, build_specs, to_rates
from ratefuse.shm import ShmBackend
from shm_support import core as shm_core

numpy = pytest.importorskip("numpy")

S = 1_000_000_000


def specs(limits: str, algorithm: str = "gcra") -> Any:
    return build_specs(to_rates(limits), algorithm)


def test_limiter_counts_every_verb(impl) -> None:
    limiter = impl.module("engine._subject").LimiterCore(specs("2/s"))
    assert limiter.counters() == LimiterCounters(0, 0)
    assert [limiter.try_acquire(now=0) for _ in range(3)] == [True, True, False]
    assert not limiter.decide(now=0).allowed
    assert not limiter.reserve(max_wait=0.0, now=0).ok
    assert limiter.reserve(now=0).ok  # scheduled ahead: allowed, with a delay
    assert limiter.try_acquire(0, now=0) is False  # a cost-0 ask is a verdict too
    counted = limiter.counters()
    assert counted == LimiterCounters(allowed=3, denied=4)
    assert counted.decisions == 7
    limiter.reset()
    assert limiter.counters() == counted  # counters only grow


def test_limiter_acquire_counts_its_reservations(impl) -> None:
    limiter = impl.module("engine._subject").LimiterCore(specs("1/s"), clock=lambda: 0)
    limiter.acquire()
    assert limiter.counters() == LimiterCounters(1, 0)
    with pytest.raises(RateLimitExceeded):
        limiter.acquire(timeout=0.0)
    assert limiter.counters() == LimiterCounters(1, 1)


def test_keyed_counts_single_keys_and_batches(impl) -> None:
    keyed = impl.module("engine._keyed").KeyedLimiterCore(specs("2/s"), 64)
    assert [keyed.try_acquire("a", now=0) for _ in range(3)] == [True, True, False]
    assert keyed.decide("b", now=0).allowed
    keys = numpy.array([1, 1, 1, 2], dtype=numpy.int64)
    assert keyed.decide_many(keys, now=0).tolist() == [True, True, False, True]
    assert keyed.decide_many(["a", "b", "c"], now=0).tolist() == [False, True, True]
    assert keyed.reserve("z", now=0).ok
    assert keyed.counters() == LimiterCounters(allowed=9, denied=3)


def test_shm_counts_this_process(impl, tmp_path) -> None:
    backend = ShmBackend(tmp_path / "table", max_keys=64)
    keyed = shm_core(impl.name, backend, Rate(2, 1.0))
    other = shm_core(impl.name, backend, Rate(2, 1.0))
    assert [keyed.try_acquire("k", now=0) for _ in range(3)] == [True, True, False]
    assert not other.decide("k", now=0).allowed  # same table, other counters
    assert keyed.reserve("j", now=0).ok
    assert keyed.counters() == LimiterCounters(3, 1)
    assert other.counters() == LimiterCounters(0, 1)
    keyed.close()
    other.close()


def test_breaker_counts_calls_outcomes_and_transitions(impl) -> None:
    config = BreakerConfig(
        minimum_calls=2,
        window_size=2,
        wait_duration=1.0,
        half_open_calls=1,
        slow_call_duration=0.5,
    )
    clock = ManualClock()
    breaker = make_breaker(impl, config, clock=clock)
    breaker.try_acquire().on_success(0.9)  # slow, and a success
    breaker.try_acquire().on_error(0.0, Boom())  # 50%: opens
    assert breaker.state == State.OPEN
    assert breaker.try_acquire() is None
    clock.advance(1.0)
    probe = breaker.try_acquire()  # HALF_OPEN
    assert breaker.try_acquire() is None  # the round is full
    probe.on_success(0.0)  # closes
    breaker.reset()  # CLOSED to CLOSED: no transition; counters stay
    assert breaker.counters() == BreakerCounters(
        permitted=3,
        successes=2,
        failures=1,
        slow=1,
        rejected=2,
        transitions=(1, 1, 1, 0, 0),
    )


def test_breaker_ignored_and_stale_outcomes_are_not_counted(impl) -> None:
    config = BreakerConfig(
        ignore_exceptions=(KeyError,), minimum_calls=1, window_size=1
    )
    breaker = make_breaker(impl, config)
    breaker.try_acquire().on_error(0.0, KeyError("ignored"))
    stale = breaker.try_acquire()
    breaker.transition_to(State.DISABLED)
    stale.on_error(0.0, Boom())  # an older generation: ignored
    breaker.try_acquire().on_error(0.0, Boom())  # DISABLED records nothing
    counted = breaker.counters()
    assert (counted.permitted, counted.successes, counted.failures) == (3, 0, 0)
    assert counted.transitions[State.DISABLED] == 1


# --- reconfigure -----------------------------------------------------------


def test_reconfigure_keeps_gcra_state(impl) -> None:
    limiter = impl.module("engine._subject").LimiterCore(specs("4/s"))
    assert all(limiter.try_acquire(now=0) for _ in range(4))
    limiter.reconfigure(specs("8/s"))
    # tat is 1 s ahead: the new 8/s has tau 1 s, so it is full too.
    assert not limiter.try_acquire(now=0)
    assert limiter.try_acquire(now=S // 8)
    assert limiter.decide(0, now=S // 8).limit == 8
    assert limiter.counters() == LimiterCounters(6, 1)  # the cost-0 decide too


@pytest.mark.parametrize(
    ("before", "after", "kept"),
    [
        (("2/s", "fixed_window"), ("3/s", "fixed_window"), True),
        (("2/s", "fixed_window"), ("2/2s", "fixed_window"), False),  # new period
        (("2/s", "gcra"), ("2/s", "sliding_window"), False),  # new algorithm
        (("2/s", "gcra"), ("2/s; 10/min", "gcra"), False),  # new number of limits
        (("2/s", "sliding_log"), ("3/s", "sliding_log"), False),  # new log size
    ],
)
def test_reconfigure_starts_anew_when_state_changes_meaning(
    impl, before: tuple[str, str], after: tuple[str, str], kept: bool
) -> None:
    single = impl.module("engine._subject").LimiterCore(specs(*before))
    keyed = impl.module("engine._keyed").KeyedLimiterCore(specs(*before), 64)
    assert single.try_acquire(2, now=0)
    assert keyed.try_acquire("k", 2, now=0)
    old_single = single.reserve(0, now=0)
    single.reconfigure(specs(*after))
    keyed.reconfigure(specs(*after))
    capacity = specs(*after)[0].capacity
    expected = capacity - 2 if kept else capacity
    assert single.decide(0, now=0).remaining == expected
    assert keyed.decide("k", 0, now=0).remaining == expected
    old_single.cancel()  # refunds nothing, raises nothing, across a new layout
    assert single.decide(0, now=0).remaining == expected


def test_reconfigure_rejects_bad_specs_and_changes_nothing(impl) -> None:
    for core in (
        impl.module("engine._subject").LimiterCore(specs("2/s")),
        impl.module("engine._keyed").KeyedLimiterCore(specs("2/s"), 64),
    ):
        with pytest.raises(ValueError, match="at least one limit"):
            core.reconfigure(())
        assert core._specs == specs("2/s")


def test_keyed_reconfigure_keeps_evictions_and_max_keys(impl) -> None:
    keyed = impl.module("engine._keyed").KeyedLimiterCore(specs("1/h"), 2)
    for key in range(5):
        keyed.try_acquire(key, now=0)
    before = keyed.stats()
    keyed.reconfigure(specs("1/s", "fixed_window"))  # a new layout: empty table
    after = keyed.stats()
    assert after["live_keys"] == 0
    assert after["max_keys"] == 2
    assert after["evictions"] == before["evictions"] > 0


def test_breaker_reconfigure_keeps_state_and_window(impl) -> None:
    breaker = make_breaker(impl, BreakerConfig(minimum_calls=4, window_size=10))
    for _ in range(3):
        breaker.try_acquire().on_error(0.0, Boom())
    breaker.reconfigure(BreakerConfig(minimum_calls=3, window_size=10))
    assert breaker.metrics().calls == 3  # window kept
    breaker.try_acquire().on_success(0.0)  # 3/4 failed, minimum now met
    assert breaker.state == State.OPEN
    generation = breaker.generation
    breaker.reconfigure(
        BreakerConfig(minimum_calls=3, window_size=5, wait_duration=2.0)
    )
    assert breaker.state == State.OPEN
    assert breaker.generation == generation
    assert breaker.retry_after() == 2.0  # the base wait follows the config
    with pytest.raises(TypeError, match="BreakerConfig"):
        breaker.reconfigure({"minimum_calls": 3})


def test_calls_running_when_slow_tracking_is_switched_on_are_not_slow(impl) -> None:
    """A call started while slow-call tracking was off read no clock; once
    an update switches tracking on, it must not be timed from 0 (on the
    monotonic clock: the uptime), which made every call in flight slow and
    could open the breaker on a config reload."""
    clock = ManualClock(3_600 * S)  # an hour of uptime
    untimed = BreakerConfig(minimum_calls=2, window_size=2)
    breaker = make_breaker(impl, untimed, clock=clock)
    guard = breaker.guard()
    guard.__enter__()
    seen: list[bool] = []

    def work(inner: Any) -> None:
        inner.__enter__()
        seen.append(True)
        breaker.reconfigure(
            BreakerConfig(
                minimum_calls=2,
                window_size=2,
                slow_call_duration=1.0,
                slow_call_rate_threshold=50,
            )
        )
        clock.advance(0.1)
        inner.__exit__(None, None, None)

    breaker.call(work, breaker.guard())  # a guarded call around a guarded block
    guard.__exit__(None, None, None)
    assert seen == [True]
    assert breaker.counters().slow == 0
    assert breaker.state == State.CLOSED
    # Calls started after the switch are timed as usual.
    with breaker.guard():
        clock.advance(2.0)
    assert breaker.counters().slow == 1


# --- the two implementations count alike -------------------------------------

STEPS = st.lists(
    st.tuples(
        st.sampled_from(["try", "decide", "reserve", "batch", "respec"]),
        st.integers(0, 3),  # key
        st.integers(0, 3),  # cost
        st.integers(0, S // 2),  # time step
        st.sampled_from(["3/s", "5/s", "2/s; 4/2s", "4/s"]),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(
    algorithm=st.sampled_from(["gcra", "fixed_window", "sliding_window"]), steps=STEPS
)
def test_implementations_count_and_reconfigure_alike(
    compiled, reference, algorithm, steps
) -> None:
    cores = [
        module.module("engine._keyed").KeyedLimiterCore(
            specs("3/s", algorithm), 8, secret=bytes(16)
        )
        for module in (compiled, reference)
    ]
    now = 0
    for verb, key, cost, step, limits in steps:
        now += step
        seen = []
        for core in cores:
            if verb == "try":
                seen.append(core.try_acquire(key, cost, now=now))
            elif verb == "decide":
                seen.append(core.decide(key, cost, now=now))
            elif verb == "reserve":
                seen.append(core.reserve(key, cost, max_wait=0.0, now=now).ok)
            elif verb == "batch":
                seen.append(
                    core.decide_many([key, key + 1, key], cost, now=now).tolist()
                )
            else:
                core.reconfigure(specs(limits, algorithm))
        assert all(item == seen[0] for item in seen)
        assert cores[0].counters() == cores[1].counters()
        assert cores[0].stats() == cores[1].stats()


def test_reconfigure_waits_for_batches_running_without_the_gil(impl) -> None:
    """decide_many on int64 ids runs without the GIL; reconfigures that
    swap the whole table (gcra <-> fixed_window) land between batches, never
    inside one: no crash, no lost count, and each batch decided under one
    config (a fresh key's first unit is always admitted, its fourth never
    under 3/s)."""
    keyed = impl.module("engine._keyed").KeyedLimiterCore(specs("3/s"), 100_000)
    layouts = [specs("3/s"), specs("3/s", "fixed_window")]
    batch = numpy.repeat(numpy.arange(2_000, dtype=numpy.int64), 4)
    results: list[Any] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    offsets = itertools.count(0, 10_000_000)  # new keys for every batch

    def decide() -> None:
        while not stop.is_set():
            try:
                allowed = keyed.decide_many(batch + next(offsets), now=0)
            except BaseException as exc:
                errors.append(exc)
                return
            results.append(allowed.reshape(-1, 4))

    workers = [threading.Thread(target=decide) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        for flip in range(300):
            keyed.reconfigure(layouts[flip % 2])
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert errors == []
    assert len(results) >= 2
    for allowed in results:
        assert allowed[:, :3].all()
        assert not allowed[:, 3].any()
    counted = keyed.counters()
    assert counted.decisions == sum(allowed.size for allowed in results)


BREAKER_STEPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["success", "failure", "slow", "reject?", "wait", "force", "reset"]
        ),
        st.integers(0, 3),  # seconds to wait
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(steps=BREAKER_STEPS)
def test_breaker_implementations_count_alike(compiled, reference, steps) -> None:
    config = BreakerConfig(
        minimum_calls=2,
        window_size=3,
        wait_duration=1.0,
        half_open_calls=2,
        slow_call_duration=0.5,
        backoff_multiplier=2.0,
        max_wait_duration=3.0,
    )
    clocks = [ManualClock(), ManualClock()]
    breakers = [
        make_breaker(impl, config, clock=clock)
        for impl, clock in zip((compiled, reference), clocks, strict=True)
    ]
    for verb, seconds in steps:
        for breaker, clock in zip(breakers, clocks, strict=True):
            if verb == "wait":
                clock.advance(seconds)
            elif verb == "force":
                breaker.transition_to(State.FORCED_OPEN)
            elif verb == "reset":
                breaker.reset()
            else:
                permit = breaker.try_acquire()
                if permit is None or verb == "reject?":
                    continue
                if verb == "failure":
                    permit.on_error(0.0, Boom())
                else:
                    permit.on_success(0.9 if verb == "slow" else 0.0)
        assert breakers[0].counters() == breakers[1].counters()
        assert breakers[0].state == breakers[1].state
