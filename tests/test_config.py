"""ratefuse.config: the schema's errors by path, the registry, TOML reload,
and updates under concurrent traffic (never unlimited, never an exception)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from breaker_support import ManualClock
from ratefuse import KeyedLimiter, Limiter
from ratefuse.breaker import BreakerConfig, CircuitBreaker, State
from ratefuse.config import ConfigError, Registry, parse_config

numpy = pytest.importorskip("numpy")

CONFIG: dict[str, Any] = {
    "limiters": {
        "api": {"rate": "3/s"},
        "users": {"rate": "2/s; 100/h", "keyed": True, "max_keys": 1000},
        "windows": {"rate": "5/s", "algorithm": "fixed_window"},
    },
    "breakers": {"upstream": {"failure_rate_threshold": 50, "minimum_calls": 2}},
}


def frozen_clock() -> int:
    return 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"limit": {}}, "limit: unknown section"),
        ({"limiters": []}, "limiters: must be a table"),
        ({"limiters": {"a": "3/s"}}, "limiters.a: must be a table"),
        ({"limiters": {"a": {}}}, "limiters.a.rate: missing"),
        ({"limiters": {"a": {"rate": 3}}}, "limiters.a.rate: must be a string"),
        ({"limiters": {"a": {"rate": "3/x"}}}, "limiters.a.rate: cannot parse"),
        (
            {"limiters": {"a": {"rate": "3/s", "algorithm": "nope"}}},
            "limiters.a.algorithm:",
        ),
        (
            {"limiters": {"a": {"rate": "3/s", "keyed": "yes"}}},
            "limiters.a.keyed: must be",
        ),
        (
            {"limiters": {"a": {"rate": "3/s", "max_keys": 9}}},
            "limiters.a.max_keys: only",
        ),
        (
            {"limiters": {"a": {"rate": "3/s", "keyed": True, "max_keys": 0}}},
            "limiters.a.max_keys: max_keys must be in",
        ),
        ({"limiters": {"a": {"rate": "3/s", "max_wait": -1}}}, "limiters.a.max_wait:"),
        (
            {"limiters": {"a": {"rate": "3/s", "backend": "x"}}},
            "limiters.a.backend: no backend",
        ),
        (
            {"limiters": {"a": {"rate": "3/s", "colour": 1}}},
            "limiters.a.colour: unknown field",
        ),
        (
            {"limiters": {"a": {"rate": "3/s", "on_backend_error": "allow"}}},
            "limiters.a.on_backend_error: only",
        ),
        ({"backends": {"b": {"url": "http://x"}}}, "backends.b.url: must be a string"),
        (
            {"backends": {"b": {"url": "redis://x", "timeout": 0}}},
            "backends.b.timeout:",
        ),
        (
            {"breakers": {"b": {"minimum_calls": 0}}},
            "breakers.b.minimum_calls: minimum_calls",
        ),
        ({"breakers": {"b": {"window_type": "both"}}}, "breakers.b.window_type:"),
        (
            {"breakers": {"b": {"record_exceptions": []}}},
            "breakers.b.record_exceptions: unknown",
        ),
    ],
)
def test_invalid_configs_name_the_path(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(config)
    assert any(error.startswith(message) for error in raised.value.errors), raised.value
    assert isinstance(raised.value, ValueError)


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(
            {
                "limiters": {"a": {"rate": "x"}, "b": {}},
                "breakers": {"c": {"window_size": 0}},
            }
        )
    paths = [error.split(":")[0] for error in raised.value.errors]
    assert paths == ["limiters.a.rate", "limiters.b.rate", "breakers.c.window_size"]


def test_registry_builds_by_name() -> None:
    registry = Registry(CONFIG, clock=frozen_clock)
    api, users = registry.limiter("api"), registry.limiter("users")
    assert type(api) is Limiter
    assert type(users) is KeyedLimiter
    assert registry.limiter("api") is api
    assert users.max_keys == 1000
    breaker = registry.breaker("upstream")
    assert isinstance(breaker, CircuitBreaker)
    assert breaker.name == "upstream"
    assert breaker.config.minimum_calls == 2
    assert [api.try_acquire() for _ in range(4)] == [True, True, True, False]
    with pytest.raises(KeyError, match="no limiter named 'nope'"):
        registry.limiter("nope")
    with pytest.raises(KeyError, match="no breaker named 'api'"):
        registry.breaker("api")


def test_breaker_defaults_carry_what_a_file_cannot() -> None:
    defaults = BreakerConfig(ignore_exceptions=(KeyError,))
    registry = Registry(
        {"breakers": {"b": {"window_size": 7}}}, breaker_defaults=defaults
    )
    assert registry.breaker("b").config == BreakerConfig(
        ignore_exceptions=(KeyError,), window_size=7
    )


def test_update_changes_limits_in_place_keeping_state() -> None:
    registry = Registry(CONFIG, clock=frozen_clock)
    api, users, windows = (
        registry.limiter(name) for name in ("api", "users", "windows")
    )
    breaker = registry.breaker("upstream")
    assert all(api.try_acquire() for _ in range(3))
    assert users.try_acquire("u1", 2)
    assert windows.try_acquire(4)
    changed = {
        "limiters": {
            "api": {"rate": "6/s"},
            "users": {"rate": "4/s; 100/h", "keyed": True, "max_keys": 1000},
            "windows": {"rate": "6/s", "algorithm": "fixed_window"},
        },
        "breakers": {"upstream": {"failure_rate_threshold": 80, "minimum_calls": 2}},
    }
    registry.update(changed)
    assert registry.limiter("api") is api
    assert registry.limiter("users") is users
    assert registry.breaker("upstream") is breaker
    assert repr(api) == "Limiter('6/1s', algorithm='gcra')"
    # gcra: 3 admitted at 3/s hold the whole second; at 6/s that is 6 cells.
    assert not api.try_acquire()
    assert users.decide("u1", 0).remaining == 0  # likewise: 2 at 2/s hold 1 s
    assert windows.decide(0).remaining == 2  # the window's count of 4 kept
    assert breaker.config.failure_rate_threshold == 80
    assert registry.config.limiters["api"].rates[0].limit == 6


def test_update_of_kind_replaces_the_object() -> None:
    registry = Registry(CONFIG, clock=frozen_clock)
    api = registry.limiter("api")
    registry.update(
        {"limiters": {"api": {"rate": "3/s", "keyed": True}}}, allow_removals=True
    )
    assert type(registry.limiter("api")) is KeyedLimiter
    assert api.try_acquire()  # the old object still works for its holders
    with pytest.raises(KeyError):
        registry.limiter("users")  # dropped
    with pytest.raises(KeyError):
        registry.breaker("upstream")


def test_invalid_update_changes_nothing() -> None:
    registry = Registry(CONFIG, clock=frozen_clock)
    api = registry.limiter("api")
    before = registry.config
    bad = {
        **CONFIG,
        "limiters": {**CONFIG["limiters"], "api": {"rate": "6/s"}, "x": {}},
    }
    with pytest.raises(ConfigError, match=r"limiters\.x\.rate: missing"):
        registry.update(bad)
    assert registry.config is before
    assert repr(api) == "Limiter('3/1s', algorithm='gcra')"
    assert [api.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_a_limiter_its_backend_refuses_is_a_config_error_and_closes_backends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The schema lets leaky_bucket through, but Redis has no script for it:
    the update is still rejected whole, as a ConfigError naming the
    limiter, and the backend opened for it is closed (no I/O: a single
    server's client connects lazily)."""
    pytest.importorskip("redis")
    from ratefuse.config import _backends

    closed: list[str] = []
    close = _backends.Backend.close

    def recording_close(self: Any) -> None:
        closed.append(self.name)
        close(self)

    monkeypatch.setattr(_backends.Backend, "close", recording_close)
    registry = Registry(CONFIG, clock=frozen_clock)
    before = registry.config
    bad = {
        **CONFIG,
        "backends": {"fleet": {"url": "redis://127.0.0.1:1"}},
        "limiters": {
            **CONFIG["limiters"],
            "shaped": {"rate": "2/s", "algorithm": "leaky_bucket", "backend": "fleet"},
        },
    }
    with pytest.raises(ConfigError, match=r"limiters\.shaped: algorithm must be"):
        registry.update(bad)
    assert registry.config is before
    assert registry.backends() == {}
    assert closed == ["fleet"]
    with pytest.raises(ConfigError, match=r"limiters\.shaped"):
        Registry(bad)
    assert closed == ["fleet", "fleet"]


def test_toml_file_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "ratefuse.toml"
    path.write_text(
        '[limiters.api]\nrate = "2/s"\n\n[breakers.db]\nwait_duration = 5.0\n'
    )
    registry = Registry.from_toml(path, clock=frozen_clock)
    api = registry.limiter("api")
    assert [api.try_acquire() for _ in range(3)] == [True, True, False]
    path.write_text(
        '[limiters.api]\nrate = "4/s"\n\n[breakers.db]\nwait_duration = 1.0\n'
    )
    registry.reload()
    assert registry.limiter("api") is api
    assert api.rates[0].limit == 4
    assert registry.breaker("db").config.wait_duration == 1.0
    path.write_text('[limiters.api]\nrate = "4/s"\nburst = [\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        registry.reload()
    path.write_text('[limiters.api]\nrate = "0/s"\n')
    with pytest.raises(ConfigError, match=r"limiters\.api\.rate"):
        registry.reload()
    assert api.rates[0].limit == 4
    assert "db" in registry.breakers()
    with pytest.raises(ConfigError, match="cannot read"):
        Registry.from_toml(tmp_path / "missing.toml")
    with pytest.raises(RuntimeError, match="from_toml"):
        Registry(CONFIG).reload()


def test_health_without_backends_reads_breakers() -> None:
    registry = Registry(CONFIG)
    assert registry.health().ok
    registry.breaker("upstream").transition_to(State.FORCED_OPEN)
    health = registry.health()
    assert not health.ok
    assert health.breakers == {"upstream": "FORCED_OPEN"}
    assert health.to_dict() == {
        "status": "degraded",
        "breakers": {"upstream": "FORCED_OPEN"},
        "backends": {},
    }
    with pytest.raises(ValueError, match="timeout must be > 0"):
        registry.health(timeout=0)


# --- updates under traffic ----------------------------------------------------

ROUNDS = 200


def _config(limit: int, algorithm: str) -> dict[str, Any]:
    return {
        "limiters": {
            "one": {"rate": f"{limit}/s", "algorithm": algorithm},
            "keyed": {"rate": f"{limit}/s", "algorithm": algorithm, "keyed": True},
        }
    }


@pytest.mark.parametrize("algorithm", ["gcra", "fixed_window"])
def test_updates_under_concurrent_traffic_never_over_admit(algorithm: str) -> None:
    """Threads decide (single keys and GIL-free int64 batches) on a frozen
    clock while the limits flip between 10/s and 20/s: every decision runs
    under one of them, so at most 20 are ever admitted per subject, and no
    decision raises. With the window count or gcra debt kept, the smaller
    limit cannot re-admit what the larger one already let through."""
    registry = Registry(_config(10, algorithm), clock=frozen_clock)
    one, keyed = registry.limiter("one"), registry.limiter("keyed")
    admitted = {"one": 0, 1: 0, 2: 0}
    lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()

    def single() -> None:
        while not stop.is_set():
            try:
                got = one.try_acquire()
                got_key = keyed.try_acquire(1)
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                admitted["one"] += got
                admitted[1] += got_key

    def batches() -> None:
        keys = numpy.array([2] * 8 + [1] * 8, dtype=numpy.int64)
        while not stop.is_set():
            try:
                allowed = keyed.decide_many(keys)
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                admitted[2] += int(allowed[:8].sum())
                admitted[1] += int(allowed[8:].sum())

    workers = [threading.Thread(target=single) for _ in range(2)]
    workers += [threading.Thread(target=batches) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        for round_ in range(ROUNDS):
            registry.update(_config(20 if round_ % 2 else 10, algorithm))
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert errors == []
    assert all(count <= 20 for count in admitted.values()), admitted
    # The traffic ran while the limits changed, and was limited throughout.
    assert one.counters().denied > 0
    assert keyed.counters().denied > 0
    # Under the final 20/s, what is left is what a 20/s limit has left.
    left = {
        "one": _drain(lambda: one.try_acquire()),
        1: _drain(lambda: keyed.try_acquire(1)),
        2: _drain(lambda: keyed.try_acquire(2)),
    }
    for subject, count in admitted.items():
        if algorithm == "fixed_window":  # the window's count is kept exactly
            assert count + left[subject] == 20
        else:  # gcra's debt at 10/s already holds its whole tolerance
            assert 10 <= count + left[subject] <= 20


def _drain(acquire: Any) -> int:
    admitted = 0
    while acquire():
        admitted += 1
    return admitted


def test_update_swaps_limits_and_describes_them() -> None:
    # The public form of reconfigure: rates and algorithm follow the swap
    # (the middleware's headers and repr read them), and state is kept.
    clock = ManualClock()
    for limiter, decide in (
        (Limiter("2/minute", clock=clock), lambda lim: lim.try_acquire()),
        (KeyedLimiter("2/minute", clock=clock), lambda lim: lim.try_acquire("k")),
    ):
        assert [decide(limiter) for _ in range(3)] == [True, True, False]
        limiter.update("4/minute")
        assert [str(rate) for rate in limiter.rates] == ["4/60s"]
        assert "4/60s" in repr(limiter)
        assert not decide(limiter)  # the state is kept: still spent
        limiter.update("1/s", "fixed_window")  # a new layout starts fresh
        assert limiter.algorithm == "fixed_window"
        assert [decide(limiter) for _ in range(2)] == [True, False]
        with pytest.raises(ValueError, match="cannot parse rate 'nonsense'"):
            limiter.update("nonsense")
        assert limiter.algorithm == "fixed_window"  # unchanged
