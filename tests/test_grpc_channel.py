"""GuardedAioChannel against a real grpc.aio server: a breaker (on the
`impl` fixture's core, manual clock) that opens on an upstream answering
UNAVAILABLE, fails fast without touching the network (every call kind),
and closes when the upstream recovers; configurable failure codes,
breakers per method; an outbound limiter that waits within the call's
timeout or fails locally with RESOURCE_EXHAUSTED; the channel's own
methods delegated. The common unary call runs on the `impl` fixture's
twin of ``ratefuse.grpc._unary`` (`unary_twin`); its calls answer as the
real ones, and a timed breaker's calls (slow-call tracking) take the
general path."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest

from breaker_support import ManualClock, make_breaker
from grpc_support import Gate, serve_aio
from ratefuse.breaker import BreakerConfig, State
from ratefuse.errors import CircuitOpenError
from ratefuse.grpc import (
    RETRY_PUSHBACK,
    CircuitOpenRpcError,
    GuardedAioChannel,
    RateLimitedRpcError,
    channel_aio,
)
from test_grpc_client import CONFIG, SleepingClock, limiter

WAIT = 10.0


@pytest.fixture(autouse=True)
def unary_twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`unary_twin` puts a test that takes `impl` on that implementation's
    twin of the common unary call, as its breaker is on that core; it is
    the twin the channel uses."""
    if "impl" not in request.fixturenames:
        return channel_aio.UNARY
    twin = request.getfixturevalue("impl").module("grpc._unary")
    monkeypatch.setattr(channel_aio, "UNARY", twin)
    return twin


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def address(gate: Gate) -> Iterator[str]:
    with serve_aio([], gate) as served:
        yield served


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), WAIT))


async def outcome(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def refused_everywhere(channel: Any, error: type[BaseException]) -> None:
    """Every call kind fails with ``error`` where its outcome is read."""
    with pytest.raises(error):
        await channel.unary_unary("/test.Echo/Say")(b"x")
    with pytest.raises(error):
        [item async for item in channel.unary_stream("/test.Echo/Count")(b"2")]
    with pytest.raises(error):
        await channel.stream_unary("/test.Echo/Sum")(iter([b"a"]))
    with pytest.raises(error):
        [item async for item in channel.stream_stream("/test.Echo/Chat")(iter([b"a"]))]


def test_the_breaker_opens_on_unavailable_fails_fast_and_closes_on_recovery(
    impl: Any, gate: Gate, address: str
) -> None:
    clock = ManualClock()
    breaker = make_breaker(impl, CONFIG, clock=clock)

    async def scenario() -> None:
        async with GuardedAioChannel(
            grpc.aio.insecure_channel(address), breaker
        ) as channel:
            fail = channel.unary_unary("/test.Echo/Fail")
            for _ in range(2):
                assert await outcome(fail(b"x")) == grpc.StatusCode.UNAVAILABLE
            assert breaker.state == State.OPEN  # recorded before await returned
            assert gate.calls == 2
            refused = fail(b"x")
            with pytest.raises(CircuitOpenRpcError) as rejected:
                await refused
            assert rejected.value.code() == grpc.StatusCode.UNAVAILABLE
            assert isinstance(rejected.value.cause, CircuitOpenError)
            assert await refused.code() == grpc.StatusCode.UNAVAILABLE
            assert "breaker" in await refused.details()
            assert refused.done()
            assert not refused.cancelled()
            await refused_everywhere(channel, CircuitOpenRpcError)
            assert gate.calls == 2  # nothing reached the network
            gate.failure = grpc.StatusCode.OK
            clock.advance(10.0)
            assert await fail(b"x") == b"ok"  # the probe
            assert breaker.state == State.CLOSED
            count = channel.unary_stream("/test.Echo/Count")
            assert [item async for item in count(b"2")] == [b"0", b"1"]
            chat = channel.stream_stream("/test.Echo/Chat")
            assert [item async for item in chat(iter([b"a", b"b"]))] == [b"A", b"B"]
            assert await channel.stream_unary("/test.Echo/Sum")(iter([b"a"])) == b"1"
            metrics = breaker.metrics()  # the window holds the last 2
            assert (metrics.calls, metrics.failed_calls) == (2, 0)
            # A response stream's failure is recorded when it ends: with the
            # window [OK, UNKNOWN] at 50% failures, the breaker opens.
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                [item async for item in count(b"bad")]  # int(b"bad") fails
            assert failed.value.code() == grpc.StatusCode.UNKNOWN
            assert breaker.state == State.OPEN
            assert breaker.metrics().failed_calls == 1

    run(scenario)


def test_an_open_breaker_can_raise_circuit_open_error(impl: Any, address: str) -> None:
    breaker = make_breaker(impl, CONFIG)
    breaker.force_open()

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        channel = GuardedAioChannel(real, breaker, raise_circuit_open=True)
        async with channel:
            await refused_everywhere(channel, CircuitOpenError)

    run(scenario)


@pytest.mark.parametrize(
    ("codes", "opens"),
    [(None, False), ({grpc.StatusCode.NOT_FOUND}, True)],
)
def test_failure_codes_are_configurable(
    impl: Any, gate: Gate, address: str, codes: Any, opens: bool
) -> None:
    breaker = make_breaker(impl, CONFIG)
    options = {} if codes is None else {"failure_codes": codes}
    gate.failure = grpc.StatusCode.NOT_FOUND

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        async with GuardedAioChannel(real, breaker, **options) as channel:
            for _ in range(2):
                call = channel.unary_unary("/test.Echo/Fail")(b"x")
                assert await outcome(call) == grpc.StatusCode.NOT_FOUND

    run(scenario)
    assert breaker.state == (State.OPEN if opens else State.CLOSED)


def test_cancelled_calls_leave_no_outcome(impl: Any, gate: Gate, address: str) -> None:
    breaker = make_breaker(impl, CONFIG)

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        async with GuardedAioChannel(real, breaker) as channel:
            call = channel.unary_unary("/test.Echo/Hold")(b"x")
            await asyncio.get_running_loop().run_in_executor(
                None, gate.entered.wait, WAIT
            )
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call

    run(scenario)
    assert breaker.metrics().calls == 0


def test_breakers_per_method_open_alone(impl: Any, gate: Gate, address: str) -> None:
    made: dict[str, Any] = {}

    def breaker_for(name: str) -> Any:
        made[name] = make_breaker(impl, CONFIG)
        return made[name]

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        async with GuardedAioChannel(real, breaker_per_method=breaker_for) as channel:
            for _ in range(3):
                await outcome(channel.unary_unary("/test.Echo/Fail")(b"x"))
            assert await channel.unary_unary("/test.Echo/Say")(b"x") == b"x"

    run(scenario)
    assert made["/test.Echo/Fail"].state == State.OPEN
    assert made["/test.Echo/Say"].state == State.CLOSED
    assert gate.calls == 3  # the third Fail was refused locally


def test_the_outbound_limiter_waits_within_the_timeout_or_fails_locally(
    impl: Any, gate: Gate, address: str
) -> None:
    clock = SleepingClock(now_ns=10**12)
    breaker = make_breaker(impl, CONFIG)

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        channel = GuardedAioChannel(real, breaker, limiter=limiter(impl, clock))
        async with channel:
            say = channel.unary_unary("/test.Echo/Say")
            assert await say(b"x", timeout=5.0) == b"x"
            start = clock.now_ns
            refused = say(b"x", timeout=1.0)  # 10 s to wait, 1 s of timeout
            with pytest.raises(RateLimitedRpcError) as limited:
                await refused
            assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert dict(limited.value.trailing_metadata())[RETRY_PUSHBACK] == "10000"
            assert await refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            metadata = dict(await refused.trailing_metadata())
            assert metadata[RETRY_PUSHBACK] == "10000"
            assert refused.done()
            assert clock.now_ns == start  # refused at once
            assert gate.calls == 1  # locally
            waited = say(b"x", timeout=30.0)  # waits 10 s, then calls
            assert await waited == b"x"
            assert await waited.code() == grpc.StatusCode.OK
            assert clock.now_ns - start == 10_000_000_000
            assert gate.calls == 2
            clock.advance(10.0)
            count = channel.unary_stream("/test.Echo/Count")
            assert [item async for item in count(b"2")] == [b"0", b"1"]
            assert breaker.metrics().calls == 2
            # An open breaker refuses before the limiter is asked.
            breaker.force_open()
            await refused_everywhere(channel, CircuitOpenRpcError)
            assert clock.now_ns - start == 20_000_000_000

    run(scenario)


def test_the_outbound_limiter_takes_max_wait_without_a_timeout(
    impl: Any, gate: Gate, address: str
) -> None:
    clock = SleepingClock(now_ns=10**12)

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        channel = GuardedAioChannel(real, limiter=limiter(impl, clock), max_wait=5.0)
        async with channel:
            say = channel.unary_unary("/test.Echo/Say")
            assert await say(b"x") == b"x"
            with pytest.raises(RateLimitedRpcError):
                await say(b"x")
            assert gate.calls == 1

    run(scenario)


def test_the_channel_methods_are_the_wrapped_channels(impl: Any, address: str) -> None:
    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        channel = GuardedAioChannel(real, make_breaker(impl, CONFIG))
        assert isinstance(channel, grpc.aio.Channel)
        await channel.channel_ready()
        assert channel.get_state() == grpc.ChannelConnectivity.READY
        # What generated stubs pass.
        say = channel.unary_unary(
            "/test.Echo/Say",
            request_serializer=None,
            response_deserializer=None,
            _registered_method=True,
        )
        assert await say(b"x") == b"x"
        await channel.close()
        assert real.get_state() == grpc.ChannelConnectivity.SHUTDOWN

    run(scenario)


def test_bad_options_are_refused_at_construction(impl: Any) -> None:
    with pytest.raises(TypeError, match=r"channel must be a grpc\.aio\.Channel"):
        GuardedAioChannel(object())

    async def scenario() -> None:
        real = grpc.aio.insecure_channel("127.0.0.1:9")
        with pytest.raises(ValueError, match="not both"):
            GuardedAioChannel(
                real, make_breaker(impl), breaker_per_method=lambda name: None
            )
        with pytest.raises(ValueError, match="max_wait must be seconds >= 0"):
            GuardedAioChannel(real, max_wait=-1)
        await real.close()

    run(scenario)


class BlockedClock(ManualClock):
    """`BlockedClock` is a manual clock whose asyncio sleeps never end
    (until cancelled); ``asleep`` is set when one begins."""

    def __init__(self, now_ns: int) -> None:
        super().__init__(now_ns)
        self.asleep = asyncio.Event()

    def sleep(self, seconds: float) -> None:
        raise AssertionError("a GuardedAioChannel never blocks its loop")

    async def async_sleep(self, seconds: float) -> None:
        self.asleep.set()
        await asyncio.Event().wait()


def test_a_call_cancelled_while_it_waits_returns_the_probe(
    impl: Any, gate: Gate, address: str
) -> None:
    clock = BlockedClock(now_ns=10**12)
    breaker = make_breaker(impl, CONFIG, clock=clock)
    breaker.transition_to(State.OPEN)
    breaker.transition_to(State.HALF_OPEN)  # one probe
    outbound = limiter(impl, clock)
    assert outbound.try_acquire()  # the next unit is 10 s away
    ended: list[Any] = []

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        async with GuardedAioChannel(real, breaker, limiter=outbound) as channel:
            call = channel.unary_unary("/test.Echo/Say")(b"x", timeout=60.0)
            call.add_done_callback(ended.append)
            await clock.asleep.wait()  # holds the probe, waits for the limiter
            assert not call.done()
            assert call.time_remaining() is None
            assert call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert call.cancelled()
            await asyncio.sleep(0)  # done callbacks run in the next turn
            assert ended == [call]
            assert gate.calls == 0

    run(scenario)
    probe = breaker.permit_or_error()  # the probe was given back
    assert not isinstance(probe, CircuitOpenError)


def test_a_waiting_stream_call_reads_and_writes_once_started(
    impl: Any, address: str
) -> None:
    clock = SleepingClock(now_ns=10**12)
    ended: list[Any] = []

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        channel = GuardedAioChannel(real, limiter=limiter(impl, clock))
        async with channel:
            chat = channel.stream_stream("/test.Echo/Chat")(timeout=60.0)
            chat.add_done_callback(ended.append)
            await chat.write(b"a")
            assert 0 < chat.time_remaining() <= 60.0
            assert await chat.read() == b"A"
            await chat.done_writing()
            assert await chat.read() is grpc.aio.EOF
            assert await chat.code() == grpc.StatusCode.OK
            assert await chat.details() == ""
            await chat.wait_for_connection()
            assert chat.done()
            assert not chat.cancelled()
            assert dict(await chat.initial_metadata()) == {}
            assert dict(await chat.trailing_metadata()) == {}

    run(scenario)
    assert len(ended) == 1


def test_a_registry_client_guards_the_channel(gate: Gate, address: str) -> None:
    from ratefuse.config import Registry

    registry = Registry(
        {
            "breakers": {"echo": {"failure_rate_threshold": 50}},
            "grpc": {"clients": {"echo": {"breaker": "echo"}}},
        }
    )

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        channel = GuardedAioChannel(real, registry=registry, client="echo")
        async with channel:
            say = channel.unary_unary("/test.Echo/Say")
            assert await say(b"x") == b"x"
            registry.breaker("echo").force_open()
            with pytest.raises(CircuitOpenRpcError):
                await say(b"x")
            assert gate.calls == 1

    run(scenario)


def test_a_unary_call_dropped_unawaited_gives_its_probe_back(
    impl: Any, address: str
) -> None:
    breaker = make_breaker(impl, CONFIG)
    breaker.transition_to(State.OPEN)
    breaker.transition_to(State.HALF_OPEN)  # one probe

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        async with GuardedAioChannel(real, breaker) as channel:
            say = channel.unary_unary("/test.Echo/Say")
            call = say(b"x")  # holds the probe
            assert await call.code() == grpc.StatusCode.OK  # the real call's
            refused = say(b"x")
            with pytest.raises(CircuitOpenRpcError):
                await refused
            del call  # never awaited: no outcome, the probe is free again
            assert breaker.state == State.HALF_OPEN
            assert await say(b"x") == b"x"
            assert breaker.state == State.CLOSED

    run(scenario)


def test_a_refused_call_answers_as_a_failed_call(impl: Any, address: str) -> None:
    breaker = make_breaker(impl, CONFIG)
    breaker.force_open()
    ended: list[Any] = []

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        async with GuardedAioChannel(real, breaker) as channel:
            chat = channel.stream_stream("/test.Echo/Chat")()
            chat.add_done_callback(ended.append)
            for step in (chat.write(b"a"), chat.read(), chat.wait_for_connection()):
                with pytest.raises(CircuitOpenRpcError):
                    await step
            await chat.done_writing()
            assert await chat.initial_metadata() == ()
            assert await chat.trailing_metadata() == ()
            assert "CircuitOpenRpcError" in await chat.debug_error_string()
            assert not chat.cancel()
            assert chat.time_remaining() is None
            await asyncio.sleep(0)  # the callback runs in the next turn
            assert ended == [chat]

    run(scenario)


def test_the_common_unary_call_takes_the_twins_path(
    impl: Any, unary_twin: Any, address: str
) -> None:
    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        async with real:
            local = GuardedAioChannel(real, make_breaker(impl, CONFIG))
            for made in (local.unary_unary("/m"), local.stream_unary("/m")):
                assert isinstance(made, unary_twin.UnaryMultiCallable)
            per_method = GuardedAioChannel(
                real, breaker_per_method=lambda name: make_breaker(impl, CONFIG)
            )
            general = per_method.unary_unary("/m")
            assert isinstance(general, channel_aio.GuardedMultiCallable)
            bare = GuardedAioChannel(real).unary_unary("/m")  # nothing guards it
            assert isinstance(bare, grpc.aio.UnaryUnaryMultiCallable)
            assert isinstance(
                local.unary_stream("/m"), channel_aio.GuardedMultiCallable
            )

    run(scenario)


SLOW = BreakerConfig(
    window_size=2, minimum_calls=2, slow_call_duration=1.0, wait_duration=10.0
)


@pytest.mark.parametrize("switched_on", [False, True])
def test_slow_calls_count_by_the_breaker_rules(
    impl: Any, gate: Gate, address: str, switched_on: bool
) -> None:
    # switched_on: the breaker starts untimed and is reconfigured for
    # slow calls after its multicallable is made, which then times calls.
    clock = ManualClock()
    breaker = make_breaker(impl, CONFIG if switched_on else SLOW, clock=clock)
    gate.during = lambda: clock.advance(2.0)  # each call takes 2 s

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        async with GuardedAioChannel(real, breaker) as channel:
            say = channel.unary_unary("/test.Echo/Say")
            if switched_on:
                breaker.reconfigure(SLOW)
            for _ in range(2):
                assert await say(b"x") == b"x"

    run(scenario)
    assert breaker.state == State.OPEN
    assert breaker.metrics().slow_calls == 2


def test_a_unary_call_answers_as_the_real_call(
    impl: Any, gate: Gate, address: str
) -> None:
    breaker = make_breaker(impl, CONFIG)
    ended: list[Any] = []

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        async with GuardedAioChannel(real, breaker) as channel:
            call = channel.unary_unary("/test.Echo/Say")(b"x", timeout=WAIT)
            call.add_done_callback(ended.append)
            assert 0 < call.time_remaining() <= WAIT
            assert await call == b"x"
            assert await call == b"x"  # awaited again: recorded once
            assert await call.code() == grpc.StatusCode.OK
            assert await call.details() == ""
            assert tuple(await call.initial_metadata()) == ()
            assert tuple(await call.trailing_metadata()) == ()
            assert call.done()
            assert not call.cancelled()
            failed = channel.unary_unary("/test.Echo/Fail")(b"x")
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await failed
            assert error.value.details() == "failing on purpose"
            assert await failed.code() == grpc.StatusCode.UNAVAILABLE
            assert await failed.details() == "failing on purpose"
            await asyncio.sleep(0)  # done callbacks run in the loop
            assert len(ended) == 1
            assert ended[0].done()

    run(scenario)
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls) == (2, 1)


def test_a_task_cancelled_while_awaiting_a_call_leaves_no_outcome(
    impl: Any, gate: Gate, address: str
) -> None:
    breaker = make_breaker(impl, CONFIG)
    breaker.transition_to(State.OPEN)
    breaker.transition_to(State.HALF_OPEN)  # one probe

    async def scenario() -> None:
        real = grpc.aio.insecure_channel(address)
        async with GuardedAioChannel(real, breaker) as channel:
            call = channel.unary_unary("/test.Echo/Hold")(b"x")

            async def wait() -> Any:
                return await call

            waiting = asyncio.ensure_future(wait())
            await asyncio.get_running_loop().run_in_executor(
                None, gate.entered.wait, WAIT
            )
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert breaker.state == State.HALF_OPEN  # the probe is free again
            assert await channel.unary_unary("/test.Echo/Say")(b"x") == b"x"
            assert breaker.state == State.CLOSED

    run(scenario)
