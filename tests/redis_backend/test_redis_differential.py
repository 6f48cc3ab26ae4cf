"""Differential tests: the Lua scripts decide exactly as the reference cores.

Hypothesis draws limits and traces of (time step, cost), runs them through
the scripts with injected time (integer microseconds) and through the
reference engine (``ratefuse.engine._subject_py``) with the same integers, and
requires identical verdicts: allowed, remaining, retry_after, reset_after
and the binding limit. The reference cores are unit-free integer functions,
so feeding them microseconds compares the scripts on the very grid they
decide on (scaling to nanoseconds would ask the reference a finer question:
a sliding-window retry can land between two microseconds).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratefuse.core.spec import LimitSpec
from ratefuse.engine._subject_py import LimiterCore
from ratefuse.redis import RedisBackend, RedisStore

ALGORITHMS = ("gcra", "fixed_window", "sliding_window", "sliding_log")
# Injected times start in 2096, so keys (PEXPIREAT on the injected clock)
# outlive the test even when the trace steps back in time.
BASE_US = 4_000_000_000_000_000
HIGH_US = (1 << 52) - 10**12
EXAMPLES = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@st.composite
def limit_specs(draw: st.DrawFn, algorithm: str) -> LimitSpec:
    """A limit in microseconds, over several scales of period."""
    period = draw(
        st.one_of(
            st.integers(1, 50),
            st.integers(50, 5_000),
            st.integers(5_000, 10_000_000),
        )
    )
    if algorithm == "gcra":
        limit = draw(st.integers(1, 40))
        burst = draw(st.integers(1, 40))
        return LimitSpec("gcra", burst, period, -(-period // limit))
    cap = 25 if algorithm == "sliding_log" else 60
    return LimitSpec(algorithm, draw(st.integers(1, cap)), period, 0)


@st.composite
def traces(draw: st.DrawFn, period: int, capacity: int) -> list[tuple[int, int]]:
    """Steps of (time step, cost): bursts, waits, whole periods, steps back
    and costs above the capacity (up to 2**62)."""
    step = st.one_of(
        st.just(0),
        st.integers(0, max(1, period // 8)),
        st.integers(0, 3 * period),
        st.integers(-max(1, period // 4), 0),
    )
    cost = st.one_of(
        st.integers(0, capacity + 1),
        st.just(1),
        st.sampled_from([capacity, 2**40, 2**62]),
    )
    return draw(st.lists(st.tuples(step, cost), min_size=1, max_size=25))


def to_ns(spec: LimitSpec) -> LimitSpec:
    """The nanosecond spec whose microsecond lowering is ``spec`` exactly."""
    return spec._replace(
        period_ns=spec.period_ns * 1000, interval_ns=spec.interval_ns * 1000
    )


class Reference:
    """The reference engine for one subject, plus what Redis adds: a subject
    whose key does not exist and whose state stays as if new (reset 0) is
    not written, so its state is dropped, as the local keyed limiters drop
    such states."""

    def __init__(self, specs: list[LimitSpec]) -> None:
        self.core = LimiterCore(specs)
        self.stored = False

    def decide(self, cost: int, now: int) -> tuple[bool, int, int, int, int]:
        verdict, spec = self.core._decide(cost, now)
        if verdict.reset_after_ns > 0:
            self.stored = True
        elif not self.stored:
            self.core.reset()
        return (*verdict[:4], spec.capacity)


def run_trace(
    store: RedisStore, specs: list[LimitSpec], trace: list[tuple[int, int]], start: int
) -> None:
    reference = Reference(specs)
    now = latest = start
    # The scripts honour a server clock that goes back by up to a limit's
    # span (tau, or a period); a state further ahead is taken as damage.
    span = min(
        spec.interval_ns * spec.capacity if spec.algorithm == "gcra" else spec.period_ns
        for spec in specs
    )
    for index, (step, cost) in enumerate(trace):
        now = max(start, now + step, latest - span)
        latest = max(latest, now)
        got = store.decide_us("subject", cost, now_us=now)
        actual = (*got[:4], specs[got.binding].capacity)
        assert actual == reference.decide(cost, now), f"step {index}: {now=} {cost=}"


def bind(
    backend: RedisBackend, specs: list[LimitSpec], name: Callable[[], str]
) -> RedisStore:
    return backend.bind([to_ns(spec) for spec in specs], name())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@EXAMPLES
@given(data=st.data())
def test_single_limit(
    node_backend, fresh_name, algorithm: str, data: st.DataObject
) -> None:
    spec = data.draw(limit_specs(algorithm))
    trace = data.draw(traces(spec.period_ns, spec.capacity))
    start = data.draw(st.sampled_from([BASE_US, HIGH_US]))
    run_trace(bind(node_backend, [spec], fresh_name), [spec], trace, start)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@EXAMPLES
@given(data=st.data())
def test_compound_limits(
    node_backend, fresh_name, algorithm: str, data: st.DataObject
) -> None:
    specs = data.draw(st.lists(limit_specs(algorithm), min_size=2, max_size=3))
    shortest = min(spec.period_ns for spec in specs)
    smallest = min(spec.capacity for spec in specs)
    trace = data.draw(traces(shortest, smallest))
    run_trace(bind(node_backend, specs, fresh_name), specs, trace, BASE_US)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(EXAMPLES, max_examples=15)
@given(data=st.data())
def test_compound_limits_on_cluster(
    cluster_backend, fresh_name, algorithm: str, data: st.DataObject
) -> None:
    specs = data.draw(st.lists(limit_specs(algorithm), min_size=1, max_size=3))
    trace = data.draw(
        traces(min(s.period_ns for s in specs), min(s.capacity for s in specs))
    )
    run_trace(bind(cluster_backend, specs, fresh_name), specs, trace, BASE_US)


SUBJECTS = st.sampled_from(["a", "b", b"a", 7, "{a}", ""])


@st.composite
def batches(
    draw: st.DrawFn, period: int, capacity: int
) -> list[tuple[int, list[object], list[int]]]:
    """Batches of (time step, subjects, costs), subjects repeating."""
    batch = st.integers(1, 12).flatmap(
        lambda size: st.tuples(
            st.integers(0, 2 * period),
            st.lists(SUBJECTS, min_size=size, max_size=size),
            st.lists(st.integers(0, capacity + 1), min_size=size, max_size=size),
        )
    )
    return draw(st.lists(batch, min_size=1, max_size=6))


def run_batches(store: RedisStore, specs: list[LimitSpec], trace, start: int) -> None:
    references: dict[object, Reference] = {}
    now = start
    for index, (step, subjects, costs) in enumerate(trace):
        now += step
        got = store.decide_many_us(subjects, costs, now_us=now)
        for subject, cost, verdict in zip(subjects, costs, got, strict=True):
            reference = references.setdefault(
                (type(subject), subject), Reference(specs)
            )
            assert not isinstance(verdict, BaseException), verdict
            actual = (*verdict[:4], specs[verdict.binding].capacity)
            assert actual == reference.decide(cost, now), f"batch {index}: {subject!r}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(EXAMPLES, max_examples=40)
@given(data=st.data())
def test_batches(redis_node, fresh_name, algorithm: str, data: st.DataObject) -> None:
    import redis

    specs = data.draw(st.lists(limit_specs(algorithm), min_size=1, max_size=2))
    trace = data.draw(
        batches(min(s.period_ns for s in specs), min(s.capacity for s in specs))
    )
    client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    # chunk=3 mixes one-key and msgpack calls (of distinct and of repeated
    # keys) within one batch; the timeout is generous, as node_backend's:
    # this test judges decisions, and a loaded machine is slow.
    with RedisBackend(client, chunk=3, timeout=5.0) as backend:
        run_batches(bind(backend, specs, fresh_name), specs, trace, BASE_US)
    client.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(EXAMPLES, max_examples=10)
@given(data=st.data())
def test_batches_on_cluster(
    cluster_backend, fresh_name, algorithm: str, data: st.DataObject
) -> None:
    specs = data.draw(st.lists(limit_specs(algorithm), min_size=1, max_size=2))
    trace = data.draw(
        batches(min(s.period_ns for s in specs), min(s.capacity for s in specs))
    )
    run_batches(bind(cluster_backend, specs, fresh_name), specs, trace, BASE_US)
