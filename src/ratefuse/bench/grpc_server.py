"""The gRPC servers and clients ``ratefuse bench grpc`` and
``benchmarks/grpc_instructions.py`` measure: a trivial unary method
(``/bench.Echo/Say``, bytes in and out) on a grpc.aio server, bare or
under the server interceptor, and a client calling it: grpc.aio, bare,
under the client interceptor or through `ratefuse.grpc.GuardedAioChannel`;
or sync, bare or under the sync client interceptor.

``python -m ratefuse.bench.grpc_server VARIANT`` binds a free 127.0.0.1
port, prints it on a line of its own, and serves until SIGTERM.
``python -m ratefuse.bench.grpc_server client VARIANT PORT CALLS`` makes
``CALLS`` sequential calls to that port and exits.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

METHOD = "/bench.Echo/Say"
SERVER_VARIANTS = ("plain", "passthrough", "limited")
"""`SERVER_VARIANTS`: "plain" is the bare server; "passthrough" has an
interceptor that only hands the handler on (what grpc.aio's interceptor
machinery costs by itself); "limited" adds the server interceptor with
one keyed limit (a KeyedLimiter keyed by the peer's address, high enough
never to deny, so every call pays for the rule, the key and the
decision)."""
CLIENT_VARIANTS = ("plain", "interceptor", "breaker", "channel-floor", "channel")
"""`CLIENT_VARIANTS` (grpc.aio): "plain" is the bare channel; "interceptor"
adds the client interceptor with neither breaker nor limiter (what
grpc.aio's interceptor machinery costs by itself: it runs every
intercepted call in a task of its own); "breaker" adds it with a CLOSED
CircuitBreaker; "channel" is the bare channel in a GuardedAioChannel with
a CLOSED CircuitBreaker (its unary calls take the compiled common path),
"channel-floor" the same wrapper with no breaker (with nothing to guard it
hands back the real channel's multicallables: what wrapping the channel
costs by itself, nothing per call)."""
SYNC_CLIENT_VARIANTS = ("sync-plain", "sync-interceptor", "sync-breaker")
"""`SYNC_CLIENT_VARIANTS`: a sync channel, bare ("sync-plain") or under
the sync ClientInterceptor (``grpc.intercept_channel``) with no breaker
("sync-interceptor": what grpc's interceptor machinery costs by itself)
or a CLOSED CircuitBreaker ("sync-breaker")."""
NEVER_DENYING_RATE = "1000000000/s"


def make_server(variant: str) -> Any:
    """`make_server` builds the grpc.aio server of ``variant`` (call it in
    the loop that will run it)."""
    import grpc

    if variant not in SERVER_VARIANTS:
        raise ValueError(f"variant must be one of {SERVER_VARIANTS}, got {variant!r}")
    interceptors: list[Any] = []
    if variant == "passthrough":

        class Passthrough(grpc.aio.ServerInterceptor):  # type: ignore[misc]
            # The least a grpc.aio server interceptor can do.
            async def intercept_service(self, continuation: Any, details: Any) -> Any:
                return await continuation(details)

        interceptors.append(Passthrough())
    if variant == "limited":
        from ratefuse.grpc import AsyncServerInterceptor, Limit, MethodRule
        from ratefuse.keyed import KeyedLimiter

        limit = Limit(KeyedLimiter(NEVER_DENYING_RATE))
        interceptors.append(
            AsyncServerInterceptor([MethodRule("/bench.Echo/*", limit)])
        )

    async def say(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)}
    )
    server = grpc.aio.server(interceptors=interceptors)
    server.add_generic_rpc_handlers((handler,))
    return server


def make_channel(variant: str, address: str) -> Any:
    """`make_channel` is the grpc.aio channel of client ``variant``."""
    import grpc

    if variant not in CLIENT_VARIANTS:
        raise ValueError(f"variant must be one of {CLIENT_VARIANTS}, got {variant!r}")
    if variant == "plain":
        return grpc.aio.insecure_channel(address)
    from ratefuse.breaker import CircuitBreaker
    from ratefuse.grpc import AsyncClientInterceptor, GuardedAioChannel

    breaker = CircuitBreaker("bench") if variant in ("breaker", "channel") else None
    if variant.startswith("channel"):
        return GuardedAioChannel(grpc.aio.insecure_channel(address), breaker)
    guard = AsyncClientInterceptor(breaker)
    return grpc.aio.insecure_channel(address, interceptors=guard.interceptors())


def make_sync_channel(variant: str, address: str) -> Any:
    """`make_sync_channel` is the sync channel of client ``variant``."""
    import grpc

    if variant not in SYNC_CLIENT_VARIANTS:
        raise ValueError(
            f"variant must be one of {SYNC_CLIENT_VARIANTS}, got {variant!r}"
        )
    channel = grpc.insecure_channel(address)
    if variant == "sync-plain":
        return channel
    from ratefuse.breaker import CircuitBreaker
    from ratefuse.grpc import ClientInterceptor

    return grpc.intercept_channel(channel, ClientInterceptor(CircuitBreaker("bench")))


async def call_many(channel: Any, calls: int) -> None:
    """`call_many` makes ``calls`` sequential unary calls on ``channel``."""
    say = channel.unary_unary(METHOD)
    for _ in range(calls):
        await say(b"x")


def call_many_sync(channel: Any, calls: int) -> None:
    """`call_many_sync` makes ``calls`` sequential unary calls on the sync
    ``channel``."""
    say = channel.unary_unary(METHOD)
    for _ in range(calls):
        say(b"x")


async def _serve(variant: str) -> None:
    server = make_server(variant)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(None)


async def _client(variant: str, port: int, calls: int) -> None:
    async with make_channel(variant, f"127.0.0.1:{port}") as channel:
        await call_many(channel, calls)


def main(argv: list[str]) -> None:
    """`main` serves ``argv[0]``'s server, or runs a client (see module)."""
    if argv[0] == "client" and argv[1] in SYNC_CLIENT_VARIANTS:
        with make_sync_channel(argv[1], f"127.0.0.1:{argv[2]}") as channel:
            call_many_sync(channel, int(argv[3]))
    elif argv[0] == "client":
        asyncio.run(_client(argv[1], int(argv[2]), int(argv[3])))
    else:
        asyncio.run(_serve(argv[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
