"""GuardedAioChannel with the asyncio fleet breaker (Redis, one node):
its permits are awaited (the calls are PendingCalls), an upstream that
answers UNAVAILABLE opens the fleet for both channels, which then fail
fast without the network, and both close when a probe succeeds. Manual
clock, flushed by hand; a real grpc.aio server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
import redis.asyncio
from fleet_breaker_support import FleetClock, fresh_fleet_name

from grpc_support import Gate, serve_aio
from ratefuse.breaker import BreakerConfig, State
from ratefuse.grpc import CircuitOpenRpcError, GuardedAioChannel
from ratefuse.grpc.call_aio import PendingCall
from ratefuse.redis import AsyncFleetBreaker

CONFIG = BreakerConfig(
    window_size=4, minimum_calls=2, wait_duration=10.0, half_open_calls=1
)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def address(gate: Gate) -> Iterator[str]:
    with serve_aio([], gate) as served:
        yield served


def test_an_asyncio_fleet_breaker_guards_every_channel(
    redis_node: object, gate: Gate, address: str
) -> None:
    async def scenario() -> None:
        clock = FleetClock()
        name = fresh_fleet_name()
        port = redis_node.port  # type: ignore[attr-defined]
        clients = [redis.asyncio.Redis(host="127.0.0.1", port=port) for _ in "ab"]
        breakers = [
            AsyncFleetBreaker(
                name,
                CONFIG,
                client=client,
                clock=clock,
                redis_clock=clock.server_us,
                background=False,
                timeout=5.0,
            )
            for client in clients
        ]
        channels = [
            GuardedAioChannel(grpc.aio.insecure_channel(address), breaker)
            for breaker in breakers
        ]
        try:
            for breaker in breakers:
                await breaker.start()

            async def flush() -> None:
                for breaker in breakers * 2:
                    await breaker.flush()

            for channel in channels:
                call = channel.unary_unary("/test.Echo/Fail")(b"x")
                assert isinstance(call, PendingCall)
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await call
                assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
                assert await call.code() == grpc.StatusCode.UNAVAILABLE
            await flush()
            assert [breaker.state for breaker in breakers] == [State.OPEN] * 2
            for channel in channels:
                refused = channel.unary_stream("/test.Echo/Count")(b"2")
                with pytest.raises(CircuitOpenRpcError):
                    [item async for item in refused]
                assert await refused.code() == grpc.StatusCode.UNAVAILABLE
            assert gate.calls == 2
            gate.failure = grpc.StatusCode.OK
            clock.advance(10.0)
            assert await channels[0].unary_unary("/test.Echo/Fail")(b"x") == b"ok"
            await flush()
            assert [breaker.state for breaker in breakers] == [State.CLOSED] * 2
            assert await channels[1].unary_unary("/test.Echo/Fail")(b"x") == b"ok"
        finally:
            for channel in channels:
                await channel.close()
            for breaker in breakers:
                await breaker.aclose()
            for client in clients:
                await client.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 30.0))
