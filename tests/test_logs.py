"""Log records: breaker transitions (both implementations), config reloads
and refusals, the sampled denial log and the key fields. Redis fallbacks,
recoveries and lease anomalies are in redis_backend/test_redis_logs.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from breaker_support import Boom, ManualClock, make_breaker
from log_support import capture
from ratefuse import KeyedLimiter, Limiter
from ratefuse.breaker import BreakerConfig, State
from ratefuse.config import ConfigError, Registry
from ratefuse.logs import (
    DenialLog,
    LogEvent,
    log_denials,
    log_transition,
    set_key_logging,
)

CONFIG = BreakerConfig(
    window_size=2, minimum_calls=1, wait_duration=1.0, half_open_calls=1
)


@pytest.fixture(autouse=True)
def _hash_keys() -> Any:
    yield
    set_key_logging("hash")


def test_breaker_transitions_are_logged_with_their_fields(impl: Any) -> None:
    clock = ManualClock()
    breaker = make_breaker(impl, CONFIG, clock=clock)
    with capture() as events:
        permit = breaker.try_acquire()
        assert permit is not None
        for _ in range(10):  # the CLOSED path logs nothing
            permit.on_success(0.0)
            permit = breaker.try_acquire()
            assert permit is not None
        assert events.records == []
        permit.on_error(0.0, Boom())
        clock.advance(1)
        probe = breaker.try_acquire()
        assert probe is not None
        probe.on_success(0.0)
    found = [
        (r.breaker, r.old_state, r.state, r.levelno, r.name)  # type: ignore[attr-defined]
        for r in events.named("breaker.transition")
    ]
    name = breaker.name
    assert found == [
        (name, "CLOSED", "OPEN", logging.INFO, "ratefuse.breaker"),
        (name, "OPEN", "HALF_OPEN", logging.INFO, "ratefuse.breaker"),
        (name, "HALF_OPEN", "CLOSED", logging.INFO, "ratefuse.breaker"),
    ]


def test_the_log_listener_runs_first_and_can_be_removed(impl: Any) -> None:
    seen: list[int] = []

    def listener(breaker: Any, old: State, new: State) -> None:
        seen.append(len(events.records))

    breaker = make_breaker(impl, CONFIG, clock=ManualClock(), listeners=[listener])
    with capture() as events:
        breaker.force_open()
        assert seen == [1]  # logged before the user's listener ran
        breaker.remove_listener(log_transition)
        breaker.reset()
        breaker.disable()
    assert len(events.records) == 1
    assert seen == [1, 1, 1]  # FORCED_OPEN -> CLOSED -> DISABLED: not logged


def test_transitions_cost_nothing_when_logging_is_off(impl: Any) -> None:
    breaker = make_breaker(impl, CONFIG, clock=ManualClock())
    with capture(level=logging.ERROR) as events:
        breaker.force_open()
    assert events.records == []


def test_config_reloads_and_refusals_are_logged(tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text('[limiters.api]\nrate = "10/s"\n')
    registry = Registry.from_toml(path)
    with capture() as events:
        path.write_text('[limiters.api]\nrate = "20/s"\n')
        registry.reload()
        path.write_text('[limiters.api]\nrate = "twenty"\n')
        with pytest.raises(ConfigError):
            registry.reload()
        path.write_text("[limiters.api\n")
        with pytest.raises(ConfigError):
            registry.reload()
        with pytest.raises(ConfigError):
            registry.update({})  # drops "api" without saying so
    (reloaded,) = events.named("config.reloaded")
    assert (reloaded.source, reloaded.limiters, reloaded.breakers) == (  # type: ignore[attr-defined]
        str(path),
        1,
        0,
    )
    assert reloaded.name == "ratefuse.config"
    rejected = events.named("config.rejected")
    assert [r.levelno for r in rejected] == [logging.ERROR] * 3
    assert "twenty" in rejected[0].error  # type: ignore[attr-defined]
    assert all(r.error.startswith("ConfigError") for r in rejected)  # type: ignore[attr-defined]
    assert registry.limiter("api").rates[0].limit == 20


def test_denial_log_samples_per_limiter_and_counts_the_suppressed() -> None:
    clock = ManualClock()
    log = DenialLog(3, 10.0, clock=clock)
    with capture() as events:
        written = [log.denied("a", 0.5, key="user-1") for _ in range(50)]
        assert written == [True] * 3 + [False] * 47
        assert log.denied("b", 1.0)  # another limiter has its own budget
        clock.advance(10)
        assert log.denied("a", 0.25, cost=2)
    records = events.named("limit.denied")
    assert len(records) == 5
    fields = [(r.limiter, r.suppressed, r.retry_after, r.cost) for r in records]  # type: ignore[attr-defined]
    assert fields == [
        ("a", 0, 0.5, 1),
        ("a", 0, 0.5, 1),
        ("a", 0, 0.5, 1),
        ("b", 0, 1.0, 1),
        ("a", 47, 0.25, 2),
    ]
    assert records[0].name == "ratefuse.denials"
    assert not hasattr(records[0], "key")
    assert len(records[0].key_hash) == 16  # type: ignore[attr-defined]
    assert records[0].key_hash != "user-1"  # type: ignore[attr-defined]


def test_denial_log_is_free_and_silent_when_its_logger_is_off() -> None:
    log = DenialLog(1, 10.0, clock=ManualClock())
    with capture(level=logging.WARNING) as events:
        assert not any(log.denied("a") for _ in range(5))
    assert events.records == []
    # Nothing was counted meanwhile: the first record after says 0.
    with capture() as events:
        assert log.denied("a")
    assert events.records[0].suppressed == 0  # type: ignore[attr-defined]


def test_logged_limiters_report_denials_keyed_or_not() -> None:
    clock = ManualClock()
    log = DenialLog(100, 1.0, clock=clock)
    limiter = log_denials(Limiter("1/s", clock=clock), "one", log)
    keyed = log_denials(KeyedLimiter("1/s", clock=clock), "per_user", log)
    with capture() as events:
        assert limiter.try_acquire()
        assert not limiter.try_acquire()
        assert not limiter.decide(1).allowed
        assert keyed.decide("alice").allowed
        assert not keyed.decide("alice", 1).allowed
        assert not keyed.try_acquire("alice", cost=1)
    fields = [
        (r.limiter, r.retry_after, getattr(r, "key_hash", None) is not None)  # type: ignore[attr-defined]
        for r in events.named("limit.denied")
    ]
    assert fields == [
        ("one", None, False),
        ("one", 1.0, False),
        ("per_user", 1.0, True),
        ("per_user", None, True),
    ]
    assert limiter.rates == limiter.limiter.rates  # the rest is the limiter's


def test_key_logging_modes() -> None:
    log = DenialLog(100, 1.0, clock=ManualClock())
    with capture() as events:
        set_key_logging("raw")
        log.denied("a", key="alice")
        set_key_logging("none")
        log.denied("a", key="alice")
        set_key_logging("hash")
        log.denied("a", key=b"alice")
        log.denied("a", key="alice")
    raw, none, hashed_bytes, hashed = events.records
    assert raw.key == "alice"  # type: ignore[attr-defined]
    assert not hasattr(none, "key")
    assert not hasattr(none, "key_hash")
    assert hashed_bytes.key_hash == hashed.key_hash  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="'secret'"):
        set_key_logging("secret")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"records": 0}, "records must be an int >= 1, got 0"),
        ({"per": 0}, "per must be finite and > 0 seconds, got 0"),
        ({"per": "1s"}, "per must be a number of seconds, got '1s'"),
    ],
)
def test_denial_log_checks_its_arguments(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DenialLog(**arguments)


def test_event_names_are_stable() -> None:
    assert {event.value for event in LogEvent} == {
        "breaker.transition",
        "backend.fallback",
        "backend.recovered",
        "config.reloaded",
        "config.rejected",
        "config.applied",
        "config.source_lost",
        "config.source_recovered",
        "lease.anomaly",
        "deny_cache.anomaly",
        "limit.denied",
    }
