"""A finalizer or signal handler that decides on the limiter it interrupted
does not hang (issue 21, item 2), in both implementations and every local
core. Each case runs in its own process under a timeout, because the bug
was a hang: the compiled KeyedLimiterCore made Python objects while it held
the table's turn (a collection there ran a finalizer that waited for the
turn for ever), and the reference cores' plain lock was taken again by the
thread that held it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("reentrancy_worker.py")
TIMEOUT_S = 30


@pytest.mark.parametrize("how", ["finalizer", "signal"])
@pytest.mark.parametrize("kind", ["single", "keyed", "shm-single", "shm-keyed"])
def test_a_nested_decision_does_not_hang(impl, kind, how, tmp_path) -> None:
    command = [sys.executable, str(WORKER), impl.name, kind, how]
    if kind.startswith("shm"):
        command.append(str(tmp_path / "table"))
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kind} ({impl.name}) hung on a decision made by a {how}")
    assert done.returncode == 0, done.stderr
    word, calls, admitted = done.stdout.split()
    assert word == "done"
    assert int(calls) > 0, "the nested decisions ran"
    if impl.name == "cython":
        # The compiled cores run no Python code while they hold a state, so
        # no nested call ever finds it taken: each is decided exactly.
        assert int(admitted) == int(calls)


# ---- what the reference cores answer inside their own thread's turn ----


def _reference_cores():
    from ratefuse.core import implementation
    from ratefuse.rates import Rate, build_specs

    specs = build_specs([Rate(2, 3600.0)], "gcra")
    single = implementation.load("engine._subject", "python").LimiterCore(specs)
    keyed = implementation.load("engine._keyed", "python").KeyedLimiterCore(specs, 8)
    return [(single, ()), (keyed, ("k",))]


@pytest.mark.parametrize("which", [0, 1], ids=["single", "keyed"])
def test_a_decision_inside_the_turn_is_denied_and_takes_nothing(which) -> None:
    from ratefuse import RateLimitExceeded

    core, args = _reference_cores()[which]
    held = core.reserve(*args)
    assert core._turn.enter()  # as if a finalizer interrupted this turn
    try:
        nested = core.decide(*args)
        assert (nested.allowed, nested.retry_after) == (False, float("inf"))
        assert not core.try_acquire(*args)
        assert not core.reserve(*args).ok
        with pytest.raises(RateLimitExceeded):
            core.acquire(*args, 1, None)  # at once: it must not wait for itself
        held.cancel()  # a refund needs no answer: it waits for the turn's end
    finally:
        core._turn.exit()
    assert core.decide(*args, 0).remaining == 2  # refunded, nothing else taken


def test_a_reset_and_a_reconfigure_inside_the_turn_happen_at_its_end() -> None:
    from ratefuse.rates import Rate, build_specs

    core, _ = _reference_cores()[0]
    core.try_acquire(2)
    assert core._turn.enter()
    try:
        core.reset()
        core.reconfigure(build_specs([Rate(5, 3600.0)], "gcra"))
        assert core._specs[0].capacity == 2  # not yet
    finally:
        core._turn.exit()
    assert core._specs[0].capacity == 5
    assert core.decide(0).remaining == 5
