"""Differential tests of the shared-memory cores in one process.

Hypothesis drives random traces of (key, time, operation) through the
compiled core, its pure-Python twin (each on its own table, created with
the same secret) and the in-memory reference KeyedLimiterCore, which is the
spec of a keyed limiter: decisions and reservations must be identical, and
the two tables must hold the same bytes after every operation. With at most
8 keys the in-memory table never rebuilds and the shared one never evicts,
so even steps back in time must decide alike.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse.core import implementation as _impl
from ratefuse.rates import build_specs
from ratefuse.shm import ShmBackend
from shm_support import SECRET, body, check_consistent, core
from strategies import rates

EXAMPLES = settings(max_examples=120, deadline=None)
KEYS = ["a", b"a", 0, 1, -(2**70), "é", b"", "long key " * 10]
OPERATIONS = ["decide", "decide", "decide", "reserve", "cancel", "reset"]


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    """`directory` holds this module's tables (each example removes its own)."""
    return tmp_path_factory.mktemp("shm")


@st.composite
def programs(draw: st.DrawFn, period_ns: int, capacity: int) -> list[tuple]:
    """`programs` draws (operation, key, now_ns, cost, max_wait_s) steps:
    time mostly forward, with pauses past a period and steps back."""
    step = st.one_of(
        st.just(0),
        st.integers(1, 3),
        st.sampled_from([period_ns - 1, period_ns, period_ns + 1, period_ns // 2]),
        st.integers(0, 3 * period_ns),
        st.integers(-period_ns, 0),
    )
    now = draw(st.integers(0, 5 * period_ns))
    program = []
    for _ in range(draw(st.integers(1, 50))):
        now = max(0, now + draw(step))
        program.append(
            (
                draw(st.sampled_from(OPERATIONS)),
                draw(st.sampled_from(KEYS)),
                now,
                draw(st.integers(0, capacity + 1)),
                draw(st.sampled_from([None, 0.0, period_ns / 2e9, period_ns / 1e9])),
            )
        )
    return program


def reference(spec):
    keyed = _impl.load("engine._keyed", "python").KeyedLimiterCore
    return keyed([spec], 1000, None, SECRET)


def outcome(result):
    if hasattr(result, "ok"):
        return ("reservation", result.ok, result.delay, result.decision)
    return result


@pytest.mark.parametrize("algorithm", ["gcra", "fixed_window", "sliding_window"])
@EXAMPLES
@given(data=st.data())
def test_both_cores_decide_as_the_reference(directory, compiled, algorithm, data):
    rate = data.draw(rates(algorithm))
    spec = build_specs([rate], algorithm)[0]
    program = data.draw(programs(spec.period_ns, spec.capacity))
    name = uuid.uuid4().hex
    backends = [ShmBackend(directory / f"{name}-{impl}", 8) for impl in ("c", "py")]
    cores = [
        core(impl, b, rate, algorithm)
        for impl, b in zip(["cython", "python"], backends, strict=True)
    ]
    oracle = reference(spec)
    held: list[list] = [[], [], []]
    try:
        for operation, key, now, cost, max_wait in program:
            results = [
                run(c, held[i], operation, key, now, cost, max_wait)
                for i, c in enumerate([*cores, oracle])
            ]
            assert results[0] == results[2], (operation, key, now, cost)
            assert results[1] == results[2], (operation, key, now, cost)
            assert body(backends[0].path) == body(backends[1].path)
        check_consistent(backends[0].path)
        assert cores[0].stats() == cores[1].stats()
    finally:
        for limiter, backend in zip(cores, backends, strict=True):
            limiter.close()
            backend.unlink()


def run(limiter, held: list, operation: str, key, now: int, cost: int, max_wait):
    """`run` performs one step on ``limiter``, keeping reservations in
    ``held`` so that "cancel" gives back the oldest one."""
    if operation == "decide":
        return limiter.decide(key, cost, now)
    if operation == "reserve":
        reservation = limiter.reserve(key, cost, max_wait, now)
        held.append(reservation)
        return outcome(reservation)
    if operation == "cancel":
        if held:
            held.pop(0).cancel(now)
        return None
    limiter.reset(key)
    return None


@pytest.mark.parametrize("algorithm", ["gcra", "fixed_window", "sliding_window"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_single_subject_decides_as_one_key(directory, compiled, algorithm, data):
    rate = data.draw(rates(algorithm))
    spec = build_specs([rate], algorithm)[0]
    program = data.draw(programs(spec.period_ns, spec.capacity))
    name = uuid.uuid4().hex
    oracle = reference(spec)
    for impl in ("cython", "python"):
        backend = ShmBackend(directory / f"{name}-{impl}", 1)
        single = core(impl, backend, rate, algorithm, single=True)
        try:
            for _, _, now, cost, _ in program:
                assert single.decide(cost, now) == oracle.decide(f"{impl}", cost, now)
        finally:
            single.close()
            backend.unlink()


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_both_cores_evict_alike(directory, compiled, algorithm, data):
    # One bucket of 15 slots and up to 40 keys: inserts reuse idle states,
    # freed slots and evict, and both cores must choose the same slots.
    rate = data.draw(rates(algorithm))
    spec = build_specs([rate], algorithm)[0]
    program = data.draw(programs(spec.period_ns, spec.capacity))
    size = len(program)
    keys = data.draw(st.lists(st.integers(0, 39), min_size=size, max_size=size))
    name = uuid.uuid4().hex
    backends = [ShmBackend(directory / f"{name}-{impl}", 1) for impl in ("c", "py")]
    cores = [
        core(impl, b, rate, algorithm)
        for impl, b in zip(["cython", "python"], backends, strict=True)
    ]
    held: list[list] = [[], []]
    try:
        for (operation, _, now, cost, max_wait), key in zip(program, keys, strict=True):
            results = [
                run(c, held[i], operation, key, now, cost, max_wait)
                for i, c in enumerate(cores)
            ]
            assert results[0] == results[1], (operation, key, now, cost)
            assert body(backends[0].path) == body(backends[1].path)
        check_consistent(backends[0].path)
        assert cores[0].stats() == cores[1].stats()
    finally:
        for limiter, backend in zip(cores, backends, strict=True):
            limiter.close()
            backend.unlink()
