"""The standard gRPC health service (``grpc.health.v1.Health``, from
grpcio-health-checking) fed from a registry's health.

The overall status (service ``""``) follows the same rule as the HTTP
health endpoint (:mod:`ratefuse.health`): SERVING when every backend
answered its PING and every breaker is CLOSED or DISABLED. A named service
is SERVING when the breakers and backends it depends on (``services``)
are; a name the health does not know counts as not serving. The statuses
are computed again on every Check, by `refresh`, and by the refresher
(`HealthServicer.start` / `AsyncHealthServicer.refresh_every`), which is
what Watch streams see.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from grpc_health.v1 import health, health_pb2

from ratefuse.breaker import State
from ratefuse.health import DEFAULT_HEALTH_TIMEOUT, HEALTHY_STATES, Health, HealthSource

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OVERALL = ""


def check_services(services: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """`check_services` returns ``services`` as a dict of tuples, or raises
    ValueError naming a bad entry."""
    if not isinstance(services, Mapping):
        raise ValueError(f"services must be a mapping, got {services!r}")
    checked = {}
    for service, names in services.items():
        if not isinstance(service, str) or not service:
            raise ValueError(
                f"service names must be non-empty strings, got {service!r}"
            )
        if isinstance(names, str) or not all(isinstance(name, str) for name in names):
            raise ValueError(
                f"services[{service!r}] must be a list of breaker or backend names, "
                f"got {names!r}"
            )
        checked[service] = tuple(names)
    return checked


def _healthy(health: Health, name: str) -> bool:
    if name in health.breakers:
        return State[health.breakers[name]] in HEALTHY_STATES
    if name in health.backends:
        return health.backends[name].ok
    return False


def serving_statuses(
    health: Health, services: Mapping[str, tuple[str, ...]]
) -> dict[str, Any]:
    """`serving_statuses` are the status of the server (``""``) and of each
    service in ``services`` (its breaker and backend names) for ``health``."""
    statuses = {OVERALL: SERVING if health.ok else NOT_SERVING}
    for service, names in services.items():
        ready = all(_healthy(health, name) for name in names)
        statuses[service] = SERVING if ready else NOT_SERVING
    return statuses


class HealthFeed:
    """`HealthFeed` is where both servicers take their statuses from:
    ``source.health(timeout)`` (a :class:`ratefuse.config.Registry`) and
    ``services``, service names mapped to the breaker and backend names
    they depend on."""

    def __init__(
        self,
        source: HealthSource,
        services: Mapping[str, Sequence[str]] | None,
        timeout: float,
    ) -> None:
        self.source = source
        self.services = check_services(services or {})
        self.timeout = timeout

    def statuses(self) -> dict[str, Any]:
        """`statuses` reads the health (blocking for the backends' PINGs)
        and returns every service's status (`serving_statuses`)."""
        return serving_statuses(self.source.health(self.timeout), self.services)


class HealthServicer(health.HealthServicer):  # type: ignore[misc]
    """`HealthServicer` is grpcio-health-checking's servicer for a sync
    server, its statuses taken from ``source.health(timeout)`` (a
    :class:`ratefuse.config.Registry`). ``services`` maps service names to
    the breaker and backend names they depend on. Register it with
    ``health_pb2_grpc.add_HealthServicer_to_server``."""

    def __init__(
        self,
        source: HealthSource,
        services: Mapping[str, Sequence[str]] | None = None,
        *,
        timeout: float = DEFAULT_HEALTH_TIMEOUT,
    ) -> None:
        super().__init__()
        self._feed = HealthFeed(source, services, timeout)
        self._stop = threading.Event()
        self.refresh()

    def refresh(self) -> None:
        """`refresh` reads the health and sets every status (Watch streams
        see the changes)."""
        for service, status in self._feed.statuses().items():
            self.set(service, status)

    def Check(self, request: Any, context: Any) -> Any:
        """`Check` answers with the status as of now."""
        self.refresh()
        return super().Check(request, context)

    def start(self, interval: float) -> threading.Thread:
        """`start` refreshes every ``interval`` seconds in a daemon thread
        until `stop`; returns the thread."""
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval):
                self.refresh()

        thread = threading.Thread(target=run, name="ratefuse-grpc-health", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """`stop` ends the refresher of `start`."""
        self._stop.set()


class AsyncHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    """`AsyncHealthServicer` is :class:`HealthServicer` for a grpc.aio
    server: the health (the backends' PINGs) is read in the loop's default
    executor. Call `refresh` once before serving, and run `refresh_every`
    as a task for Watch streams."""

    def __init__(
        self,
        source: HealthSource,
        services: Mapping[str, Sequence[str]] | None = None,
        *,
        timeout: float = DEFAULT_HEALTH_TIMEOUT,
    ) -> None:
        super().__init__()
        self._feed = HealthFeed(source, services, timeout)

    async def refresh(self) -> None:
        """`refresh` reads the health and sets every status."""
        loop = asyncio.get_running_loop()
        statuses = await loop.run_in_executor(None, self._feed.statuses)
        for service, status in statuses.items():
            await self.set(service, status)

    async def Check(self, request: Any, context: Any) -> Any:
        """`Check` answers with the status as of now."""
        await self.refresh()
        return await super().Check(request, context)

    async def refresh_every(self, interval: float) -> None:
        """`refresh_every` refreshes every ``interval`` seconds until
        cancelled."""
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        while True:
            await asyncio.sleep(interval)
            await self.refresh()
