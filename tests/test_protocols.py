"""The protocols every limiter meets (ratefuse.protocols), the honest
signatures of the facades, and how ``backend=`` finds a backend: a
LimiterBackend is called, any other object goes through the
``ratefuse.backends`` entry points (the Redis ones: tests/redis_backend)."""

from __future__ import annotations

import inspect
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy
import pytest

from ratefuse import KeyedLimiter, Limiter, protocols
from ratefuse.protocols import (
    AsyncKeyedRateLimiter,
    AsyncRateLimiter,
    KeyedRateLimiter,
    LimiterBackend,
    RateLimiter,
    is_async,
    is_keyed,
    limiter_backend,
)
from ratefuse.shm import ShmBackend

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def test_every_local_limiter_is_recognised_by_its_kind(impl, tmp_path) -> None:
    from ratefuse.rates import build_specs

    specs = build_specs(Limiter("1/s").rates, "gcra")
    backend = ShmBackend(tmp_path / "keyed", max_keys=64)
    subjects = [
        Limiter("1/s"),
        impl.module("engine._subject").LimiterCore(specs, None),
        Limiter("1/s", backend=ShmBackend(tmp_path / "single")),
    ]
    keyed = [
        KeyedLimiter("1/s"),
        impl.module("engine._keyed").KeyedLimiterCore(specs, 16),
        KeyedLimiter("1/s", backend=backend),
    ]
    for limiter in subjects:
        assert isinstance(limiter, RateLimiter), limiter
        assert not isinstance(limiter, KeyedRateLimiter), limiter
        assert not is_keyed(limiter)
    for limiter in keyed:
        assert isinstance(limiter, KeyedRateLimiter), limiter
        assert is_keyed(limiter)
    for limiter in [*subjects, *keyed]:
        assert not isinstance(limiter, (AsyncRateLimiter, AsyncKeyedRateLimiter))
        assert not is_async(limiter)
    for closing in (subjects[2], keyed[2]):
        closing.close()


def test_a_non_limiter_is_no_limiter() -> None:
    for thing in (object(), "api", 42, [1]):
        for kind in (
            RateLimiter,
            AsyncRateLimiter,
            KeyedRateLimiter,
            AsyncKeyedRateLimiter,
            LimiterBackend,
        ):
            assert not isinstance(thing, kind)


def test_shm_keyed_decide_many_is_decide_in_order(tmp_path) -> None:
    limiter = KeyedLimiter("2/h", backend=ShmBackend(tmp_path / "t", max_keys=64))
    decisions = limiter.decide_many_decisions(["a", "b", "a", "a"], [1, 1, 1, 1])
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.allowed for d in limiter.decide_many_decisions(["c"])] == [True]
    with pytest.raises(ValueError, match="costs"):
        limiter.decide_many(["a"], [1, 2])
    limiter.close()


def test_shm_keyed_decide_many_answers_as_the_in_memory_one(tmp_path) -> None:
    # The same numpy forms, verdicts and waits as KeyedLimiter in memory.
    now = [0]
    shared = KeyedLimiter(
        "2/s", backend=ShmBackend(tmp_path / "t", max_keys=64), clock=lambda: now[0]
    )
    local = KeyedLimiter("2/s", clock=lambda: now[0])
    ids = numpy.array([7, 8, 7, 7, 9], dtype=numpy.int64)
    for limiter in (shared, local):
        allowed = limiter.decide_many(ids)
        assert allowed.dtype == numpy.bool_
        assert allowed.tolist() == [True, True, True, False, True]
    (one, one_waits), (other, other_waits) = (
        limiter.decide_many(ids, retry_after=True) for limiter in (shared, local)
    )
    assert one.tolist() == other.tolist() == [False, True, False, False, True]
    assert one_waits.dtype == numpy.float64
    assert one_waits.tolist() == other_waits.tolist() == [0.5, 0.0, 0.5, 0.5, 0.0]
    shared.close()


def test_signatures_show_the_real_parameters() -> None:
    common = ["limits", "algorithm", "clock", "max_wait", "sleep", "async_sleep"]
    subject = list(inspect.signature(Limiter).parameters)
    assert subject == [*common, "backend", "backend_options"]
    keyed = list(inspect.signature(KeyedLimiter).parameters)
    assert keyed == [*common[:2], "max_keys", *common[2:], "backend", "backend_options"]


@pytest.mark.parametrize("field", ["name", "on_backend_error", "lease"])
def test_backend_options_without_a_backend_are_a_type_error(field: str) -> None:
    for constructor in (Limiter, KeyedLimiter):
        with pytest.raises(TypeError, match=field):
            constructor("1/s", **{field: "x"})


class Recording:
    """A LimiterBackend that records what the facades ask of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, str, dict[str, Any]]] = []

    def limiter(self, limits: Any, algorithm: str = "gcra", **options: Any) -> str:
        self.calls.append(("limiter", limits, algorithm, options))
        return "subject"

    def keyed_limiter(
        self, limits: Any, algorithm: str = "gcra", **options: Any
    ) -> str:
        self.calls.append(("keyed_limiter", limits, algorithm, options))
        return "keyed"


def test_a_limiter_backend_builds_the_limiter() -> None:
    backend = Recording()
    assert Limiter("1/s", backend=backend, name="n") == "subject"  # type: ignore[comparison-overlap]
    assert KeyedLimiter("1/s", "fixed_window", backend=backend, max_keys=5) == "keyed"  # type: ignore[comparison-overlap]
    waits = {"clock": None, "max_wait": None, "sleep": None, "async_sleep": None}
    assert backend.calls == [
        ("limiter", "1/s", "gcra", {**waits, "name": "n"}),
        ("keyed_limiter", "1/s", "fixed_window", {**waits, "max_keys": 5}),
    ]


class Client:
    """A client of a backend package (its type's top-level module: tests)."""


def test_other_objects_go_through_the_entry_points(monkeypatch) -> None:
    built = Recording()
    seen: list[object] = []

    def backend_for(client: object) -> Recording:
        seen.append(client)
        return built

    monkeypatch.setattr(
        sys.modules[__name__], "backend_for", backend_for, raising=False
    )
    found = EntryPoint("test_protocols", f"{__name__}:backend_for", "ratefuse.backends")

    def entry_points(group: str, name: str) -> list[EntryPoint]:
        assert group == "ratefuse.backends"
        return [found] if name == Client.__module__.partition(".")[0] else []

    monkeypatch.setattr(protocols, "entry_points", entry_points)
    client = Client()
    assert limiter_backend(client) is built
    assert KeyedLimiter("1/s", backend=client, name="n") == "keyed"  # type: ignore[comparison-overlap]
    assert seen == [client, client]
    with pytest.raises(TypeError, match="backend must be"):
        limiter_backend(object())


def test_pyproject_declares_the_redis_entry_point() -> None:
    pyproject = tomllib.loads(
        (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    )
    declared = pyproject["project"]["entry-points"]["ratefuse.backends"]
    assert declared == {"redis": "ratefuse.redis:backend_for"}
    from ratefuse.redis import backend_for

    with pytest.raises(TypeError, match="redis"):
        backend_for(object())
