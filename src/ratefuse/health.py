"""Health: breaker states and backend reachability in one snapshot, and
tiny ASGI and WSGI endpoints that serve it as JSON.

:meth:`ratefuse.config.Registry.health` builds a :class:`Health`;
`asgi_health_app` and `wsgi_health_app` answer GET (and HEAD) with it:
200 when ``ok``, 503 otherwise, 405 for other methods.

This is a dashboard's view, not a probe: any breaker that is not CLOSED
makes it 503, so as a Kubernetes readiness probe one failing downstream
would take every pod out of rotation. For orchestrators use the liveness
and readiness probes of :mod:`ratefuse.probes` and
:mod:`ratefuse.probe_apps`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ratefuse.adaptive import AdaptiveLimiter
from ratefuse.breaker import CircuitBreaker, State
from ratefuse.json_endpoint import (
    Answer,
    Receive,
    Scope,
    Send,
    WsgiApp,
    serve_asgi,
    wsgi_app,
)

# Breaker states in which the breaker's dependency counts as healthy.
HEALTHY_STATES = frozenset({State.CLOSED, State.DISABLED})
# Seconds a backend's PING may take before it counts as unreachable.
DEFAULT_HEALTH_TIMEOUT = 0.25


@dataclass(frozen=True)
class BackendHealth:
    """`BackendHealth` is one backend's PING: ``ok`` if it answered,
    ``latency_s`` (seconds, None when it did not), ``error`` (None when it
    did) and ``breaker``, the state name of the breaker guarding it."""

    ok: bool
    latency_s: float | None
    error: str | None
    breaker: str


@dataclass(frozen=True)
class Health:
    """`Health` summarises a registry: ``ok`` when every backend answered
    its PING and every breaker is CLOSED or DISABLED. ``breakers`` maps
    names to state names; ``backends`` names to :class:`BackendHealth`;
    ``config_version`` is the version of the configuration in force (None
    when it came from no config source); ``adaptive`` names to the state of
    adaptive concurrency limits (:meth:`ratefuse.AdaptiveLimiter.health`),
    which do not change ``ok``: a limit at its floor is doing its job."""

    ok: bool
    breakers: Mapping[str, str] = field(default_factory=dict)
    backends: Mapping[str, BackendHealth] = field(default_factory=dict)
    config_version: int | None = None
    adaptive: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """`to_dict` is the JSON form: status "ok" or "degraded", breaker
        states, per backend ok, latency_ms, error and breaker, and
        config_version when there is one."""
        found: dict[str, Any] = {
            "status": "ok" if self.ok else "degraded",
            "breakers": dict(self.breakers),
            "backends": {
                name: {
                    "ok": backend.ok,
                    "latency_ms": None
                    if backend.latency_s is None
                    else round(backend.latency_s * 1000, 3),
                    "error": backend.error,
                    "breaker": backend.breaker,
                }
                for name, backend in self.backends.items()
            },
        }
        if self.config_version is not None:
            found["config_version"] = self.config_version
        if self.adaptive:
            found["adaptive"] = dict(self.adaptive)
        return found


class Pingable(Protocol):
    """`Pingable` is a backend that `check_health` can ping."""

    def ping(self, timeout: float) -> BackendHealth:
        """`ping` reports the backend's reachability within ``timeout`` s."""
        ...


class HealthSource(Protocol):
    """`HealthSource` is what the endpoints serve: a Registry, typically."""

    def health(self, timeout: float = ...) -> Health:
        """`health` is the current :class:`Health`."""
        ...


def check_health(
    breakers: Mapping[str, CircuitBreaker],
    backends: Mapping[str, Pingable],
    timeout: float,
    adaptive: Mapping[str, AdaptiveLimiter] | None = None,
) -> Health:
    """`check_health` pings every backend (one after the other, each within
    ``timeout`` seconds), reads every breaker's state and every adaptive
    limit's (None: none)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(f"timeout must be a number of seconds, got {timeout!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    states = {name: breaker.state for name, breaker in breakers.items()}
    pinged = {name: backend.ping(timeout) for name, backend in backends.items()}
    ok = all(state in HEALTHY_STATES for state in states.values()) and all(
        backend.ok for backend in pinged.values()
    )
    return Health(
        ok,
        {name: state.name for name, state in states.items()},
        pinged,
        adaptive={name: limiter.health() for name, limiter in (adaptive or {}).items()},
    )


def _response(health: Health) -> Answer:
    return (200 if health.ok else 503), json.dumps(health.to_dict()).encode()


def asgi_health_app(
    source: HealthSource, timeout: float = DEFAULT_HEALTH_TIMEOUT
) -> AsgiHealth:
    """`asgi_health_app` is an ASGI 3 app serving ``source.health(timeout)``
    as JSON; see :class:`AsgiHealth`."""
    return AsgiHealth(source, timeout)


class AsgiHealth:
    """`AsgiHealth` is an ASGI 3 app serving ``source.health(timeout)`` as
    JSON at whatever path it is routed to (an object, not a function, so
    that Starlette's ``Route("/health", app)`` treats it as an ASGI app).
    The PINGs run in the event loop's default executor, so a slow backend
    never blocks the loop. Lifespan events are acknowledged."""

    def __init__(
        self, source: HealthSource, timeout: float = DEFAULT_HEALTH_TIMEOUT
    ) -> None:
        self.source = source
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_asgi(scope, receive, send, self._route, "health endpoint")

    def _route(self, path: str) -> tuple[Callable[[], Answer], bool]:
        # Every path: the app answers wherever it is routed to.
        return self._answer, True

    def _answer(self) -> Answer:
        return _response(self.source.health(self.timeout))


def wsgi_health_app(
    source: HealthSource, timeout: float = DEFAULT_HEALTH_TIMEOUT
) -> WsgiApp:
    """`wsgi_health_app` is a WSGI app serving ``source.health(timeout)``
    as JSON (mount it at /health)."""

    def answer() -> Answer:
        return _response(source.health(timeout))

    return wsgi_app(lambda path: (answer, True))
