"""The adaptive concurrency limit's core, both twins: each algorithm's step
on a table of samples, the queue hand-off, the errors, and the compiled
twin against the reference on random traces."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse.core.adaptive.params import MAX_RTT_NS, AdaptiveParams, AlgorithmId

MS = 1_000_000


def core(impl: Any, **fields: Any) -> Any:
    fields.setdefault("algorithm", AlgorithmId.AIMD)
    fields.setdefault("initial_limit", 10)
    fields.setdefault("min_limit", 1)
    fields.setdefault("max_limit", 100)
    return impl.module("core.adaptive._limit").AdaptiveCore(AdaptiveParams(**fields))


def fill(limit: Any, count: int) -> None:
    for _ in range(count):
        assert limit.admit()


def test_admits_up_to_the_limit_and_frees_on_completion(impl: Any) -> None:
    limit = core(impl, initial_limit=3)
    fill(limit, 3)
    assert not limit.admit()
    assert limit.in_flight == 3
    limit.forget()
    assert limit.admit()
    assert (limit.limit, limit.samples) == (3, 0)


def test_aimd_grows_a_call_per_round_trip_and_backs_off_once_per_trip(
    impl: Any,
) -> None:
    limit = core(impl, initial_limit=10, backoff_milli=900)
    fill(limit, 6)
    limit.complete(MS, False)  # 6 in flight of 10: used, grows by 1/10
    assert limit.limit_micro == 10_100_000
    limit.complete(MS, True)
    assert (limit.limit_micro, limit.cooldown) == (9_090_000, 10)
    # The same round trip's next drop is not answered again.
    limit.complete(MS, True)
    assert (limit.limit_micro, limit.cooldown, limit.drops) == (9_090_000, 9, 2)
    assert (limit.limit, limit.samples) == (9, 3)


def test_aimd_counts_a_call_slower_than_its_timeout_as_a_drop(impl: Any) -> None:
    limit = core(impl, initial_limit=10, timeout_ns=5 * MS, backoff_milli=500)
    fill(limit, 6)
    limit.complete(5 * MS, False)
    assert limit.limit_micro == 10_100_000
    limit.complete(5 * MS + 1, False)
    assert limit.limit_micro == 5_050_000
    assert limit.drops == 0


def test_a_limit_less_than_half_used_does_not_grow(impl: Any) -> None:
    for algorithm in AlgorithmId:
        limit = core(impl, algorithm=algorithm, initial_limit=10)
        fill(limit, 4)
        for _ in range(4):
            limit.complete(MS, False)
        assert limit.limit_micro == 10_000_000, algorithm


def test_vegas_grows_on_a_short_queue_and_shrinks_on_a_long_one(impl: Any) -> None:
    limit = core(impl, algorithm=AlgorithmId.VEGAS, initial_limit=20, alpha=3, beta=6)
    fill(limit, 20)
    limit.complete(MS, False)  # no-load time 1 ms: no queue, +1/20
    assert limit.limit_micro == 20_050_000
    # Smoothed 1.125 ms: queue 20.05 * 0.111 = 2.2 < alpha, grows.
    limit.complete(2 * MS, False)
    assert (limit.smoothed_rtt_ns, limit.limit_micro) == (1_125_000, 20_099_875)
    # Smoothed 2.109 ms: queue 20.1 * 0.525 = 10.6 > beta, shrinks.
    limit.complete(9 * MS, False)
    assert (limit.smoothed_rtt_ns, limit.limit_micro) == (2_109_375, 20_050_124)
    assert limit.min_rtt_ns == MS


def test_vegas_forgets_its_no_load_time_when_it_probes(impl: Any) -> None:
    limit = core(impl, algorithm=AlgorithmId.VEGAS, initial_limit=4, probe_every=3)
    fill(limit, 4)
    limit.complete(MS, False)
    limit.complete(3 * MS, False)
    assert (limit.min_rtt_ns, limit.limit_micro) == (MS, 4_485_294)
    limit.complete(3 * MS, False)  # the third sample probes
    assert (limit.min_rtt_ns, limit.limit_micro) == (1_468_750, 4_485_294)


def test_gradient2_grows_while_steady_and_shrinks_when_slower(impl: Any) -> None:
    limit = core(
        impl,
        algorithm=AlgorithmId.GRADIENT2,
        initial_limit=10,
        smoothing_milli=500,
        queue_size=4,
        tolerance_milli=1500,
    )
    fill(limit, 10)
    # Gradient 1: the estimate is 10 + 4, and half of the way per round
    # trip is 1/10 of 2 calls per sample.
    limit.complete(MS, False)
    assert limit.limit_micro == 10_200_000
    assert limit.long_rtt_ns == MS
    for _ in range(5):
        limit.complete(10 * MS, False)
    # The smoothed time rose far above the long-term one (which moves by
    # 1/(100 round trips * 10) of each difference): the gradient is at
    # its floor, 0.5, and the limit falls.
    assert limit.long_rtt_ns < 2 * MS
    assert limit.smoothed_rtt_ns > 4 * MS
    assert limit.limit_micro < 10_200_000


def test_a_queued_caller_is_served_before_newcomers(impl: Any) -> None:
    limit = core(impl, initial_limit=2)
    fill(limit, 2)
    limit.enqueue()
    limit.forget()
    assert not limit.admit()
    assert limit.grant()
    limit.dequeue()
    assert limit.waiting == 0
    assert not limit.grant()
    with pytest.raises(RuntimeError, match="nobody queued"):
        limit.dequeue()


def test_permits_time_their_call_and_return_once(impl: Any) -> None:
    limit = core(impl, initial_limit=2, backoff_milli=500)
    permit = limit.try_acquire_at(1_000)
    assert permit is not None
    assert permit.start_ns == 1_000
    permit.release_at(1_000 + 3 * MS)
    assert permit.returned
    assert limit.last_rtt_ns == 3 * MS
    with pytest.raises(RuntimeError, match="already returned"):
        permit.drop_at(0)
    dropped = limit.try_acquire()
    dropped.drop()
    assert (limit.drops, limit.limit) == (1, 1)
    ignored = limit.try_acquire()
    assert limit.try_acquire() is None
    ignored.ignore()
    assert (limit.in_flight, limit.samples) == (0, 2)
    limit.enqueue()
    assert limit.try_acquire_at(0) is None
    granted = limit.grant_at(5)
    assert granted is not None
    assert granted.start_ns == 5


def test_round_trip_times_are_clamped(impl: Any) -> None:
    limit = core(impl)
    fill(limit, 2)
    limit.complete(-5, False)
    assert limit.last_rtt_ns == 1
    limit.complete(MAX_RTT_NS + 1, False)
    assert limit.last_rtt_ns == MAX_RTT_NS


def test_errors(impl: Any) -> None:
    limit = core(impl)
    with pytest.raises(RuntimeError, match="too many"):
        limit.forget()
    with pytest.raises(RuntimeError, match="too many"):
        limit.complete(1, False)
    with pytest.raises(TypeError, match="AdaptiveParams"):
        impl.module("core.adaptive._limit").AdaptiveCore({"limit": 3})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_limit": 0}, "min_limit"),
        ({"initial_limit": 500}, "initial_limit"),
        ({"backoff_milli": 1000}, "backoff_milli"),
        ({"beta": 2}, "beta"),
        ({"tolerance_milli": 999}, "tolerance_milli"),
        ({"long_window": True}, "long_window must be an int"),
    ],
)
def test_params_name_the_bad_field(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "algorithm": AlgorithmId.AIMD,
        "initial_limit": 10,
        "min_limit": 1,
        "max_limit": 100,
    }
    with pytest.raises((ValueError, TypeError), match=message):
        AdaptiveParams(**(base | fields))


@st.composite
def params_strategy(draw: st.DrawFn) -> AdaptiveParams:
    """`params_strategy` draws small valid params of any algorithm."""
    low = draw(st.integers(1, 5))
    high = low + draw(st.integers(0, 60))
    alpha = draw(st.integers(0, 5))
    return AdaptiveParams(
        algorithm=draw(st.sampled_from(list(AlgorithmId))),
        initial_limit=draw(st.integers(low, high)),
        min_limit=low,
        max_limit=high,
        backoff_milli=draw(st.integers(1, 999)),
        timeout_ns=draw(st.sampled_from([0, 1, MS, 3 * MS])),
        alpha=alpha,
        beta=alpha + draw(st.integers(0, 5)),
        probe_every=draw(st.sampled_from([0, 1, 3, 50])),
        tolerance_milli=draw(st.integers(1000, 3000)),
        smoothing_milli=draw(st.integers(1, 1000)),
        long_window=draw(st.sampled_from([1, 2, 10, 600])),
        queue_size=draw(st.integers(0, 8)),
    )


operations = st.lists(
    st.one_of(
        st.just(("admit",)),
        st.just(("grant",)),
        st.just(("forget",)),
        st.just(("enqueue",)),
        st.just(("dequeue",)),
        st.tuples(
            st.just("complete"),
            st.one_of(
                st.integers(-10, 10),
                st.integers(MS // 2, 4 * MS),
                st.integers(0, 2**62),
            ),
            st.booleans(),
        ),
    ),
    max_size=200,
)

STATE = (
    "limit",
    "limit_micro",
    "in_flight",
    "waiting",
    "cooldown",
    "min_rtt_ns",
    "smoothed_rtt_ns",
    "long_rtt_ns",
    "last_rtt_ns",
    "samples",
    "drops",
)


def _apply(limit: Any, op: tuple[Any, ...]) -> object:
    try:
        return getattr(limit, op[0])(*op[1:])
    except RuntimeError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(params=params_strategy(), ops=operations)
def test_twins_make_the_same_decisions(
    compiled: Any, reference: Any, params: AdaptiveParams, ops: list[Any]
) -> None:
    twins = [
        impl.module("core.adaptive._limit").AdaptiveCore(params)
        for impl in (compiled, reference)
    ]
    for op in ops:
        answers = [_apply(limit, op) for limit in twins]
        assert answers[0] == answers[1], op
        states = [tuple(getattr(limit, name) for name in STATE) for limit in twins]
        assert states[0] == states[1], op


def test_permits_are_timed_by_the_injected_clock(impl: Any) -> None:
    now = [1_000]
    params = AdaptiveParams(AlgorithmId.AIMD, 4, 1, 10)
    limit = impl.module("core.adaptive._limit").AdaptiveCore(params, lambda: now[0])
    permit = limit.try_acquire()
    assert permit.start_ns == 1_000
    now[0] = 1_000 + 7 * MS
    permit.release()
    assert limit.last_rtt_ns == 7 * MS
    second = limit.try_acquire()
    now[0] += 2 * MS
    second.drop()
    assert (limit.last_rtt_ns, limit.drops) == (2 * MS, 1)


def test_a_failing_clock_keeps_the_permit_open(impl: Any) -> None:
    def broken() -> int:
        raise OSError("clock")

    params = AdaptiveParams(AlgorithmId.AIMD, 4, 1, 10)
    limit = impl.module("core.adaptive._limit").AdaptiveCore(params, broken)
    permit = limit.try_acquire_at(0)
    with pytest.raises(OSError, match="clock"):
        permit.release()
    assert not permit.returned
    permit.release_at(5)
    assert limit.in_flight == 0
    with pytest.raises(TypeError, match="clock"):
        impl.module("core.adaptive._limit").AdaptiveCore(params, 5)


def test_a_freed_slot_is_announced_only_while_callers_wait(impl: Any) -> None:
    calls: list[int] = []
    params = AdaptiveParams(AlgorithmId.AIMD, 2, 1, 10)
    module = impl.module("core.adaptive._limit")
    limit = module.AdaptiveCore(params, None, lambda: calls.append(limit.in_flight))
    fill(limit, 2)
    limit.complete(MS, False)
    assert calls == []
    limit.enqueue()
    limit.complete(MS, False)
    assert limit.admit() is False  # someone waits: only grant takes a slot
    assert limit.grant()
    limit.forget()
    assert calls == [0, 0]
