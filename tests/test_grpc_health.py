"""The standard gRPC health service fed from a registry, on real sync and
grpc.aio servers with a real Health stub: the overall status follows the
HTTP endpoint's rule, each service follows the breakers it depends on,
Check sees changes at once and Watch after a refresh."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from breaker_support import ManualClock
from grpc_support import WAIT, Gate, serve
from ratefuse.config import Registry
from ratefuse.grpc.health import (
    AsyncHealthServicer,
    HealthServicer,
    check_services,
    serving_statuses,
)
from ratefuse.health import BackendHealth, Health

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CONFIG = {
    "breakers": {
        "inventory": {"window_size": 1, "minimum_calls": 1, "wait_duration": 10},
        "payments": {},
    }
}
SERVICES = {"shop.Orders": ["inventory", "payments"], "shop.Catalog": ["payments"]}


@pytest.fixture(params=["sync", "aio"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def status(stub: Any, service: str) -> Any:
    request = health_pb2.HealthCheckRequest(service=service)
    return stub.Check(request, timeout=WAIT).status


def test_services_follow_their_breakers_and_the_server_the_http_rule(
    kind: str,
) -> None:
    registry = Registry(CONFIG, clock=ManualClock())

    def register(server: Any) -> None:
        cls = HealthServicer if kind == "sync" else AsyncHealthServicer
        health_pb2_grpc.add_HealthServicer_to_server(cls(registry, SERVICES), server)

    with (
        serve(kind, [], Gate(), register) as address,
        grpc.insecure_channel(address) as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        assert status(stub, "") == SERVING
        assert status(stub, "shop.Orders") == SERVING
        registry.breaker("inventory").force_open()
        assert status(stub, "") == NOT_SERVING  # as /health answers 503
        assert status(stub, "shop.Orders") == NOT_SERVING
        assert status(stub, "shop.Catalog") == SERVING
        registry.breaker("inventory").disable()  # DISABLED counts as healthy
        assert status(stub, "shop.Orders") == SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            status(stub, "shop.Unknown")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_sees_a_refresh() -> None:
    registry = Registry(CONFIG, clock=ManualClock())
    servicer = HealthServicer(registry, SERVICES)

    def register(server: Any) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)

    with (
        serve("sync", [], Gate(), register) as address,
        grpc.insecure_channel(address) as channel,
    ):
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="shop.Orders"))
        assert next(watch).status == SERVING
        registry.breaker("inventory").force_open()
        servicer.refresh()
        assert next(watch).status == NOT_SERVING
        # The refresher thread notices a change without being asked.
        servicer.start(0.01)
        try:
            registry.breaker("inventory").disable()
            assert next(watch).status == SERVING
        finally:
            servicer.stop()
        watch.cancel()


def test_statuses_of_a_health_snapshot() -> None:
    down = BackendHealth(False, None, "refused", "OPEN")
    health = Health(False, {"inventory": "HALF_OPEN"}, {"main": down})
    statuses = serving_statuses(
        health,
        check_services({"a": ["inventory"], "b": ["main"], "c": ["nope"], "d": []}),
    )
    assert statuses == {
        "": NOT_SERVING,
        "a": NOT_SERVING,
        "b": NOT_SERVING,
        "c": NOT_SERVING,  # a name the health does not know
        "d": SERVING,
    }
    with pytest.raises(ValueError, match="must be a list of breaker or backend"):
        check_services({"a": "inventory"})
