"""The server interceptors on Redis-backed limiters: an AsyncRedisLimiter
awaited by the grpc.aio interceptor and a RedisLimiter under the sync one,
on the session's real redis-server, sharing one quota per tenant."""

from __future__ import annotations

import grpc
import pytest
import redis
import redis.asyncio

from grpc_support import Gate, method, serve_aio, serve_sync
from ratefuse.grpc import (
    RETRY_PUSHBACK,
    AsyncServerInterceptor,
    Limit,
    MethodRule,
    ServerInterceptor,
    metadata,
)
from ratefuse.redis import AsyncRedisLimiter, RedisLimiter


def test_a_fleet_quota_shared_by_a_sync_and_an_asyncio_server(
    redis_node, fresh_name
) -> None:
    name = fresh_name()
    url = f"redis://127.0.0.1:{redis_node.port}"
    key = metadata("x-tenant")
    async_limiter = AsyncRedisLimiter(
        "3/minute", backend=redis.asyncio.Redis.from_url(url), name=name
    )
    sync_client = redis.Redis.from_url(url)
    sync_limiter = RedisLimiter("3/minute", backend=sync_client, name=name)
    rule_aio = MethodRule("/test.Echo/*", Limit(async_limiter, key=key))
    rule_sync = MethodRule("/test.Echo/*", Limit(sync_limiter, key=key))
    acme = (("x-tenant", "acme"),)
    try:
        with (
            # The async client's connections belong to the server's loop.
            serve_aio(
                [AsyncServerInterceptor([rule_aio])],
                Gate(),
                on_stop=async_limiter.aclose,
            ) as aio_address,
            serve_sync([ServerInterceptor([rule_sync])], Gate()) as sync_address,
            grpc.insecure_channel(aio_address) as aio_channel,
            grpc.insecure_channel(sync_address) as sync_channel,
        ):
            say_aio = method(aio_channel, "Say")
            say_sync = method(sync_channel, "Say")
            assert say_aio(b"1", metadata=acme) == b"1"
            assert say_sync(b"2", metadata=acme) == b"2"
            assert say_aio(b"3", metadata=acme) == b"3"
            for say in (say_sync, say_aio):
                with pytest.raises(grpc.RpcError) as denied:
                    say(b"4", metadata=acme)
                assert denied.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                pushback = int(dict(denied.value.trailing_metadata())[RETRY_PUSHBACK])
                assert 0 < pushback <= 20_000
            assert say_sync(b"other", metadata=(("x-tenant", "beta"),)) == b"other"
    finally:
        sync_client.close()
