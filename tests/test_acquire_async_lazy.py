"""`acquire_async` takes its units when awaited, not when called (issue 21,
item 5): a coroutine never awaited, a task cancelled before it runs and
``wait_for(..., 0)`` take nothing. Both implementations, every local core
(one subject, keyed, shared memory); bad arguments still fail at the call.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import shm_support
from ratefuse.rates import Rate, build_specs
from ratefuse.shm import ShmBackend

RATE = Rate(2, 3600.0)  # 2 per hour: nothing comes back during a test


class Clock:
    def __init__(self) -> None:
        self.now_ns = 10**9

    def __call__(self) -> int:
        return self.now_ns


class OneKey:
    def __init__(self, core: Any) -> None:
        self.core = core

    def __getattr__(self, verb: str) -> Callable[..., Any]:
        method = getattr(self.core, verb)
        return lambda *args, **kwargs: method("k", *args, **kwargs)


@pytest.fixture(params=["single", "keyed", "shm-single", "shm-keyed"])
def core(request, impl, tmp_path) -> Iterator[Any]:
    clock = Clock()
    specs = build_specs([RATE], "gcra")
    if request.param == "single":
        yield impl.module("engine._subject").LimiterCore(specs, clock)
    elif request.param == "keyed":
        yield OneKey(impl.module("engine._keyed").KeyedLimiterCore(specs, 64, clock))
    else:
        backend = ShmBackend(tmp_path / "table", max_keys=64)
        single = request.param == "shm-single"
        shm = shm_support.core(impl.name, backend, RATE, single=single, clock=clock)
        yield shm if single else OneKey(shm)
        shm.close()


def remaining(core: Any) -> int:
    return core.decide(0).remaining


def test_a_coroutine_never_awaited_takes_nothing(core) -> None:
    coroutine = core.acquire_async()
    assert remaining(core) == 2
    coroutine.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        del coroutine
    assert remaining(core) == 2


def test_a_task_cancelled_before_it_runs_takes_nothing(core) -> None:
    async def scenario() -> None:
        task = asyncio.ensure_future(core.acquire_async())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert remaining(core) == 2


def test_wait_for_zero_takes_nothing(core) -> None:
    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(core.acquire_async(), 0)

    asyncio.run(scenario())
    assert remaining(core) == 2


def test_awaiting_takes_the_units(core) -> None:
    asyncio.run(core.acquire_async(2))
    assert remaining(core) == 0


@pytest.mark.parametrize(
    ("cost", "timeout", "field"),
    [(-1, None, "cost"), (1, -1.0, "timeout"), (1.5, None, "cost")],
)
def test_bad_arguments_fail_at_the_call(core, cost, timeout, field) -> None:
    with pytest.raises(ValueError, match=field):
        core.acquire_async(cost, timeout)
    assert remaining(core) == 2
