"""`ratefuse bench grpc` as CI runs it (one round) and its servers and
clients (`ratefuse.bench.grpc_server`): every pair of variants answers,
and the open breaker's rejections never reach the network."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from ratefuse.bench import grpc_inprocess
from ratefuse.bench.grpc_server import (
    CLIENT_VARIANTS,
    SERVER_VARIANTS,
    SYNC_CLIENT_VARIANTS,
    call_many,
    call_many_sync,
    make_channel,
    make_server,
    make_sync_channel,
)


def test_one_round_reports_every_variant() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-m", "ratefuse", "bench", "grpc", "--repeats", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    labels = ("plain call", "server interceptor", "client, breaker", "open")
    for label in (*labels, "guarded aio channel", "open breaker, channel"):
        assert label in result.stdout


def test_options_of_other_modes_are_refused() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-m", "ratefuse", "bench", "grpc", "--duration", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--duration does not apply to ratefuse bench grpc" in result.stderr


@pytest.mark.parametrize("server_variant", SERVER_VARIANTS)
def test_every_variant_pair_answers(server_variant: str) -> None:
    async def scenario() -> None:
        server = make_server(server_variant)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            for client_variant in CLIENT_VARIANTS:
                channel = make_channel(client_variant, f"127.0.0.1:{port}")
                async with channel:
                    await call_many(channel, 3)
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_open_breakers_reject_without_the_network() -> None:
    # Port 9 has no server: a call that got through would fail UNAVAILABLE
    # instead of CircuitOpenRpcError, and the timers would raise.
    assert grpc_inprocess._open_sync(10) > 0
    assert asyncio.run(grpc_inprocess._open_aio(10)) > 0
    assert asyncio.run(grpc_inprocess._open_channel(10)) > 0
    assert asyncio.run(grpc_inprocess._open_aio_floor(10)) > 0


def test_every_sync_client_variant_answers() -> None:
    async def scenario() -> None:
        server = make_server("plain")
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            for variant in SYNC_CLIENT_VARIANTS:
                with make_sync_channel(variant, f"127.0.0.1:{port}") as channel:
                    await asyncio.to_thread(call_many_sync, channel, 3)
        finally:
            await server.stop(None)

    asyncio.run(scenario())


def test_unknown_variants_are_refused() -> None:
    with pytest.raises(ValueError, match="variant must be one of"):
        make_server("fast")
    with pytest.raises(ValueError, match="variant must be one of"):
        make_channel("fast", "127.0.0.1:1")
    with pytest.raises(ValueError, match="variant must be one of"):
        make_sync_channel("fast", "127.0.0.1:1")
