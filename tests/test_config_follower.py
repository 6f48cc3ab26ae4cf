"""ConfigFollower against a source that delivers what the test says, in
the order it says: versions apply whole and in order, never backwards; an
invalid one is refused, logged and counted once while the last good one
stays; unchanged limits keep their state exactly."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from ratefuse.config import (
    ConfigDocument,
    ConfigFollower,
    Registry,
    StaleVersionError,
)
from ratefuse.config._source import Deliver
from ratefuse.metrics import register

BASE = """\
[limiters.api]
rate = "5/m"
algorithm = "fixed_window"

[limiters.users]
rate = "2/m"
algorithm = "fixed_window"
keyed = true
"""
# BASE with users' limit raised: api is unchanged.
RAISED = BASE.replace('rate = "2/m"', 'rate = "4/m"')


class ScriptedSource:
    """A source whose deliveries the test makes, recording the versions
    the follower answered (what a real source acknowledges)."""

    def __init__(self) -> None:
        self.deliver: Deliver | None = None
        self.closed = False
        self.answers: list[int | None] = []

    def start(self, deliver: Deliver) -> None:
        self.deliver = deliver

    def close(self) -> None:
        self.closed = True

    def describe(self) -> str:
        return "scripted"

    def send(self, version: int, text: str) -> None:
        assert self.deliver is not None
        self.answers.append(self.deliver(ConfigDocument(version, text.encode())))


@pytest.fixture
def follower() -> ConfigFollower:
    return ConfigFollower(Registry(clock=lambda: 0), ScriptedSource()).start()


def send(follower: ConfigFollower, version: int, text: str) -> None:
    source = follower.source
    assert isinstance(source, ScriptedSource)
    source.send(version, text)


def test_versions_apply_in_order_and_never_backwards(
    follower: ConfigFollower,
) -> None:
    send(follower, 5, BASE)
    api = follower.registry.limiter("api")
    send(follower, 3, RAISED)  # older: never applied
    send(follower, 5, RAISED)  # the same version again: not re-read
    assert follower.version == 5
    assert follower.registry.config.limiters["users"].rates[0].limit == 2
    send(follower, 9, RAISED)
    assert follower.version == 9
    assert follower.registry.config.limiters["users"].rates[0].limit == 4
    assert follower.registry.limiter("api") is api
    stats = follower.stats()
    assert (stats.version, stats.applied, stats.rejected, stats.stale) == (9, 2, 0, 1)
    assert follower.source.answers == [5, 5, 5, 9]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (b"[limiters.api\nrate = ", "not valid TOML"),
        (b'[limiters.api]\nrate = "5/parsec"', "limiters.api.rate"),
        (b"\xff\xfe", "not UTF-8"),
        (b'[limiters.api]\nrate = "5/m"\n', "limiters.users: missing"),
    ],
    ids=["toml", "schema", "utf8", "drops-an-entry"],
)
def test_an_invalid_version_is_refused_logged_and_counted_once(
    follower: ConfigFollower,
    caplog: pytest.LogCaptureFixture,
    bad: bytes,
    error: str,
) -> None:
    send(follower, 1, BASE)
    api = follower.registry.limiter("api")
    assert [api.try_acquire() for _ in range(3)] == [True] * 3
    source = follower.source
    assert isinstance(source, ScriptedSource)
    assert source.deliver is not None
    with caplog.at_level(logging.ERROR, logger="ratefuse.config"):
        for _ in range(3):  # a source re-delivers after every reconnect
            assert source.deliver(ConfigDocument(2, bad)) == 1
    records = [
        r for r in caplog.records if getattr(r, "event_name", "") == "config.rejected"
    ]
    assert len(records) == 1
    assert records[0].version == 2  # type: ignore[attr-defined]
    assert error in records[0].getMessage()
    stats = follower.stats()
    assert (stats.version, stats.applied, stats.rejected) == (1, 1, 1)
    assert stats.last_error is not None
    assert error in stats.last_error
    # The last good version stays in force, state and all.
    assert follower.registry.limiter("api") is api
    assert [api.try_acquire() for _ in range(3)] == [True, True, False]
    send(follower, 3, RAISED)
    assert follower.version == 3


def test_unchanged_limits_keep_their_state_and_changed_ones_follow_the_rule(
    follower: ConfigFollower,
) -> None:
    send(follower, 1, BASE)
    api, users = follower.registry.limiter("api"), follower.registry.limiter("users")
    assert [api.try_acquire() for _ in range(3)] == [True] * 3
    assert [users.try_acquire("u") for _ in range(2)] == [True, True]
    send(follower, 2, RAISED)
    # api is unchanged: its count continues (5 - 3 left).
    assert [api.try_acquire() for _ in range(3)] == [True, True, False]
    # users changed its limit in place (same algorithm and period): its
    # count is kept and the new limit applies to it (4 - 2 left).
    assert follower.registry.limiter("users") is users
    assert [users.try_acquire("u") for _ in range(3)] == [True, True, False]


def test_registry_update_refuses_an_older_or_equal_version() -> None:
    registry = Registry()
    registry.update({"limiters": {"a": {"rate": "1/s"}}}, version=4)
    for version in (3, 4):
        with pytest.raises(StaleVersionError, match=f"{version} is not newer than"):
            registry.update({"limiters": {"a": {"rate": "2/s"}}}, version=version)
    assert registry.config_version == 4
    assert registry.config.limiters["a"].rates[0].limit == 1
    registry.update({"limiters": {"a": {"rate": "2/s"}}})  # unversioned: a file
    assert registry.config_version == 4


def test_wait_for_version_waits_for_the_version_or_times_out(
    follower: ConfigFollower,
) -> None:
    assert follower.wait_for_version(1, timeout=0.01) is None
    send(follower, 7, BASE)
    assert follower.wait_for_version(1, timeout=0.01) == 7
    assert follower.wait_for_version(8, timeout=0.01) is None


def test_the_version_in_force_is_in_health_and_metrics(
    follower: ConfigFollower,
) -> None:
    assert "config_version" not in follower.registry.health().to_dict()
    send(follower, 12, BASE)
    health = follower.registry.health()
    assert health.config_version == 12
    assert health.to_dict()["config_version"] == 12
    prometheus = CollectorRegistry()
    register(follower.registry, prometheus)
    assert prometheus.get_sample_value("ratefuse_config_version") == 12


def test_close_closes_the_source(follower: ConfigFollower) -> None:
    with follower:
        pass
    assert follower.source.closed  # type: ignore[attr-defined]


def test_a_follower_needs_a_registry() -> None:
    with pytest.raises(TypeError, match="registry must be a Registry"):
        ConfigFollower(object(), ScriptedSource())  # type: ignore[arg-type]
