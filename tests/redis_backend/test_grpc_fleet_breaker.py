"""The gRPC client interceptors with the fleet breaker (Redis, one node):
two processes' breakers (two connections) share one state, so an upstream
failing for one interceptor's calls fails the other's fast too, and both
close when a probe succeeds. Manual clock, flushed by hand."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import redis
from fleet_breaker_support import FleetClock, fresh_fleet_name, make_breaker

from grpc_support import Gate, method, serve_sync
from ratefuse.breaker import BreakerConfig, State
from ratefuse.grpc import CircuitOpenRpcError, ClientInterceptor

CONFIG = BreakerConfig(
    window_size=4, minimum_calls=2, wait_duration=10.0, half_open_calls=1
)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def address(gate: Gate) -> Iterator[str]:
    with serve_sync([], gate) as served:
        yield served


def test_a_fleet_breaker_opens_for_every_client_and_closes_on_recovery(
    redis_node, gate: Gate, address: str
) -> None:
    clock = FleetClock()
    name = fresh_fleet_name()
    clients = [redis.Redis(host="127.0.0.1", port=redis_node.port) for _ in range(2)]
    breakers = [make_breaker(client, name, CONFIG, clock) for client in clients]
    channels = [
        grpc.intercept_channel(grpc.insecure_channel(address), ClientInterceptor(b))
        for b in breakers
    ]
    try:
        for channel in channels:
            with pytest.raises(grpc.RpcError) as failed:
                method(channel, "Fail")(b"x")
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        for breaker in breakers * 2:
            breaker.flush()
        assert [breaker.state for breaker in breakers] == [State.OPEN] * 2
        for channel in channels:
            with pytest.raises(CircuitOpenRpcError):
                method(channel, "Fail")(b"x")
        assert gate.calls == 2
        gate.failure = grpc.StatusCode.OK
        clock.advance(10.0)
        assert method(channels[0], "Fail")(b"x") == b"ok"
        for breaker in breakers * 2:
            breaker.flush()
        assert [breaker.state for breaker in breakers] == [State.CLOSED] * 2
        assert method(channels[1], "Fail")(b"x") == b"ok"
    finally:
        for channel in channels:
            channel.close()
        for breaker in breakers:
            breaker.close()
        for client in clients:
            client.close()
