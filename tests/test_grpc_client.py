"""The client interceptors (sync and grpc.aio channels) against a real
server: a breaker (on the `impl` fixture's core, manual clock) that opens
on an upstream answering UNAVAILABLE, fails fast without touching the
network, and closes when the upstream recovers; configurable failure
codes, slow calls, breakers per method; an outbound limiter that waits
within the call's deadline or fails locally with RESOURCE_EXHAUSTED."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from breaker_support import ManualClock, make_breaker
from grpc_support import Gate, method, serve_sync
from ratefuse import Rate
from ratefuse.breaker import BreakerConfig, State
from ratefuse.errors import CircuitOpenError
from ratefuse.grpc import (
    RETRY_PUSHBACK,
    AsyncClientInterceptor,
    CircuitOpenRpcError,
    ClientInterceptor,
    RateLimitedRpcError,
)
from ratefuse.rates import build_specs

# Opens when 2 of the last 2 calls failed; one probe after 10 s.
CONFIG = BreakerConfig(
    window_size=2, minimum_calls=2, wait_duration=10.0, half_open_calls=1
)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def address(gate: Gate) -> Iterator[str]:
    with serve_sync([], gate) as served:
        yield served


def outcome(call: Any, *args: Any, **kwargs: Any) -> grpc.StatusCode:
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_the_breaker_opens_on_unavailable_fails_fast_and_closes_on_recovery(
    impl: Any, gate: Gate, address: str
) -> None:
    clock = ManualClock()
    breaker = make_breaker(impl, CONFIG, clock=clock)
    interceptor = ClientInterceptor(breaker)
    with grpc.intercept_channel(grpc.insecure_channel(address), interceptor) as channel:
        fail = method(channel, "Fail")
        for _ in range(2):
            assert outcome(fail, b"x") == grpc.StatusCode.UNAVAILABLE
        assert breaker.state == State.OPEN
        assert gate.calls == 2
        with pytest.raises(CircuitOpenRpcError) as rejected:
            fail(b"x")
        assert isinstance(rejected.value, grpc.RpcError)
        assert rejected.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "breaker" in rejected.value.details()
        assert isinstance(rejected.value.cause, CircuitOpenError)
        # Streams fail fast too.
        with pytest.raises(CircuitOpenRpcError):
            list(method(channel, "Count", "unary_stream")(b"2"))
        with pytest.raises(CircuitOpenRpcError):
            list(method(channel, "Chat", "stream_stream")(iter([b"a"])))
        with pytest.raises(CircuitOpenRpcError):
            method(channel, "Sum", "stream_unary")(iter([b"a"]))
        assert gate.calls == 2  # nothing reached the network
        gate.failure = grpc.StatusCode.OK
        clock.advance(10.0)
        assert fail(b"x") == b"ok"  # the probe
        assert breaker.state == State.CLOSED
        assert list(method(channel, "Count", "unary_stream")(b"2")) == [b"0", b"1"]
        chat = method(channel, "Chat", "stream_stream")
        assert list(chat(iter([b"a", b"b"]))) == [b"A", b"B"]
        assert method(channel, "Sum", "stream_unary")(iter([b"a"])) == b"1"


def test_an_open_breaker_can_raise_circuit_open_error(impl: Any, address: str) -> None:
    breaker = make_breaker(impl, CONFIG)
    breaker.force_open()
    interceptor = ClientInterceptor(breaker, raise_circuit_open=True)
    channel = grpc.intercept_channel(grpc.insecure_channel(address), interceptor)
    with channel, pytest.raises(CircuitOpenError):
        method(channel, "Say")(b"x")


@pytest.mark.parametrize(
    ("codes", "opens"),
    [(None, False), ({grpc.StatusCode.NOT_FOUND}, True)],
)
def test_failure_codes_are_configurable(
    impl: Any, gate: Gate, address: str, codes: Any, opens: bool
) -> None:
    breaker = make_breaker(impl, CONFIG)
    options = {} if codes is None else {"failure_codes": codes}
    interceptor = ClientInterceptor(breaker, **options)
    gate.failure = grpc.StatusCode.NOT_FOUND
    with grpc.intercept_channel(grpc.insecure_channel(address), interceptor) as channel:
        for _ in range(2):
            assert outcome(method(channel, "Fail"), b"x") == grpc.StatusCode.NOT_FOUND
    assert breaker.state == (State.OPEN if opens else State.CLOSED)


def test_slow_calls_count_by_the_breaker_rules(
    impl: Any, gate: Gate, address: str
) -> None:
    clock = ManualClock()
    config = BreakerConfig(
        window_size=2, minimum_calls=2, slow_call_duration=1.0, wait_duration=10.0
    )
    breaker = make_breaker(impl, config, clock=clock)
    gate.during = lambda: clock.advance(2.0)  # each call takes 2 s
    interceptor = ClientInterceptor(breaker)
    with grpc.intercept_channel(grpc.insecure_channel(address), interceptor) as channel:
        for _ in range(2):
            assert method(channel, "Say")(b"x") == b"x"
    assert breaker.state == State.OPEN
    assert breaker.metrics().slow_calls == 2


def test_breakers_per_method_open_alone(impl: Any, gate: Gate, address: str) -> None:
    made: dict[str, Any] = {}

    def breaker_for(name: str) -> Any:
        made[name] = make_breaker(impl, CONFIG)
        return made[name]

    interceptor = ClientInterceptor(breaker_per_method=breaker_for)
    with grpc.intercept_channel(grpc.insecure_channel(address), interceptor) as channel:
        for _ in range(3):
            outcome(method(channel, "Fail"), b"x")
        assert method(channel, "Say")(b"x") == b"x"
        with pytest.raises(CircuitOpenRpcError):
            method(channel, "Fail")(b"x")
    assert made["/test.Echo/Fail"].state == State.OPEN
    assert made["/test.Echo/Say"].state == State.CLOSED
    assert sorted(made) == ["/test.Echo/Fail", "/test.Echo/Say"]


def limiter(impl: Any, clock: Any) -> Any:
    """`limiter` is one unit every 10 s on ``impl``'s core and ``clock``."""
    return impl.module("engine._subject").LimiterCore(
        build_specs([Rate(1, 10.0)], "gcra"),
        clock,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
    )


class SleepingClock(ManualClock):
    """`SleepingClock` is a manual clock whose sleeps advance it."""

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.advance(seconds)


def test_the_outbound_limiter_waits_within_the_deadline_or_fails_locally(
    impl: Any, gate: Gate, address: str
) -> None:
    clock = SleepingClock(now_ns=10**12)
    interceptor = ClientInterceptor(limiter=limiter(impl, clock))
    with grpc.intercept_channel(grpc.insecure_channel(address), interceptor) as channel:
        say = method(channel, "Say")
        assert say(b"x", timeout=5.0) == b"x"
        start = clock.now_ns
        with pytest.raises(RateLimitedRpcError) as refused:
            say(b"x", timeout=1.0)  # 10 s to wait, 1 s of deadline
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(refused.value.trailing_metadata())[RETRY_PUSHBACK] == "10000"
        assert clock.now_ns == start  # refused at once
        assert gate.calls == 1  # locally
        assert say(b"x", timeout=30.0) == b"x"  # waits 10 s, then calls
        assert clock.now_ns - start == 10_000_000_000
        assert gate.calls == 2


def test_the_outbound_limiter_takes_max_wait_when_calls_have_no_deadline(
    impl: Any, gate: Gate, address: str
) -> None:
    clock = SleepingClock(now_ns=10**12)
    interceptor = ClientInterceptor(limiter=limiter(impl, clock), max_wait=5.0)
    with grpc.intercept_channel(grpc.insecure_channel(address), interceptor) as channel:
        say = method(channel, "Say")
        assert say(b"x") == b"x"
        with pytest.raises(RateLimitedRpcError):
            say(b"x")
        assert gate.calls == 1


def test_bad_options_are_refused_at_construction(impl: Any) -> None:
    with pytest.raises(ValueError, match="not both"):
        ClientInterceptor(make_breaker(impl), breaker_per_method=lambda name: None)
    with pytest.raises(TypeError, match="breaker must have a permit_or_error"):
        ClientInterceptor(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"failure_codes must be grpc\.StatusCode"):
        ClientInterceptor(failure_codes=[grpc.StatusCode.OK])
    with pytest.raises(ValueError, match="max_wait must be seconds >= 0, got -1"):
        AsyncClientInterceptor(max_wait=-1)


async def _aio_breaker_scenario(
    impl: Any, gate: Gate, address: str, clock: ManualClock
) -> Any:
    breaker = make_breaker(impl, CONFIG, clock=clock)
    guard = AsyncClientInterceptor(breaker)
    async with grpc.aio.insecure_channel(
        address, interceptors=guard.interceptors()
    ) as channel:
        fail = channel.unary_unary("/test.Echo/Fail")
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await fail(b"x")
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert breaker.state == State.OPEN
        with pytest.raises(CircuitOpenRpcError) as rejected:
            await fail(b"x")
        assert rejected.value.code() == grpc.StatusCode.UNAVAILABLE
        count = channel.unary_stream("/test.Echo/Count")
        with pytest.raises(CircuitOpenRpcError):
            [item async for item in count(b"2")]
        total = channel.stream_unary("/test.Echo/Sum")
        with pytest.raises(CircuitOpenRpcError):
            await total(iter([b"a"]))
        chat = channel.stream_stream("/test.Echo/Chat")
        with pytest.raises(CircuitOpenRpcError):
            [item async for item in chat(iter([b"a"]))]
        assert gate.calls == 2
        gate.failure = grpc.StatusCode.OK
        clock.advance(10.0)
        assert await fail(b"x") == b"ok"
        assert breaker.state == State.CLOSED
        # A response stream's outcome is recorded when it ends.
        gate.failure = grpc.StatusCode.UNAVAILABLE
        await asyncio.wait_for(
            _failing_stream(channel, lambda: breaker.metrics().failed_calls == 1),
            timeout=10.0,
        )
        assert breaker.state == State.CLOSED
        await asyncio.wait_for(
            _failing_stream(channel, lambda: breaker.state == State.OPEN),
            timeout=10.0,
        )
        return breaker


async def _failing_stream(channel: Any, recorded: Any) -> None:
    # Count with a bad request fails on the server (int(b"bad")): UNKNOWN;
    # returns once ``recorded()`` sees the outcome (recorded in a task).
    count = channel.unary_stream("/test.Echo/Count")
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        [item async for item in count(b"bad")]
    assert failed.value.code() == grpc.StatusCode.UNKNOWN
    while not recorded():
        await asyncio.sleep(0)


def test_the_asyncio_interceptor_opens_fails_fast_and_closes(
    impl: Any, gate: Gate, address: str
) -> None:
    clock = ManualClock()
    breaker = asyncio.run(_aio_breaker_scenario(impl, gate, address, clock))
    assert breaker.state == State.OPEN  # two failed response streams


def test_the_asyncio_outbound_limiter_waits_within_the_deadline(
    impl: Any, gate: Gate, address: str
) -> None:
    clock = SleepingClock(now_ns=10**12)

    async def scenario() -> None:
        guard = AsyncClientInterceptor(limiter=limiter(impl, clock))
        async with grpc.aio.insecure_channel(
            address, interceptors=guard.interceptors()
        ) as channel:
            say = channel.unary_unary("/test.Echo/Say")
            assert await say(b"x", timeout=5.0) == b"x"
            with pytest.raises(RateLimitedRpcError) as refused:
                await say(b"x", timeout=1.0)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert gate.calls == 1
            assert await say(b"x", timeout=30.0) == b"x"
            assert gate.calls == 2

    asyncio.run(scenario())
    assert clock.now_ns - 10**12 == 10_000_000_000
