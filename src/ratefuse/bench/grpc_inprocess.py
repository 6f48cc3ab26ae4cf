"""``ratefuse bench grpc``: what the gRPC interceptors add to a trivial
unary call, in one process on loopback, and how fast an open breaker
fails a call.

One event loop runs a bare grpc.aio server and one under the server
interceptor (one keyed limit), and grpc.aio channels: bare to the bare
server, bare to the limited one, and to the bare one under the client
interceptor (no breaker; a CLOSED breaker) and in a
`ratefuse.grpc.GuardedAioChannel` (a CLOSED breaker). Each round makes
``calls`` sequential calls on each pair, in alternating order, timed in
the process's CPU time (client and server together); the report is the
median per call over the rounds and each variant's ratio to the bare
pair. An open breaker's rejection is timed on a sync channel
(``grpc.intercept_channel``), a grpc.aio one under the interceptor and a
GuardedAioChannel, none of which reaches the network, beside the floor of
the grpc.aio interceptor: one without ratefuse that raises at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any

from ratefuse.bench.grpc_server import METHOD, call_many, make_channel, make_server

DEFAULT_ROUNDS = 9
DEFAULT_CALLS = 1000
OPEN_CALLS = 20_000


@dataclass(frozen=True)
class GrpcReport:
    """`GrpcReport` holds medians in microseconds per call: ``plain``,
    ``server_limited``, ``client_interceptor`` (neither breaker nor
    limiter: grpc.aio's interceptor machinery) and ``client_breaker``
    (CPU time of a whole call, both sides), ``client_channel`` (the same
    for a GuardedAioChannel with a CLOSED breaker), ``open_sync``,
    ``open_aio`` and ``open_channel`` (wall time of a call an open
    breaker rejects) and ``open_aio_floor`` (of a call a grpc.aio
    interceptor refuses by raising at once, without ratefuse)."""

    plain: float
    server_limited: float
    client_interceptor: float
    client_breaker: float
    client_channel: float
    open_sync: float
    open_aio: float
    open_channel: float
    open_aio_floor: float

    def lines(self) -> list[str]:
        """`lines` is the report as text."""
        return [
            f"plain call            {self.plain:8.1f} us CPU",
            f"server interceptor    {self.server_limited:8.1f} us CPU "
            f"({self.server_limited / self.plain - 1:+.1%})",
            f"client, no breaker    {self.client_interceptor:8.1f} us CPU "
            f"({self.client_interceptor / self.plain - 1:+.1%})",
            f"client, breaker       {self.client_breaker:8.1f} us CPU "
            f"({self.client_breaker / self.plain - 1:+.1%}; "
            f"{self.client_breaker / self.client_interceptor - 1:+.1%} against "
            "no breaker)",
            f"guarded aio channel   {self.client_channel:8.1f} us CPU "
            f"({self.client_channel / self.plain - 1:+.1%})",
            f"open breaker, sync    {self.open_sync:8.2f} us per rejected call",
            f"open breaker, aio     {self.open_aio:8.2f} us per rejected call "
            f"(floor: any grpc.aio interceptor refusing, {self.open_aio_floor:.2f})",
            f"open breaker, channel {self.open_channel:8.2f} us per rejected call",
        ]


async def _timed(channel: Any, calls: int) -> float:
    began = time.process_time()
    await call_many(channel, calls)
    return (time.process_time() - began) / calls * 1e6


async def _rejections(channel: Any, calls: int, refused: type[Exception]) -> float:
    # Wall us per call of ``channel``'s method that ends in ``refused``.
    say = channel.unary_unary(METHOD)
    began = time.perf_counter()
    for _ in range(calls):
        with contextlib.suppress(refused):
            await say(b"x")
    return (time.perf_counter() - began) / calls * 1e6


class _Refused(Exception):
    """What `_Refuse` raises."""


async def _open_aio_floor(calls: int) -> float:
    # The floor of any grpc.aio client interceptor that refuses a call: one
    # that raises at once, without ratefuse (grpc.aio still runs the call
    # in a task of its own and carries the exception through it).
    import grpc

    class _Refuse(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_unary(
            self, continuation: Any, details: Any, request: Any
        ) -> Any:
            raise _Refused

    # A port nobody listens on: a call that got through would fail.
    async with grpc.aio.insecure_channel(
        "127.0.0.1:9", interceptors=[_Refuse()]
    ) as channel:
        return await _rejections(channel, calls, _Refused)


async def _open_aio(calls: int) -> float:
    import grpc

    from ratefuse.breaker import CircuitBreaker
    from ratefuse.grpc import AsyncClientInterceptor, CircuitOpenRpcError

    breaker = CircuitBreaker("open")
    breaker.force_open()
    guard = AsyncClientInterceptor(breaker)
    # A port nobody listens on: a call that got through would fail.
    async with grpc.aio.insecure_channel(
        "127.0.0.1:9", interceptors=guard.interceptors()
    ) as channel:
        return await _rejections(channel, calls, CircuitOpenRpcError)


async def _open_channel(calls: int) -> float:
    import grpc

    from ratefuse.breaker import CircuitBreaker
    from ratefuse.grpc import CircuitOpenRpcError, GuardedAioChannel

    breaker = CircuitBreaker("open")
    breaker.force_open()
    # A port nobody listens on: a call that got through would fail.
    real = grpc.aio.insecure_channel("127.0.0.1:9")
    async with GuardedAioChannel(real, breaker) as channel:
        return await _rejections(channel, calls, CircuitOpenRpcError)


def _open_sync(calls: int) -> float:
    import grpc

    from ratefuse.breaker import CircuitBreaker
    from ratefuse.grpc import CircuitOpenRpcError, ClientInterceptor

    breaker = CircuitBreaker("open")
    breaker.force_open()
    with grpc.intercept_channel(
        grpc.insecure_channel("127.0.0.1:9"), ClientInterceptor(breaker)
    ) as channel:
        say = channel.unary_unary(METHOD)
        began = time.perf_counter()
        for _ in range(calls):
            with contextlib.suppress(CircuitOpenRpcError):
                say(b"x")
        return (time.perf_counter() - began) / calls * 1e6


async def _measure(rounds: int, calls: int) -> GrpcReport:
    servers = {variant: make_server(variant) for variant in ("plain", "limited")}
    ports = {}
    for variant, server in servers.items():
        ports[variant] = server.add_insecure_port("127.0.0.1:0")
        await server.start()
    pairs = {
        "plain": make_channel("plain", f"127.0.0.1:{ports['plain']}"),
        "server_limited": make_channel("plain", f"127.0.0.1:{ports['limited']}"),
        "client_interceptor": make_channel(
            "interceptor", f"127.0.0.1:{ports['plain']}"
        ),
        "client_breaker": make_channel("breaker", f"127.0.0.1:{ports['plain']}"),
        "client_channel": make_channel("channel", f"127.0.0.1:{ports['plain']}"),
    }
    times: dict[str, list[float]] = {name: [] for name in pairs}
    try:
        for channel in pairs.values():
            await call_many(channel, 200)  # warm up
        for round_ in range(rounds):
            order = list(pairs) if round_ % 2 == 0 else list(reversed(pairs))
            for name in order:
                times[name].append(await _timed(pairs[name], calls))
        open_aio = await _open_aio(OPEN_CALLS)
        open_channel = await _open_channel(OPEN_CALLS)
        open_aio_floor = await _open_aio_floor(OPEN_CALLS)
    finally:
        for channel in pairs.values():
            await channel.close()
        for server in servers.values():
            await server.stop(None)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return GrpcReport(
        medians["plain"],
        medians["server_limited"],
        medians["client_interceptor"],
        medians["client_breaker"],
        medians["client_channel"],
        _open_sync(OPEN_CALLS),
        open_aio,
        open_channel,
        open_aio_floor,
    )


def measure(rounds: int = DEFAULT_ROUNDS, calls: int = DEFAULT_CALLS) -> GrpcReport:
    """`measure` runs the benchmark (see the module)."""
    return asyncio.run(_measure(rounds, calls))


def run(rounds: int = DEFAULT_ROUNDS, calls: int = DEFAULT_CALLS) -> int:
    """`run` measures and prints the report; the exit status (0)."""
    for line in measure(rounds, calls).lines():
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    run()
