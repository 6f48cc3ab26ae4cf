"""The fleet script decides as the local breaker does: Hypothesis drives
the same random traces through the reference CircuitBreaker and through a
FleetBreaker that flushes after every outcome (batches of one), with the
same injected time, and requires the same permits, states and waits. The
recorder's two implementations are compared on random traces too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fleet_breaker_support import FleetClock, fresh_fleet_name, make_breaker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breaker_support import make_breaker as make_local_breaker
from ratefuse.breaker import BreakerConfig
from redis_servers import RedisServer

CONFIGS = [
    BreakerConfig(
        window_size=4,
        minimum_calls=4,
        failure_rate_threshold=50.0,
        wait_duration=1.0,
        backoff_multiplier=2.0,
        max_wait_duration=3.0,
        half_open_calls=2,
    ),
    BreakerConfig(
        window_type="time",
        window_duration=1.0,
        window_buckets=4,
        minimum_calls=2,
        failure_rate_threshold=60.0,
        slow_call_duration=0.5,
        slow_call_rate_threshold=50.0,
        wait_duration=0.5,
        half_open_calls=3,
        max_half_open_duration=1.0,
    ),
]

# A step: a call (a permit asked for and, if granted, its outcome reported
# at once), a permit asked for and held, the oldest held permit's outcome,
# or time passing (whole 100 ms, longer than the pause after a refused
# probe request). Mostly successes, so that windows fill up untripped.
outcomes = st.tuples(
    st.sampled_from(["success", "success", "failure", "release"]),
    st.sampled_from([0.0, 0.75]),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("call"), outcomes),
        st.just(("hold",)),
        st.tuples(st.just("report"), outcomes),
        st.tuples(st.just("advance"), st.integers(0, 12)),
    ),
    min_size=10,
    max_size=80,
)


def report(pair: tuple[Any, Any], outcome: tuple[str, float]) -> None:
    kind, duration = outcome
    for permit in pair:
        if kind == "success":
            permit.on_success(duration)
        elif kind == "failure":
            permit.on_error(duration, RuntimeError("down"))
        else:
            permit.release()


@pytest.fixture(scope="module")
def node_client(redis_node: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    yield client
    client.close()


@pytest.mark.parametrize("config", CONFIGS, ids=["count", "time"])
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(trace=steps)
def test_fleet_script_decides_as_the_local_breaker(
    node_client: redis.Redis,
    reference: Any,
    config: BreakerConfig,
    trace: list[tuple[Any, ...]],
) -> None:
    clock = FleetClock()
    local = make_local_breaker(reference, config, clock=clock)  # type: ignore[arg-type]
    fleet = make_breaker(node_client, fresh_fleet_name(), config, clock)
    held: list[tuple[Any, Any]] = []
    try:
        for step in trace:
            kind = step[0]
            if kind in ("call", "hold"):
                pair = (local.try_acquire(), fleet.try_acquire())
                assert (pair[0] is None) == (pair[1] is None), step
                if pair[0] is not None:
                    if kind == "hold":
                        held.append(pair)
                    else:
                        report(pair, step[1])
                        fleet.flush()
            elif kind == "advance":
                clock.advance(step[1] / 10)
            elif held:
                report(held.pop(0), step[1])
                fleet.flush()
            assert fleet.state == local.state, step
            assert fleet.retry_after() == pytest.approx(local.retry_after()), step
        fleet.flush()
        local_metrics, fleet_metrics = local.metrics(), fleet.metrics()
        assert fleet_metrics.state == local_metrics.state
        assert (fleet_metrics.calls, fleet_metrics.failed_calls) == (
            local_metrics.calls,
            local_metrics.failed_calls,
        )
        assert fleet_metrics.slow_calls == local_metrics.slow_calls
    finally:
        fleet.close()


recorder_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 3), st.integers(0, 7)),
        st.tuples(st.just("generation"), st.integers(0, 3)),
        st.tuples(st.just("take")),
        st.tuples(st.just("slow"), st.sampled_from([0.0, 0.5, 0.5000000011, 2.0])),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ops=recorder_ops)
def test_recorder_twins_agree(compiled: Any, reference: Any, ops: list[Any]) -> None:
    wakes = {"cython": 0, "python": 0}

    def waker(name: str) -> Any:
        return lambda: wakes.__setitem__(name, wakes[name] + 1)

    recorders = {
        name: impl.module("core.breaker._fleet_recorder").Recorder(
            5, 3, 500_000_000, waker(name)
        )
        for name, impl in (("cython", compiled), ("python", reference))
    }
    for op in ops:
        results = []
        for recorder in recorders.values():
            if op[0] == "push":
                results.append(recorder.push(op[1], op[2]))
            elif op[0] == "generation":
                results.append(recorder.set_generation(op[1]))
            elif op[0] == "take":
                results.append(recorder.take())
            else:
                results.append(recorder.slow_flag(op[1]))
        assert results[0] == results[1], op
        counts = [
            (r.generation, r.dropped, r.stale, r.pending()) for r in recorders.values()
        ]
        assert counts[0] == counts[1], op
    assert wakes["cython"] == wakes["python"]


def test_recorder_and_permit_errors(impl: Any) -> None:
    module = impl.module("core.breaker._fleet_recorder")
    with pytest.raises(ValueError, match="capacity"):
        module.Recorder(0, 1, 0, lambda: None)
    recorder = module.Recorder(4, 4, 0, lambda: None)
    recorder.set_generation(2)

    class Classifier:
        def classify_exception(self, exc: BaseException) -> int:
            raise LookupError("predicate failed")

        def classify_result(self, result: object) -> int:
            return 1 if result == 503 else 0

    permit = module.FleetPermit(Classifier(), recorder, 2)
    with pytest.raises(ValueError, match="duration"):
        permit.on_success(-0.5)
    with pytest.raises(TypeError):
        permit.on_success(None)
    with pytest.raises(LookupError):
        permit.on_error(0.0, RuntimeError())
    permit.on_result(0.0, 503)
    permit.on_result(0.0, 200)
    permit.release()
    # The failed predicate recorded the call as ignored, as a local breaker.
    assert recorder.take() == (2, bytes([4, 1, 0, 4]))
    assert "generation=2" in repr(permit)


def test_gate_answers_with_its_permit_or_the_slow_path(impl: Any) -> None:
    asked: list[int | None] = []

    def slow_path(now: int | None) -> str:
        asked.append(now)
        return "slow"

    gate = impl.module("core.breaker._fleet_recorder").Gate(slow_path)
    assert gate.try_acquire() == "slow"
    gate.permit = "permit"
    assert gate.try_acquire() == "permit"
    assert gate.try_acquire(now=5) == "slow"  # an explicit time: the slow path
    gate.permit = None
    assert gate.try_acquire() == "slow"
    assert asked == [None, 5, None]
