"""An adaptive concurrency limit as a gRPC method's bulkhead, on real
servers (sync grpc.server and grpc.aio): a call that returns is a latency
sample, one that aborts is a drop, and a full limit refuses with
RESOURCE_EXHAUSTED; every call gives its slot back."""

from __future__ import annotations

import time

import grpc
import pytest

from grpc_support import Gate, method, serve
from ratefuse import AdaptiveLimiter
from ratefuse.adaptive import AIMD
from ratefuse.grpc import AsyncServerInterceptor, MethodRule, ServerInterceptor


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_an_adaptive_limit_guards_a_method(kind: str) -> None:
    limit = AdaptiveLimiter(AIMD(initial_limit=1, min_limit=1, max_limit=10))
    rules = [MethodRule("/test.Echo/*", bulkhead=limit)]
    cls = ServerInterceptor if kind == "sync" else AsyncServerInterceptor
    gate = Gate()
    with (
        serve(kind, [cls(rules)], gate) as address,
        grpc.insecure_channel(address) as channel,
    ):
        assert method(channel, "Say")(b"hi", timeout=10) == b"hi"
        gate.failure = grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as failed:
            method(channel, "Fail")(b"", timeout=10)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        # grpc.aio answers an abort before its handler's task has ended:
        # wait (on the limit, not on time) for the slot to come back.
        deadline = time.monotonic() + 10
        while limit.in_flight and time.monotonic() < deadline:
            time.sleep(0.001)
        assert limit.in_flight == 0
        # Every slot held by calls in flight: the next call is refused.
        held = []
        while (permit := limit.try_acquire()) is not None:
            held.append(permit)
        with pytest.raises(grpc.RpcError) as refused:
            method(channel, "Say")(b"hi", timeout=10)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        for permit in held:
            permit.ignore()
    stats = limit.stats()
    # Two samples (the call that returned, and the drop), no slot kept.
    assert (stats.samples, stats.drops, stats.in_flight) == (2, 1, 0)
    assert stats.rejected == 1


def test_a_rule_refuses_what_is_no_concurrency_limit() -> None:
    with pytest.raises(ValueError, match="an AdaptiveLimiter or None"):
        MethodRule("/test.Echo/*", bulkhead="10")  # type: ignore[arg-type]
