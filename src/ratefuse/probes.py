"""Liveness and readiness for orchestrators (Kubernetes probes), and
draining before shutdown.

`Probes.live` says whether this process can decide at all: a cost-0
decision on a private in-memory limiter, no backend involved (a live
process whose Redis is down must not be restarted for it).
`Probes.ready` says whether it should get traffic: not while draining;
each Redis backend of its registry reachable, or, when it is not, every
limiter on it has a failure policy that answers without Redis ("deny",
"local", "allow"; "raise" does not); and only the breakers named in
``ready_requires_breakers`` (a downstream breaker that is OPEN is the
breaker doing its job, and taking every pod out of rotation for it turns
one failing dependency into a full outage).

`drain` turns readiness off for good; `install_sigterm_drain` does it on
SIGTERM, waits ``grace`` seconds for the orchestrator to stop routing, and
then lets the SIGTERM take its course. :mod:`ratefuse.probe_apps` serves
both probes over ASGI and WSGI.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from ratefuse.breaker import State
from ratefuse.health import DEFAULT_HEALTH_TIMEOUT, HEALTHY_STATES, BackendHealth
from ratefuse.limiter import Limiter

__all__ = [
    "DEFAULT_DRAIN_GRACE",
    "POLICIES_WITHOUT_BACKEND",
    "ProbeResult",
    "Probes",
    "SigtermDrain",
    "install_sigterm_drain",
]

# The failure policies that answer a decision when Redis cannot.
POLICIES_WITHOUT_BACKEND = frozenset({"deny", "local", "allow"})
# Seconds between SIGTERM and shutdown: Kubernetes probes readiness every
# 10 s by default and stops routing after one failure (failureThreshold 1
# in the README's example), so a little more than one period.
DEFAULT_DRAIN_GRACE = 15.0


@dataclass(frozen=True)
class ProbeResult:
    """`ProbeResult` is one probe's answer: ``ok``, and per check its
    details (each with its own ``ok``)."""

    ok: bool
    checks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """`to_dict` is the JSON form: status "ok" or "fail", and checks."""
        return {
            "status": "ok" if self.ok else "fail",
            "checks": {name: dict(check) for name, check in self.checks.items()},
        }


class _Entry(Protocol):
    @property
    def backend(self) -> str | None: ...

    @property
    def on_backend_error(self) -> str: ...


class _Config(Protocol):
    @property
    def limiters(self) -> Mapping[str, _Entry]: ...


class _Backend(Protocol):
    def ping(self, timeout: float) -> BackendHealth: ...


class _Breaker(Protocol):
    @property
    def state(self) -> State: ...


class ProbeSource(Protocol):
    """`ProbeSource` is what readiness reads: a ratefuse.config.Registry."""

    @property
    def config(self) -> _Config: ...

    def backends(self) -> Mapping[str, _Backend]: ...

    def breakers(self) -> Mapping[str, _Breaker]: ...


class Probes:
    """`Probes` answers the liveness and readiness of this process.

    ``registry`` (a ratefuse.config.Registry; None: no config, no backends)
    is read at every probe, so a reload is followed.
    ``ready_requires_breakers`` names breakers of the registry (or gives
    breaker objects) that must be CLOSED or DISABLED for readiness; none
    by default. ``timeout`` bounds each backend's PING, in seconds.
    Thread-safe.
    """

    def __init__(
        self,
        registry: ProbeSource | None = None,
        *,
        ready_requires_breakers: Iterable[str | _Breaker] = (),
        timeout: float = DEFAULT_HEALTH_TIMEOUT,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ValueError(f"timeout must be a number of seconds, got {timeout!r}")
        if not 0 < timeout < math.inf:
            raise ValueError(f"timeout must be finite and > 0 seconds, got {timeout!r}")
        required = list(ready_requires_breakers)
        for item in required:
            if not isinstance(item, str) and not hasattr(item, "state"):
                raise TypeError(
                    "ready_requires_breakers must hold breaker names or "
                    f"breakers, got {item!r}"
                )
            if isinstance(item, str) and registry is None:
                raise ValueError(
                    f"ready_requires_breakers names {item!r}, but there is no "
                    "registry to find it in"
                )
        self.registry = registry
        self.timeout = float(timeout)
        self._required = required
        self._draining = threading.Event()
        # Liveness decides on this: in memory, never exhausted (cost 0).
        self._canary = Limiter("1/s")

    @property
    def draining(self) -> bool:
        """`draining` is true once `drain` was called."""
        return self._draining.is_set()

    def drain(self) -> None:
        """`drain` turns readiness off for the rest of the process's life
        (liveness stays on): the orchestrator stops sending traffic while
        requests in flight finish."""
        self._draining.set()

    def live(self) -> ProbeResult:
        """`live` is ok when this process can decide: a cost-0 decision on
        an in-memory limiter answers. No backend is asked."""
        try:
            decided = self._canary.decide(0).allowed
        except Exception as exc:  # any failure: the process cannot decide
            return ProbeResult(
                False,
                {"decide": {"ok": False, "error": f"{type(exc).__name__}: {exc}"}},
            )
        return ProbeResult(decided, {"decide": {"ok": decided}})

    def ready(self) -> ProbeResult:
        """`ready` is ok when this process should get traffic (see the
        module doc). While draining it asks nothing else."""
        if self.draining:
            return ProbeResult(False, {"draining": {"ok": False}})
        checks: dict[str, Mapping[str, Any]] = {"draining": {"ok": True}}
        registry = self.registry
        if registry is not None:
            checks.update(self._backend_checks(registry))
        checks.update(self._breaker_checks(registry))
        return ProbeResult(all(check["ok"] for check in checks.values()), checks)

    def _backend_checks(self, registry: ProbeSource) -> dict[str, Mapping[str, Any]]:
        # A backend is fine when it answers, or when nothing on it needs it.
        raising: dict[str, list[str]] = {}
        for name, entry in registry.config.limiters.items():
            if entry.backend is not None:
                needs = entry.on_backend_error not in POLICIES_WITHOUT_BACKEND
                raising.setdefault(entry.backend, [])
                if needs:
                    raising[entry.backend].append(name)
        checks: dict[str, Mapping[str, Any]] = {}
        for name, backend in registry.backends().items():
            pinged = backend.ping(self.timeout)
            needing = sorted(raising.get(name, []))
            checks[f"backend:{name}"] = {
                "ok": pinged.ok or not needing,
                "reachable": pinged.ok,
                "error": pinged.error,
                "breaker": pinged.breaker,
                "limiters_without_fallback": needing,
            }
        return checks

    def _breaker_checks(
        self, registry: ProbeSource | None
    ) -> dict[str, Mapping[str, Any]]:
        checks: dict[str, Mapping[str, Any]] = {}
        known = {} if registry is None else registry.breakers()
        for item in self._required:
            if isinstance(item, str):
                breaker = known.get(item)
                label = item
            else:
                breaker = item
                label = str(getattr(item, "name", repr(item)))
            if breaker is None:
                checks[f"breaker:{label}"] = {"ok": False, "error": "no such breaker"}
                continue
            state = breaker.state
            checks[f"breaker:{label}"] = {
                "ok": state in HEALTHY_STATES,
                "state": state.name,
            }
        return checks


class SigtermDrain:
    """`SigtermDrain` is the SIGTERM handling `install_sigterm_drain`
    installed: ``signalled`` is set at the first SIGTERM, ``released`` when
    the grace is over and the SIGTERM goes to the previous handling."""

    def __init__(self, probes: Probes, grace: float, previous: Any) -> None:
        self.probes = probes
        self.grace = grace
        self.previous = previous
        self.signalled = threading.Event()
        self.released = threading.Event()
        self._cancelled = threading.Event()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """`handle` is the signal handler (it runs in the main thread): the
        first SIGTERM drains and starts the grace, on a thread so that the
        main thread keeps serving; the one that thread sends at its end
        goes to the previous handling. A SIGTERM during the grace changes
        nothing."""
        if self.released.is_set():
            self._hand_on(signum, frame)
        elif not self.signalled.is_set():
            self.signalled.set()
            self.probes.drain()
            threading.Thread(
                target=self._release, name="ratefuse-drain", daemon=True
            ).start()

    def _release(self) -> None:
        # Only the main thread may change handlers: this one signals it.
        if self._cancelled.wait(self.grace):
            return
        self.released.set()
        os.kill(os.getpid(), signal.SIGTERM)

    def _hand_on(self, signum: int, frame: FrameType | None) -> None:
        # Puts the previous handling back and gives it this SIGTERM.
        previous = self.previous
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGTERM)

    def uninstall(self) -> None:
        """`uninstall` puts the previous SIGTERM handling back and cancels
        a grace under way (call it from the main thread)."""
        self._cancelled.set()
        signal.signal(signal.SIGTERM, self.previous)


def install_sigterm_drain(
    probes: Probes, grace: float = DEFAULT_DRAIN_GRACE
) -> SigtermDrain:
    """`install_sigterm_drain` makes SIGTERM drain ``probes`` (readiness
    off at once), wait ``grace`` seconds while the process keeps serving,
    then deliver SIGTERM again to the handling that was in place before
    (the default terminates the process; uvicorn's and gunicorn's start
    their graceful shutdown). Call it from the main thread, after the
    server installed its own handlers (in an ASGI lifespan startup for
    uvicorn). Kubernetes' ``terminationGracePeriodSeconds`` must exceed
    ``grace`` plus the server's own shutdown."""
    if isinstance(grace, bool) or not isinstance(grace, (int, float)):
        raise ValueError(f"grace must be a number of seconds, got {grace!r}")
    if not 0 <= grace < math.inf:
        raise ValueError(f"grace must be finite and >= 0 seconds, got {grace!r}")
    previous = signal.getsignal(signal.SIGTERM)
    # None: a handler not installed from Python; the default is the best
    # stand-in there is.
    drain = SigtermDrain(
        probes, float(grace), signal.SIG_DFL if previous is None else previous
    )
    signal.signal(signal.SIGTERM, drain.handle)
    return drain
