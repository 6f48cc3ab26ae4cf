"""Four processes following one config source, for Redis and for etcd: a
push reaches every one, a bad push none; limits a push leaves unchanged keep
their counts exactly; a restarted or unreachable server loses no version;
a dead process drops out of the acknowledgements."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import pytest

from config_fleet_support import ACK_TTL, KINDS, SourceServer, Worker
from ratefuse.config import push_config

FLEET = 4
WAIT = 30.0
V1 = b"""\
[limiters.api]
algorithm = "fixed_window"
rate = "5/m"

[limiters.users]
algorithm = "fixed_window"
rate = "2/m"
keyed = true
"""
# users' limit raised, a limiter added; api unchanged.
V2 = V1.replace(b'"2/m"', b'"4/m"') + b'\n[limiters.extra]\nrate = "1/m"\n'
_keys = itertools.count()


@pytest.fixture(params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[SourceServer]:
    started = SourceServer(request.param).start()
    yield started
    started.stop()


@pytest.fixture
def fleet(server: SourceServer) -> Iterator[tuple[str, list[Worker]]]:
    """`fleet` is a key of the test's own and 4 processes following it."""
    key = server.key(f"fleet-{next(_keys)}")
    workers: list[Worker] = []
    try:
        for index in range(FLEET):
            workers.append(Worker(server, key, f"worker-{index}"))
        yield key, workers
    finally:
        for worker in workers:
            worker.close()


def push(server: SourceServer, key: str, text: bytes, **options: bool) -> int:
    store = server.store(key)
    try:
        return push_config(store, text, **options)
    finally:
        store.close()


def all_reach(workers: list[Worker], version: int) -> None:
    for worker in workers:
        worker.send(op="wait", version=version, timeout=WAIT)
    assert [worker.reply()["version"] for worker in workers] == [version] * FLEET


def eventually(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_push_reaches_every_process_and_a_bad_push_none(
    server: SourceServer, fleet: tuple[str, list[Worker]]
) -> None:
    key, workers = fleet
    first = push(server, key, V1)
    all_reach(workers, first)
    for worker in workers:
        assert worker.ask(op="take", limiter="api", count=3)["allowed"] == [True] * 3
        assert worker.ask(op="take", limiter="users", count=1)["allowed"] == [True]
    server.write_raw(key, V2.replace(b'"4/m"', b'"4/eon"'))
    for worker in workers:
        eventually(lambda worker=worker: worker.ask(op="stats")["rejected"] == 1)
        stats = worker.ask(op="stats")
        assert (stats["version"], stats["applied"]) == (first, 1)
        assert "limiters.users.rate" in stats["last_error"]
    second = push(server, key, V2)
    all_reach(workers, second)
    for worker in workers:
        # api is unchanged: its count goes on (3 of 5 spent).
        assert worker.ask(op="take", limiter="api", count=3)["allowed"] == [
            True,
            True,
            False,
        ]
        # users changed its limit in place: the count is kept (1 of now 4).
        assert worker.ask(op="take", limiter="users", count=4)["allowed"] == [
            True,
            True,
            True,
            False,
        ]
        assert worker.ask(op="take", limiter="extra", count=2)["allowed"] == [
            True,
            False,
        ]


def test_a_restarted_or_unreachable_server_loses_no_version(
    server: SourceServer, fleet: tuple[str, list[Worker]]
) -> None:
    key, workers = fleet
    first = push(server, key, V1)
    all_reach(workers, first)
    for worker in workers:
        assert worker.ask(op="take", limiter="api", count=2)["allowed"] == [True] * 2
    server.restart()
    second = push(server, key, V2)  # likely before the fleet reconnects
    all_reach(workers, second)
    server.server.kill()  # the network cut: every connection drops
    server.server.start()
    third = push(server, key, V1 + b'\n[removed]\nlimiters = ["extra"]\n')
    assert first < second < third
    all_reach(workers, third)
    for worker in workers:
        stats = worker.ask(op="stats")
        assert (stats["applied"], stats["rejected"]) == (3, 0)
        # Every version kept api's count: 2 of 5 spent before the restarts.
        assert worker.ask(op="take", limiter="api", count=4)["allowed"] == [
            True,
            True,
            True,
            False,
        ]


def test_the_fleet_acknowledges_its_versions_and_the_dead_drop_out(
    server: SourceServer, fleet: tuple[str, list[Worker]]
) -> None:
    key, workers = fleet
    version = push(server, key, V1)
    all_reach(workers, version)
    store = server.store(key)
    try:
        eventually(lambda: len(store.acknowledgements()) == FLEET)
        assert {(ack.member, ack.version) for ack in store.acknowledgements()} == {
            (f"worker-{index}", version) for index in range(FLEET)
        }
        workers[0].kill()  # it cannot withdraw: its TTL must drop it
        killed_at = time.monotonic()
        eventually(lambda: len(store.acknowledgements()) == FLEET - 1)
        # Within the TTL and the server's expiry resolution (etcd checks
        # leases every 500 ms), never before the last refresh + TTL / 3.
        assert time.monotonic() - killed_at < ACK_TTL + 2.0
        assert "worker-0" not in {ack.member for ack in store.acknowledgements()}
    finally:
        store.close()
