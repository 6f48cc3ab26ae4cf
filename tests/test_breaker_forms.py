"""The ways to call through a breaker: decorator (sync and async), context
manager (sync and async), ``call``, the two-step permit, and fallbacks."""

from __future__ import annotations

import asyncio
import math
import pickle
from typing import Any

import pytest

from breaker_support import Boom, ManualClock, breaker_class, make_breaker
from ratefuse.breaker import BreakerConfig, CircuitBreaker, State
from ratefuse.core import implementation as _impl
from ratefuse.core.errors import CircuitOpenError, RatefuseError

TRIP_FAST = BreakerConfig(window_size=2, minimum_calls=1, wait_duration=4.0)


def _echo(x: int) -> int:
    return x


PICKLED = {
    name: _impl.load("engine._breaker", name).BreakerCore(name).guarded(_echo)
    for name in ("cython", "python")
    if name == "python" or _impl.IMPLEMENTATION == "cython"
}
pickled_cython = PICKLED.get("cython")
pickled_python = PICKLED["python"]
for _name, _guarded in PICKLED.items():
    _guarded.__qualname__ = _guarded.__name__ = f"pickled_{_name}"


def opened(impl: Any, **options: Any) -> CircuitBreaker:
    breaker = make_breaker(impl, TRIP_FAST, **options)
    breaker.transition_to(State.OPEN)
    return breaker


def test_sync_decorator_passes_calls_and_records_outcomes(impl: Any) -> None:
    breaker = make_breaker(impl, BreakerConfig(window_size=10, minimum_calls=10))

    @breaker
    def divide(a: int, b: int = 1) -> float:
        """Divides."""
        return a / b

    assert divide(6, b=3) == 2.0
    assert divide(1) == 1.0
    with pytest.raises(ZeroDivisionError):
        divide(1, 0)
    assert (divide.__name__, divide.__doc__) == ("divide", "Divides.")
    assert divide.__wrapped__.__name__ == "divide"  # type: ignore[attr-defined]
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls) == (3, 1)
    assert metrics.failure_rate == pytest.approx(100 / 3)


def test_decorated_methods_bind(impl: Any) -> None:
    breaker = make_breaker(impl)

    class Client:
        def __init__(self, name: str) -> None:
            self.name = name

        @breaker
        def greet(self, greeting: str) -> str:
            return f"{greeting}, {self.name}"

    assert Client("ada").greet("hi") == "hi, ada"
    assert Client.__dict__["greet"].__get__(None, Client) is Client.__dict__["greet"]
    assert breaker.metrics().calls == 1


def test_guarded_functions_pickle_by_reference(impl: Any) -> None:
    guarded = PICKLED.get(impl.name)
    if guarded is None:
        pytest.skip("compiled extensions are not built")
    assert pickle.loads(pickle.dumps(guarded)) is guarded
    assert guarded(3) == 3


def test_the_call_slot_matches_vectorcall(impl: Any) -> None:
    # PyObject_Call (a tuple and a dict) reaches the same guarded path.
    breaker = make_breaker(impl)
    guarded = breaker(lambda a, b=0: a - b)
    assert type(guarded).__call__(guarded, 5, b=2) == 3
    assert breaker.metrics().calls == 1


def test_open_breaker_raises_circuit_open_error(impl: Any) -> None:
    clock = ManualClock()
    breaker = opened(impl, clock=clock)
    calls = []
    guarded = breaker(calls.append)
    clock.advance(1.5)
    with pytest.raises(CircuitOpenError) as caught:
        guarded(1)
    assert isinstance(caught.value, RatefuseError)
    assert (caught.value.name, caught.value.retry_after) == ("test", 2.5)
    assert str(caught.value) == "circuit breaker 'test' is open: retry after 2.5s"
    assert calls == []
    assert breaker.metrics().rejected_calls == 1


def test_fallbacks_answer_rejected_calls(impl: Any) -> None:
    breaker = opened(impl, fallback=lambda *args, **kwargs: ("breaker", args, kwargs))
    assert breaker.fallback is not None
    guarded = breaker(lambda x, y=0: x)
    assert guarded(1, y=2) == ("breaker", (1,), {"y": 2})
    own = breaker.decorate(lambda x: x, fallback=lambda x: ("own", x))
    assert own(3) == ("own", 3)
    decorator = breaker.decorate(fallback=lambda x: ("partial", x))
    assert decorator(lambda x: x)(4) == ("partial", 4)
    assert breaker.call(lambda x: x, 5) == ("breaker", (5,), {})
    assert breaker.metrics().rejected_calls == 4


def test_call_runs_sync_and_async_functions(impl: Any) -> None:
    breaker = make_breaker(impl)

    async def double(x: int) -> int:
        return 2 * x

    assert breaker.call(divmod, 7, 2) == (3, 1)
    assert asyncio.run(breaker.call(double, 4)) == 8
    assert breaker.metrics().calls == 2
    opened_breaker = opened(impl)
    with pytest.raises(CircuitOpenError):
        opened_breaker.call(divmod, 7, 2)
    with pytest.raises(CircuitOpenError):
        asyncio.run(opened_breaker.call(double, 4))


def test_async_decorator(impl: Any) -> None:
    clock = ManualClock()
    breaker = make_breaker(
        impl,
        BreakerConfig(window_size=2, minimum_calls=2, slow_call_duration=1.0),
        clock=clock,
    )

    @breaker
    async def fetch(delay: float, fail: bool = False) -> str:
        await asyncio.sleep(0)
        clock.advance(delay)
        if fail:
            raise Boom()
        return "body"

    async def main() -> None:
        assert await fetch(2.0) == "body"
        with pytest.raises(Boom):
            await fetch(0.0, fail=True)
        assert breaker.state == State.OPEN
        with pytest.raises(CircuitOpenError):
            await fetch(0.0)

    asyncio.run(main())
    assert fetch.__name__ == "fetch"
    assert fetch.breaker is breaker  # type: ignore[attr-defined]
    assert breaker.metrics().slow_calls == 1


def test_async_fallbacks_may_be_sync_or_async(impl: Any) -> None:
    async def async_fallback(x: int) -> str:
        return f"async {x}"

    breaker = opened(impl, fallback=async_fallback)

    @breaker
    async def work(x: int) -> str:
        return f"work {x}"

    sync_fallback = breaker.decorate(work, fallback=lambda x: f"sync {x}")
    assert asyncio.run(work(1)) == "async 1"
    assert asyncio.run(sync_fallback(2)) == "sync 2"


def test_cancelled_probe_is_not_recorded_and_frees_its_slot(impl: Any) -> None:
    clock = ManualClock()
    breaker = opened(impl, clock=clock)
    clock.advance(4)

    @breaker
    async def hang() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.create_task(hang())
        await asyncio.sleep(0)
        assert breaker.state == State.HALF_OPEN
        assert breaker.metrics().probes_issued == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.metrics().probes_issued == 0

    asyncio.run(main())


def test_guard_is_a_sync_and_async_context_manager(impl: Any) -> None:
    breaker = make_breaker(impl, BreakerConfig(window_size=4, minimum_calls=4))
    with breaker.guard():
        pass
    with pytest.raises(Boom), breaker.guard():
        raise Boom()

    async def main() -> None:
        async with breaker.guard():
            pass
        with pytest.raises(Boom):
            async with breaker.guard():
                raise Boom()

    asyncio.run(main())
    assert breaker.state == State.OPEN
    with pytest.raises(CircuitOpenError), breaker.guard():
        pytest.fail("an open breaker ran the block")
    guard = make_breaker(impl).guard()
    with guard:
        pass
    with pytest.raises(RuntimeError, match="only once"), guard:
        pass


def test_exception_rules(impl: Any) -> None:
    class Upstream(Exception):
        def __init__(self, status: int) -> None:
            self.status = status

    class Client(Upstream):
        pass

    config = BreakerConfig(
        record_exceptions=(Upstream, TimeoutError),
        ignore_exceptions=(Client,),
        exception_predicate=lambda exc: getattr(exc, "status", 500) >= 500,
        result_predicate=lambda result: result == 503,
    )
    breaker = make_breaker(impl, config)
    outcomes = {"success": 0, "failure": 1, "ignored": 2}
    cases = [
        (Upstream(502), "failure"),
        (Upstream(404), "success"),
        (Client(500), "ignored"),
        (TimeoutError(), "failure"),
        (ValueError(), "success"),
        (KeyboardInterrupt(), "ignored"),
        (asyncio.CancelledError(), "ignored"),
    ]
    for exc, expected in cases:
        assert breaker.classify_exception(exc) == outcomes[expected], exc
    assert breaker.classify_result(503) == outcomes["failure"]
    assert breaker.classify_result(200) == outcomes["success"]


def test_a_raising_predicate_frees_the_permit_and_propagates(impl: Any) -> None:
    def predicate(exc: BaseException) -> bool:
        raise LookupError("predicate broke")

    clock = ManualClock()
    broken = make_breaker(
        impl,
        BreakerConfig(
            window_size=2,
            minimum_calls=1,
            wait_duration=1,
            half_open_calls=1,
            exception_predicate=predicate,
            result_predicate=predicate,
        ),
        clock=clock,
    )
    broken.transition_to(State.OPEN)
    clock.advance(1)

    def fail() -> None:
        raise Boom()

    with pytest.raises(LookupError):
        broken(fail)()
    assert broken.metrics().probes_issued == 0
    with pytest.raises(LookupError):
        broken(lambda: 1)()
    permit = broken.try_acquire()
    assert permit is not None
    with pytest.raises(LookupError):
        permit.on_error(0.0, Boom())
    assert broken.state == State.HALF_OPEN
    assert broken.metrics().probes_issued == 0


def test_permits(impl: Any) -> None:
    clock = ManualClock()
    breaker = make_breaker(
        impl,
        BreakerConfig(window_size=4, minimum_calls=4, result_predicate=bool),
        clock=clock,
    )
    first = breaker.try_acquire()
    second = breaker.try_acquire()
    assert first is not None
    assert first is second
    assert first.generation == breaker.generation == 1
    assert repr(first) == "Permit(breaker='test', generation=1)"
    first.on_success(0.25)
    first.on_result(0.0, 0)
    first.on_result(0.0, "truthy")
    with pytest.raises(ValueError, match="duration"):
        first.on_success(-1.0)
    with pytest.raises(ValueError, match="duration"):
        first.on_success(math.nan)
    with pytest.raises(TypeError):
        first.on_success("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="now"):
        first.on_success(0.0, now=-1)
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls) == (3, 1)
    assert clock.reads == 0


def test_explicit_now_overrides_the_clock(impl: Any) -> None:
    clock = ManualClock()
    breaker = make_breaker(impl, TRIP_FAST, clock=clock)
    breaker.transition_to(State.OPEN, now=10**9)
    assert breaker.retry_after(now=2 * 10**9) == 3.0
    assert breaker.try_acquire(now=4 * 10**9) is None
    assert breaker.try_acquire(now=5 * 10**9) is not None
    assert clock.reads == 0
    with pytest.raises(ValueError, match="now"):
        breaker.try_acquire(now=2**63)


def test_a_bad_clock_raises(impl: Any) -> None:
    breaker = breaker_class(impl)("bad", TRIP_FAST, clock=lambda: -5)
    with pytest.raises(ValueError, match="now must be"):
        breaker.transition_to(State.OPEN)
    assert breaker.state == State.CLOSED


@pytest.mark.parametrize(
    ("now", "match"),
    [
        (1.5, "now must be an int \\(nanoseconds\\), got 1.5"),
        ("0", "now must be an int \\(nanoseconds\\), got '0'"),
        (-1, "now must be in \\[0, 2\\*\\*62\\] nanoseconds, got -1"),
    ],
)
def test_a_bad_now_is_the_limiters_value_error(impl: Any, now: object, match) -> None:
    # The breakers and the limiters refuse a bad `now` with one error.
    breaker = breaker_class(impl)("now", TRIP_FAST)
    with pytest.raises(ValueError, match=match):
        breaker.try_acquire(now=now)
    clocked = breaker_class(impl)("clock", TRIP_FAST, clock=lambda: now)
    with pytest.raises(ValueError, match=match):
        clocked.transition_to(State.OPEN)  # reads the clock


def test_default_clock_is_monotonic(impl: Any) -> None:
    breaker = breaker_class(impl)("real", TRIP_FAST)
    assert breaker.clock is None
    breaker.transition_to(State.OPEN)
    assert 3.9 < breaker.retry_after() <= 4.0
    assert breaker.now_ns() > 0


def test_config_and_repr(impl: Any) -> None:
    breaker = breaker_class(impl)("payments")
    assert breaker.config == BreakerConfig()
    assert breaker.name == "payments"
    assert breaker.spec == BreakerConfig().to_spec()
    assert not breaker.timed
    assert repr(breaker) == "<CircuitBreaker 'payments' CLOSED>"
    assert CircuitBreaker.State is State
    with pytest.raises(TypeError, match="BreakerConfig"):
        breaker_class(impl)("x", {"window_size": 3})  # type: ignore[arg-type]
