"""Hot reload against what files really look like: empty, half-written,
racing an in-place writer, hostile (huge, not UTF-8, nested, numbers too
large); removals only when the config says so; dropped entries that come
back keep their state."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from breaker_support import ManualClock
from ratefuse.breaker import State
from ratefuse.config import ConfigError, Registry, _toml, parse_config
from ratefuse.config._bounds import (
    MAX_CONFIG_BYTES,
    MAX_ENTRIES,
    MAX_RATES,
    MAX_WINDOW_SLOTS,
)

FULL = """\
[limiters.api]
rate = "3/s"

[limiters.users]
rate = "2/s"
keyed = true

[breakers.upstream]
failure_rate_threshold = 50
minimum_calls = 2
wait_duration = 30.0
"""
# FULL cut at each entry boundary, as a reader racing a writer sees it.
PARTS = ["", FULL[: FULL.index("[limiters.users]")], FULL[: FULL.index("[breakers")]]


def make_registry(tmp_path: Path, clock: ManualClock) -> tuple[Registry, Path]:
    path = tmp_path / "ratefuse.toml"
    path.write_text(FULL)
    return Registry.from_toml(path, clock=clock), path


def spend_and_trip(registry: Registry) -> None:
    # The quota of api and users["u"] spent, the breaker OPEN.
    api, users = registry.limiter("api"), registry.limiter("users")
    assert [api.try_acquire() for _ in range(4)] == [True] * 3 + [False]
    assert [users.try_acquire("u") for _ in range(3)] == [True, True, False]
    breaker = registry.breaker("upstream")
    for _ in range(2):
        breaker.permit_or_error().on_error(0.0, RuntimeError("down"))
    assert breaker.state is State.OPEN


def assert_state_kept(registry: Registry, objects: tuple[Any, ...]) -> None:
    api, users, breaker = objects
    assert registry.limiter("api") is api
    assert registry.limiter("users") is users
    assert registry.breaker("upstream") is breaker
    assert not api.try_acquire()
    assert not users.try_acquire("u")
    assert breaker.state is State.OPEN


@pytest.mark.parametrize("part", range(len(PARTS)))
def test_reload_refuses_an_empty_or_partly_written_file(
    tmp_path: Path, part: int
) -> None:
    clock = ManualClock()
    registry, path = make_registry(tmp_path, clock)
    spend_and_trip(registry)
    objects = (
        registry.limiter("api"),
        registry.limiter("users"),
        registry.breaker("upstream"),
    )
    before = registry.config
    path.write_text(PARTS[part])
    with pytest.raises(ConfigError, match="missing from the new config") as raised:
        registry.reload()
    assert all("removed." in error for error in raised.value.errors)
    assert registry.config is before
    path.write_text(FULL)  # the writer finishes: nothing was forgotten
    registry.reload()
    assert_state_kept(registry, objects)


def test_removed_table_drops_only_the_names_it_lists(tmp_path: Path) -> None:
    registry, path = make_registry(tmp_path, ManualClock())
    dropping = FULL[: FULL.index("[breakers")] + '[removed]\nbreakers = ["upstream"]\n'
    path.write_text(dropping)
    registry.reload()
    assert "upstream" not in registry.breakers()
    registry.reload()  # the marker may stay: removing what is gone is a no-op
    path.write_text(PARTS[1] + '[removed]\nbreakers = ["upstream"]\n')
    with pytest.raises(ConfigError, match=r"limiters\.users: missing"):
        registry.reload()
    with pytest.raises(ConfigError, match="both configured and removed"):
        parse_config(
            {"limiters": {"a": {"rate": "1/s"}}, "removed": {"limiters": ["a"]}}
        )
    with pytest.raises(ConfigError, match=r"removed\.limiters: must be a list"):
        parse_config({"removed": {"limiters": "a"}})
    with pytest.raises(ConfigError, match=r"removed\.colour: unknown field"):
        parse_config({"removed": {"colour": []}})


def test_dropped_entries_that_come_back_keep_their_state(tmp_path: Path) -> None:
    clock = ManualClock()
    registry, _ = make_registry(tmp_path, clock)
    spend_and_trip(registry)
    objects = (
        registry.limiter("api"),
        registry.limiter("users"),
        registry.breaker("upstream"),
    )
    registry.update({}, allow_removals=True)
    assert registry.limiters() == {}
    assert registry.breakers() == {}
    clock.advance(0.1)  # less than the quota's second and the 30 s wait
    registry.update(
        {
            "limiters": {
                "api": {"rate": "3/s"},
                "users": {"rate": "2/s", "keyed": True},
            },
            "breakers": {
                "upstream": {"failure_rate_threshold": 60, "minimum_calls": 2}
            },
        }
    )
    assert_state_kept(registry, objects)
    assert objects[2].config.failure_rate_threshold == 60  # new rules applied


def test_reload_racing_an_in_place_writer_never_drops_an_entry(
    tmp_path: Path,
) -> None:
    """A writer rewrites the file in place (truncate, then the text in one
    or two writes, as editors and `echo >` do) while reloads run; every
    reload applies a whole version or changes nothing."""
    registry, path = make_registry(tmp_path, ManualClock())
    objects = (
        registry.limiter("api"),
        registry.limiter("users"),
        registry.breaker("upstream"),
    )
    versions = [FULL, FULL.replace('"3/s"', '"5/s"')]
    stop = threading.Event()

    def write() -> None:
        turn = 0
        while not stop.is_set():
            text = versions[turn % 2].encode()
            cut = len(PARTS[turn % 3])
            with open(path, "r+b") as file:
                file.truncate(0)
                os.write(file.fileno(), text[:cut])
                os.write(file.fileno(), text[cut:])
            turn += 1

    writer = threading.Thread(target=write)
    writer.start()
    refused = applied = 0
    try:
        for _ in range(2000):
            try:
                registry.reload()
                applied += 1
            except ConfigError:
                refused += 1
            assert registry.limiter("api") is objects[0]
            assert registry.limiter("users") is objects[1]
            assert registry.breaker("upstream") is objects[2]
            assert registry.config.limiters["api"].rates[0].limit in (3, 5)
    finally:
        stop.set()
        writer.join()
    assert applied > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[limiters.api]\nrate = "3/s"\n# \xff\xfe\n', "not UTF-8 at byte"),
        (b"a = " + b"[" * 100_000 + b"]" * 100_000, "TOML"),
        (b"#" * (MAX_CONFIG_BYTES + 1), "more than the"),
        (b"[breakers.b]\nwait_duration = " + b"9" * 400 + b"\n", "wait_duration"),
    ],
    ids=["not-utf8", "nested", "too-large", "huge-int"],
)
def test_hostile_files_are_config_errors(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "hostile.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        Registry.from_toml(path)


HUGE = 10**400


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"breakers": {"b": {"failure_rate_threshold": HUGE}}}, "breakers.b.failure"),
        ({"breakers": {"b": {"max_wait_duration": -HUGE}}}, "breakers.b.max_wait"),
        ({"limiters": {"a": {"rate": "1/s", "max_wait": HUGE}}}, "limiters.a.max"),
        ({"backends": {"r": {"url": "redis://x", "timeout": HUGE}}}, "backends.r"),
        ({"backends": {"r": {"url": "redis://x", "timeout": 1e300}}}, "backends.r"),
        (
            {"limiters": {str(n): {"rate": "1/s"} for n in range(MAX_ENTRIES + 1)}},
            "limiters: 10001 entries",
        ),
        ({"limiters": {"a": {"rate": ["1/s"] * (MAX_RATES + 1)}}}, "limiters.a.rate"),
        (
            {"limiters": {"a": {"rate": "; ".join(["1/s"] * (MAX_RATES + 1))}}},
            "limiters.a.rate",
        ),
        (
            {
                "breakers": {
                    "b": {
                        "window_type": "time",
                        "window_buckets": 2**24,
                        "window_duration": 2**24 * 0.001,
                    }
                }
            },
            "would allocate 16777216 slots",
        ),
        (
            {
                "breakers": {
                    str(n): {"window_size": MAX_WINDOW_SLOTS // 2} for n in range(3)
                }
            },
            "largest: breakers.0",
        ),
        (
            {
                "limiters": {
                    str(n): {"rate": "100000/s", "algorithm": "sliding_log"}
                    for n in range(MAX_WINDOW_SLOTS // 100_000 + 1)
                }
            },
            "would allocate",
        ),
    ],
    ids=[
        "huge-threshold",
        "huge-negative-wait",
        "huge-max-wait",
        "huge-timeout",
        "timeout-1e300",
        "entries",
        "rates-list",
        "rates-string",
        "buckets",
        "windows-summed",
        "sliding-logs",
    ],
)
def test_what_one_config_may_allocate_is_bounded(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Registry(config)


def test_a_file_changed_while_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's second write lands between the reader's stat and its
    read: what was read is not what the file is."""
    path = tmp_path / "ratefuse.toml"
    path.write_text(PARTS[1])
    fstat = os.fstat

    def fstat_then_write(fd: int) -> os.stat_result:
        result = fstat(fd)
        if not getattr(fstat_then_write, "wrote", False):
            fstat_then_write.wrote = True  # type: ignore[attr-defined]
            with open(path, "a") as file:
                file.write(FULL[len(PARTS[1]) :])
        return result

    monkeypatch.setattr(_toml.os, "fstat", fstat_then_write)
    with pytest.raises(ConfigError, match="changed while being read"):
        _toml.read_toml(path)


@pytest.mark.parametrize(
    ("url", "cluster", "message"),
    [
        ("redis://127.0.0.1:notaport/0", False, "backends.b: cannot open: Port"),
        ("redis://127.0.0.1:99999", False, "backends.b: cannot open: Port"),
        ("redis://[::1/0", False, "backends.b: cannot open: Invalid IPv6"),
        ("redis://127.0.0.1:1", True, "backends.b: cannot open: "),
    ],
)
def test_a_backend_that_cannot_open_is_a_config_error(
    url: str, cluster: bool, message: str
) -> None:
    pytest.importorskip("redis")
    registry = Registry({"limiters": {"a": {"rate": "1/s"}}})
    config = {
        "backends": {"b": {"url": url, "cluster": cluster}},
        "limiters": {"a": {"rate": "1/s"}, "r": {"rate": "1/s", "backend": "b"}},
    }
    with pytest.raises(ConfigError, match=message) as raised:
        registry.update(config)
    assert len(raised.value.errors) == 1
    assert registry.backends() == {}
    with pytest.raises(ConfigError, match=message):
        Registry(config)


def test_a_backend_without_redis_py_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import fails as if absent
    with pytest.raises(ConfigError, match=r"backends\.b: needs redis-py: pip"):
        Registry({"backends": {"b": {"url": "redis://127.0.0.1:6379"}}})
