"""The Redis and etcd config sources against real servers: pushes checked
and written by compare-and-set, followers applying each version and
refusing a bad one, acknowledgements, a restarted server losing no
version, and the ``ratefuse config`` commands."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config_fleet_support import KINDS, SourceServer
from ratefuse.__main__ import main
from ratefuse.config import (
    ConfigError,
    ConfigFollower,
    EtcdConfigSource,
    EtcdConfigStore,
    RedisConfigSource,
    RedisConfigStore,
    Registry,
    StoreError,
    VersionConflictError,
    push_config,
)

# Fixed windows: their state is a count, so "the count goes on" is exact.
API = b'[limiters.api]\nalgorithm = "fixed_window"\nrate = '
V1 = API + b'"3/m"\n'
V2 = V1 + b'\n[limiters.extra]\nrate = "1/m"\n'
V3 = API + b'"5/m"\n\n[limiters.extra]\nrate = "1/m"\n'
WAIT = 20.0
_names = itertools.count()


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[SourceServer]:
    """`server` is a redis-server, then an etcd, shared by the module."""
    started = SourceServer(request.param).start()
    yield started
    started.stop()


@pytest.fixture(params=KINDS)
def disposable(request: pytest.FixtureRequest) -> Iterator[SourceServer]:
    """`disposable` is a server of the test's own, to kill and restart."""
    started = SourceServer(request.param).start()
    yield started
    started.stop()


@pytest.fixture
def key(request: pytest.FixtureRequest) -> Callable[[SourceServer], str]:
    return lambda server: server.key(f"{request.node.name[:40]}-{next(_names)}")


def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Waits until ``predicate()`` holds (a follower's thread acts on what
    the server announces), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_pushed_versions_are_readable_and_only_grow(
    server: SourceServer, key: Callable[[SourceServer], str]
) -> None:
    store = server.store(key(server))
    try:
        assert store.read() is None
        first = push_config(store, V1)
        second = push_config(store, V2)
        assert 0 < first < second
        document = store.read()
        assert document is not None
        assert (document.version, document.text) == (second, V2)
    finally:
        store.close()


def test_a_push_is_checked_before_it_is_written(
    server: SourceServer, key: Callable[[SourceServer], str]
) -> None:
    store = server.store(key(server))
    try:
        version = push_config(store, V2)
        for bad, error in [
            (b'[limiters.api]\nrate = "3/fortnight"\n', "limiters.api.rate"),
            (b"[limiters.api\n", "not valid TOML"),
            (V1, "limiters.extra: missing from the new config"),
        ]:
            with pytest.raises(ConfigError, match=error):
                push_config(store, bad)
            assert store.read().version == version  # type: ignore[union-attr]
        removed = V1 + b'\n[removed]\nlimiters = ["extra"]\n'
        assert push_config(store, removed) > version
        assert push_config(store, V2) > version
        assert push_config(store, V1, allow_removals=True) > version
    finally:
        store.close()


def test_a_write_checked_against_an_older_version_is_refused(
    server: SourceServer, key: Callable[[SourceServer], str]
) -> None:
    store = server.store(key(server))
    try:
        first = push_config(store, V1)
        second = push_config(store, V2)
        with pytest.raises(VersionConflictError) as refused:
            store.write(V3, first)
        assert (refused.value.expected, refused.value.current) == (first, second)
        with pytest.raises(VersionConflictError):
            store.write(V3, 0)  # "nothing stored" is stale too
        assert store.read().version == second  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_follower_applies_each_push_and_refuses_a_bad_one(
    server: SourceServer, key: Callable[[SourceServer], str]
) -> None:
    where = key(server)
    store = server.store(where)
    registry = Registry(clock=lambda: 0)
    try:
        with ConfigFollower(registry, server.source(where, "one")) as follower:
            first = push_config(store, V1)
            assert follower.wait_for_version(first, WAIT) == first
            api = registry.limiter("api")
            assert [api.try_acquire() for _ in range(2)] == [True, True]
            server.write_raw(where, b'[limiters.api]\nrate = "-3/m"\n')
            eventually(lambda: follower.stats().rejected == 1)
            assert follower.version == first
            assert registry.limiter("api") is api
            third = push_config(store, V3, allow_removals=True)
            assert follower.wait_for_version(third, WAIT) == third
            # The rate changed in place: the count goes on (5 - 2 left).
            assert [api.try_acquire() for _ in range(4)] == [True] * 3 + [False]
            assert follower.stats().applied == 2
    finally:
        store.close()


def test_acknowledgements_list_the_running_versions(
    server: SourceServer, key: Callable[[SourceServer], str]
) -> None:
    where = key(server)
    store = server.store(where)
    try:
        version = push_config(store, V1)
        one = ConfigFollower(Registry(), server.source(where, "one")).start()
        with ConfigFollower(Registry(), server.source(where, "two")) as two:
            assert one.wait_for_version(version, WAIT) == version
            assert two.wait_for_version(version, WAIT) == version
            eventually(lambda: len(store.acknowledgements()) == 2)
            acks = store.acknowledgements()
            assert [(ack.member, ack.version) for ack in acks] == [
                ("one", version),
                ("two", version),
            ]
            assert all(0 < ack.expires_in <= 2.0 for ack in acks)
            one.close()  # withdraws its acknowledgement
            assert [ack.member for ack in store.acknowledgements()] == ["two"]
            newer = push_config(store, V2)
            assert two.wait_for_version(newer, WAIT) == newer
            eventually(lambda: store.acknowledgements()[0].version == newer)
    finally:
        store.close()


def test_a_restarted_server_loses_no_version(
    disposable: SourceServer,
    key: Callable[[SourceServer], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ratefuse.config")
    where = key(disposable)
    registry = Registry(clock=lambda: 0)
    source = disposable.source(where, "one")
    with ConfigFollower(registry, source) as follower:
        store = disposable.store(where)
        first = push_config(store, V1)
        assert follower.wait_for_version(first, WAIT) == first
        store.close()
        api = registry.limiter("api")
        assert api.try_acquire()
        # Restarted, then pushed to at once: the follower has likely not
        # resubscribed yet, so it misses the announcement and must find
        # the version by reading after it reconnects.
        disposable.restart()
        store = disposable.store(where)
        second = push_config(store, V2)
        assert second > first  # even from a Redis restarted empty
        assert follower.wait_for_version(second, WAIT) == second
        # Down: a push fails and changes nothing; up again: the next one
        # arrives.
        disposable.server.kill()
        with pytest.raises(StoreError, match=disposable.kind):
            push_config(store, V3)
        store.close()
        disposable.server.start()
        store = disposable.store(where)
        third = push_config(store, V3, allow_removals=True)
        assert follower.wait_for_version(third, WAIT) == third
        store.close()
        assert registry.limiter("api") is api
        assert [api.try_acquire() for _ in range(5)] == [True] * 4 + [False]
    assert source.reconnects >= 2
    # One warning per outage however often it retried, and its recovery.
    lost = [
        r for r in caplog.records if r.getMessage().startswith("config.source_lost")
    ]
    assert [r.levelno for r in lost] == [logging.WARNING] * 2
    recovered = [
        r
        for r in caplog.records
        if r.getMessage().startswith("config.source_recovered")
    ]
    assert len(recovered) == 2


def test_the_config_commands_push_show_and_status(
    server: SourceServer,
    key: Callable[[SourceServer], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    where = key(server)
    target = [f"--{server.kind}", server.url, "--key", where]
    path = tmp_path / "fleet.toml"
    path.write_bytes(V1)
    assert main(["config", "push", str(path), *target]) == 0
    pushed = capsys.readouterr().out
    assert "as version" in pushed
    version = int(pushed.split("as version ")[1].split()[0])
    assert main(["config", "show", *target]) == 0
    assert capsys.readouterr().out == f"# version {version} in " + (
        f"{server.kind} {server.url} key {where}\n" + V1.decode()
    )
    with ConfigFollower(Registry(), server.source(where, "cli-member")) as follower:
        assert follower.wait_for_version(version, WAIT) == version
        store = server.store(where)
        eventually(lambda: len(store.acknowledgements()) == 1)
        store.close()
        assert main(["config", "status", *target]) == 0
        status = capsys.readouterr().out
        assert "cli-member" in status
        assert "1 of 1 processes run the stored version" in status
    path.write_bytes(b'[limiters.other]\nrate = "1/s"\n')
    assert main(["config", "push", str(path), *target]) == 1
    assert "limiters.api: missing from the new config" in capsys.readouterr().err
    assert main(["config", "push", str(tmp_path / "absent.toml"), *target]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_a_redis_source_takes_a_client_it_does_not_close() -> None:
    import redis

    server = SourceServer("redis").start()
    client = redis.Redis(host="127.0.0.1", port=server.server.port)
    try:
        store = RedisConfigStore(client, key="client:config")
        version = push_config(store, V1)
        registry = Registry()
        source = RedisConfigSource(client, key="client:config", member="m")
        with ConfigFollower(registry, source) as follower:
            assert follower.wait_for_version(version, WAIT) == version
        store.close()
        assert client.ping()  # still open: the caller's to close
    finally:
        client.close()
        server.stop()


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: RedisConfigStore("redis://x", key="a b"), "key must be"),
        (lambda: RedisConfigStore(42), "redis must be a URL"),  # type: ignore[arg-type]
        (lambda: RedisConfigStore("redis://x", timeout=0), "timeout must be"),
        (lambda: RedisConfigSource("redis://x", member="a/b"), "member must be"),
        (lambda: RedisConfigSource("redis://x", ack_ttl=-1), "ack_ttl must be"),
        (lambda: EtcdConfigStore("etcd://x"), "url must be http"),
        (lambda: EtcdConfigStore("http://x", key=""), "key must be"),
        (lambda: EtcdConfigSource("http://x", ack_ttl=1), "ack_ttl must be"),
    ],
)
def test_bad_source_settings_are_named(build: Callable[[], object], error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        build()


@pytest.fixture(scope="module")
def etcd() -> Iterator[SourceServer]:
    started = SourceServer("etcd").start()
    yield started
    started.stop()


def test_an_etcd_prefix_is_followed_as_one_config(
    etcd: SourceServer, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = "/prefixed/"
    team_a, team_b = (EtcdConfigStore(etcd.url, key=prefix + name) for name in "ab")
    registry = Registry(clock=lambda: 0)
    source = EtcdConfigSource(etcd.url, key=prefix, prefix=True, member="p")
    try:
        first = push_config(team_a, b'[limiters.a]\nrate = "1/m"\n')
        with ConfigFollower(registry, source, allow_removals=True) as follower:
            assert follower.wait_for_version(first, WAIT) == first
            assert set(registry.limiters()) == {"a"}
            second = push_config(team_b, b'[limiters.b]\nrate = "2/m"\n')
            assert follower.wait_for_version(second, WAIT) == second
            assert set(registry.limiters()) == {"a", "b"}
            # A table declared in two fragments: the merged version is
            # refused whole.
            push_config(team_b, b'[limiters.a]\nrate = "3/m"\n', allow_removals=True)
            eventually(lambda: follower.stats().rejected == 1)
            assert set(registry.limiters()) == {"a", "b"}
            # A fragment deleted: the prefix's version is the deletion's
            # revision, newer than every key left.
            assert team_b.client.delete(prefix + "b")
            eventually(lambda: set(registry.limiters()) == {"a"})
            deleted = follower.version
            assert deleted is not None
            assert deleted > (team_a.read().version)  # type: ignore[union-attr]
            assert main(["config", "show", "--etcd", etcd.url, "--key", prefix,
                         "--prefix"]) == 0  # fmt: skip
            assert capsys.readouterr().out.endswith(
                f'# {prefix}a\n[limiters.a]\nrate = "1/m"\n\n'
            )
            with pytest.raises(TypeError, match="read only"):
                EtcdConfigStore(etcd.url, key=prefix, prefix=True).write(b"", 0)
    finally:
        team_a.close()
        team_b.close()


def test_a_prefix_must_end_with_a_slash() -> None:
    with pytest.raises(ValueError, match="must end with /"):
        EtcdConfigStore("http://127.0.0.1:1", key="/no-slash", prefix=True)
