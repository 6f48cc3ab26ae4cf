"""Differential tests of the keyed engine.

Hypothesis drives random traces of (key, time step, cost) through the
compiled and reference KeyedLimiterCore with the same secret, for every
algorithm and for compound limits, with a table large enough never to evict
and with a tiny one (1 to 6 keys) that evicts and drops states all the time:
decisions, ``stats()`` and batch decisions must be identical. Against a dict
of single-subject reference engines (nothing evicted), the keyed engine must
decide exactly alike: the table never changes a decision, and dropping idle
states is harmless.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse.rates import build_specs
from strategies import ALGORITHMS, rates

numpy = pytest.importorskip("numpy")

EXAMPLES = settings(max_examples=150, deadline=None)
SECRET = bytes(range(16))
BIG = 1_000_000

# Mixed-type keys, including the three spellings of "1" (which are three
# keys), True (which is the key 1), big ints and non-ASCII text.
KEY_POOL = ["1", b"1", 1, True, 0, -1, 2**64 + 5, -(2**70), "é", "\ud800", b"", ""]


@st.composite
def keyed_traces(
    draw: st.DrawFn, period_ns: int, max_cost: int, backwards: bool
) -> list[tuple[object, int, int]]:
    """`keyed_traces` draws (key, now_ns, cost): keys from a small pool so
    that they recur, time mostly forward with pauses long enough for states
    to go idle, and (if ``backwards``) some steps back."""
    extra = st.integers(-(2**70), 2**70) | st.text(max_size=3) | st.binary(max_size=9)
    pool = draw(
        st.lists(
            st.sampled_from(KEY_POOL) | extra,
            min_size=1,
            max_size=16,
            unique_by=lambda key: (type(key) if key is not True else int, key),
        )
    )
    step = st.one_of(
        st.just(0),
        st.integers(1, 3),
        st.sampled_from([period_ns - 1, period_ns, period_ns + 1, period_ns // 2]),
        st.integers(0, max(1, period_ns // 4)),
        st.integers(0, 3 * period_ns),
    )
    if backwards:
        step = step | st.integers(-period_ns, 0)
    now = draw(st.integers(0, 5 * period_ns))
    trace = []
    for _ in range(draw(st.integers(1, 80))):
        now = max(0, now + draw(step))
        trace.append((draw(st.sampled_from(pool)), now, draw(st.integers(0, max_cost))))
    return trace


def draw_case(data: st.DataObject, compound: bool):
    algorithm = data.draw(st.sampled_from(ALGORITHMS), label="algorithm")
    count = data.draw(st.integers(2, 3)) if compound else 1
    limits = data.draw(
        st.lists(rates(algorithm), min_size=count, max_size=count), label="limits"
    )
    shortest = min(rate.period_ns for rate in limits)
    capacity = max(rate.capacity for rate in limits)
    return build_specs(limits, algorithm), shortest, capacity


def assert_same_keyed(compiled, reference, specs, max_keys, trace) -> None:
    fast = compiled.module("engine._keyed").KeyedLimiterCore(
        specs, max_keys, None, SECRET
    )
    slow = reference.module("engine._keyed").KeyedLimiterCore(
        specs, max_keys, None, SECRET
    )
    for step, (key, now, cost) in enumerate(trace):
        expected = slow.decide(key, cost, now)
        assert fast.decide(key, cost, now) == expected, f"step {step}: {key=!r}"
        assert fast.stats() == slow.stats(), f"step {step}: {key=!r} {now=}"
        assert fast.stats()["live_keys"] <= max_keys


@EXAMPLES
@given(data=st.data(), compound=st.booleans(), backwards=st.booleans())
def test_compiled_matches_reference_without_eviction(
    compiled, reference, data: st.DataObject, compound: bool, backwards: bool
) -> None:
    specs, period_ns, capacity = draw_case(data, compound)
    trace = data.draw(keyed_traces(period_ns, capacity + 1, backwards))
    assert_same_keyed(compiled, reference, specs, BIG, trace)


@EXAMPLES
@given(
    data=st.data(),
    compound=st.booleans(),
    backwards=st.booleans(),
    max_keys=st.integers(1, 12),
)
def test_compiled_matches_reference_with_eviction(
    compiled,
    reference,
    data: st.DataObject,
    compound: bool,
    backwards: bool,
    max_keys: int,
) -> None:
    """Which key is evicted depends on the fingerprints and the probe order:
    identical decisions here also prove identical SipHash and table code."""
    specs, period_ns, capacity = draw_case(data, compound)
    trace = data.draw(keyed_traces(period_ns, capacity + 1, backwards))
    assert_same_keyed(compiled, reference, specs, max_keys, trace)


@EXAMPLES
@given(data=st.data(), compound=st.booleans())
def test_keyed_matches_one_engine_per_key(
    impl, reference, data: st.DataObject, compound: bool
) -> None:
    """With nothing evicted the table is invisible: the keyed engine decides
    as a dict of single-subject engines would (time never steps back here:
    a dropped idle state is new only for times at or after it went idle)."""
    specs, period_ns, capacity = draw_case(data, compound)
    trace = data.draw(keyed_traces(period_ns, capacity + 1, backwards=False))
    keyed = impl.module("engine._keyed").KeyedLimiterCore(specs, BIG, None, SECRET)
    engine = reference.module("engine._subject").LimiterCore
    subjects: dict[object, object] = {}
    for step, (key, now, cost) in enumerate(trace):
        subject = subjects.setdefault(key, engine(specs))
        expected = subject.decide(cost, now=now)
        assert keyed.decide(key, cost, now) == expected, f"step {step}: {key=!r}"
    stats = keyed.stats()
    assert stats["evictions"] == 0
    assert stats["live_keys"] <= len(subjects)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), compound=st.booleans(), max_keys=st.sampled_from([2, 5, BIG]))
def test_batch_matches_single_decisions(
    compiled, reference, data: st.DataObject, compound: bool, max_keys: int
) -> None:
    """decide_many over int64 ids (hashed without the GIL in the compiled
    engine) equals consecutive single decisions, in both engines, with
    costs None, one int, or one per key."""
    specs, period_ns, capacity = draw_case(data, compound)
    ids = st.integers(-3, 5) | st.sampled_from([2**63 - 1, -(2**63)])
    cores = [
        impl.module("engine._keyed").KeyedLimiterCore(specs, max_keys, None, SECRET)
        for impl in (compiled, reference)
        for _ in range(2)  # one for batches, one for single decisions
    ]
    now = 0
    for _ in range(data.draw(st.integers(1, 5))):
        keys = data.draw(st.lists(ids, max_size=40))
        now += data.draw(st.integers(0, 2 * period_ns))
        spend = st.integers(0, capacity + 1)
        costs = data.draw(
            st.none() | spend | st.lists(spend, min_size=len(keys), max_size=len(keys))
        )
        each = (
            costs
            if isinstance(costs, list)
            else [1 if costs is None else costs] * len(keys)
        )
        singles = [
            [
                (decision.allowed, decision.retry_after)
                for decision in map(core.decide, keys, each, [now] * len(keys))
            ]
            for core in cores[1::2]
        ]
        array = numpy.array(keys, dtype=numpy.int64)
        for core, single in zip(cores[0::2], singles, strict=True):
            allowed, waits = core.decide_many(array, costs, now, retry_after=True)
            assert list(zip(allowed.tolist(), waits.tolist(), strict=True)) == single
        assert singles[0] == singles[1]
    stats = [core.stats() for core in cores]
    assert stats[1:] == stats[:1] * 3
