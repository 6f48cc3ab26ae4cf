"""The adaptive concurrency simulation: a server with a capacity, open-loop
arrivals, a capacity drop, and a concurrency policy at its door.

Everything runs on a simulated clock (float seconds; the adaptive cores get
integer nanoseconds), so a run is exact and repeatable from its seed.

The server is processor sharing with contention: ``capacity`` calls run at
full speed (each needs its work, ``latency`` seconds +- ``jitter``); beyond
it, the n calls share the capacity and lose a further ``contention *
(n - capacity) / capacity`` of it to thrashing (lock contention, cache and
scheduler overhead), so latency grows faster than the in-flight work and
an unbounded queue collapses throughput. At ``drop_at`` the capacity
halves. Arrivals are Poisson at ``load`` times the capacity's throughput
(``capacity / latency`` calls per second), and never slow down (open loop).

A policy admits a call or refuses it at once (no queue at the door); an
admitted call's latency is its time in the server. A call is *good* when it
finishes within the client's ``deadline``; a later one was wasted work (the
client gave up) and the adaptive limits are fed it as a drop.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from ratefuse.bulkhead import Bulkhead
from ratefuse.core.adaptive.config import AdaptiveAlgorithm
from ratefuse.core.adaptive.limit import AdaptiveCore

NS: Final = 1_000_000_000
# How often the policy's limit and the server's load are sampled for the plot.
TRACE_EVERY_S: Final = 0.01


@dataclass(frozen=True, slots=True)
class ServerModel:
    """`ServerModel` is the simulated server: ``capacity`` calls (>= 2) run
    at full speed, each needing ``latency`` seconds of work spread uniformly
    by +- ``jitter`` (a fraction < 1); beyond it, ``contention`` (>= 0) is
    the share of capacity lost per capacity's worth of extra calls."""

    capacity: int = 50
    latency: float = 0.010
    jitter: float = 0.1
    contention: float = 0.5

    def __post_init__(self) -> None:
        if self.capacity < 2:
            raise ValueError(f"capacity must be >= 2, got {self.capacity}")
        if not self.latency > 0:
            raise ValueError(f"latency must be > 0 seconds, got {self.latency}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be within [0, 1), got {self.jitter}")
        if not self.contention >= 0:
            raise ValueError(f"contention must be >= 0, got {self.contention}")

    @property
    def throughput(self) -> float:
        """`throughput` is the calls per second the full capacity serves."""
        return self.capacity / self.latency


@dataclass(frozen=True, slots=True)
class Run:
    """`Run` is one simulation's schedule: arrivals at ``load`` times the
    capacity for ``duration`` seconds, the capacity halved at ``drop_at``,
    the first ``warmup`` seconds left out of the figures, a call good when
    it ends within ``deadline`` seconds, figures over ``window`` seconds."""

    load: float = 2.0
    duration: float = 20.0
    drop_at: float = 10.0
    warmup: float = 2.0
    deadline: float = 0.1
    window: float = 0.25
    seed: int = 19

    def __post_init__(self) -> None:
        if not 0 < self.warmup < self.drop_at < self.duration:
            raise ValueError(
                "times must satisfy 0 < warmup < drop_at < duration, got "
                f"warmup={self.warmup}, drop_at={self.drop_at}, "
                f"duration={self.duration}"
            )
        if not self.load > 0:
            raise ValueError(f"load must be > 0, got {self.load}")


class Policy(Protocol):
    """`Policy` decides at the server's door."""

    name: str

    def admit(self, now: float) -> object | None:
        """`admit` returns a token for an admitted call, None if refused."""

    def finish(self, token: object, latency: float, dropped: bool) -> None:
        """`finish` returns an admitted call's token when it ends."""

    def limit(self) -> int | None:
        """`limit` is the concurrency limit now (None: none)."""


class NoLimit:
    """`NoLimit` admits every call."""

    def __init__(self) -> None:
        self.name = "no limit"

    def admit(self, now: float) -> object | None:
        return True

    def finish(self, token: object, latency: float, dropped: bool) -> None:
        pass

    def limit(self) -> int | None:
        return None


class FixedLimit:
    """`FixedLimit` is a Bulkhead of ``size`` slots that never waits."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self._bulkhead = Bulkhead(size)

    def admit(self, now: float) -> object | None:
        return True if self._bulkhead.try_acquire() else None

    def finish(self, token: object, latency: float, dropped: bool) -> None:
        self._bulkhead.release()

    def limit(self) -> int | None:
        return self._bulkhead.max_concurrent


class AdaptiveLimit:
    """`AdaptiveLimit` is the adaptive core of ``algorithm`` at the door,
    fed each call's simulated latency in nanoseconds."""

    def __init__(self, name: str, algorithm: AdaptiveAlgorithm) -> None:
        self.name = name
        self._core = AdaptiveCore(algorithm.to_params())

    def admit(self, now: float) -> object | None:
        return True if self._core.admit() else None

    def finish(self, token: object, latency: float, dropped: bool) -> None:
        self._core.complete(round(latency * NS), dropped)

    def limit(self) -> int | None:
        return self._core.limit


@dataclass(slots=True)
class Outcome:
    """`Outcome` is what one run recorded: for every admitted call its start
    and latency (seconds), the refused calls' arrival times, and the
    policy's limit and the server's in-flight count every TRACE_EVERY_S."""

    policy: str
    starts: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    trace_times: list[float] = field(default_factory=list)
    trace_limits: list[int | None] = field(default_factory=list)
    trace_in_flight: list[int] = field(default_factory=list)


def service_rate(in_flight: int, capacity: int, contention: float) -> float:
    """`service_rate` is the speed (work seconds per second) of each of
    ``in_flight`` calls on a server of ``capacity`` with ``contention``."""
    if in_flight <= capacity:
        return 1.0
    extra = (in_flight - capacity) / capacity
    return capacity / in_flight / (1.0 + contention * extra)


def simulate(model: ServerModel, run: Run, policy: Policy) -> Outcome:
    """`simulate` runs ``policy`` at the door of ``model`` on ``run``'s
    schedule and returns what it recorded."""
    rng = random.Random(run.seed)
    arrival_rate = run.load * model.throughput
    outcome = Outcome(policy.name)
    capacity = model.capacity
    # Processor sharing on a virtual clock: all calls progress at the same
    # rate, so each finishes when the shared work counter passes its own
    # finish mark, and a heap of marks gives the next completion.
    virtual = 0.0
    running: list[tuple[float, int, float, object]] = []
    now = 0.0
    next_arrival = rng.expovariate(arrival_rate)
    next_trace = 0.0
    dropped_capacity = False
    sequence = 0
    while True:
        rate = service_rate(len(running), capacity, model.contention)
        next_completion = (
            now + (running[0][0] - virtual) / rate if running else math.inf
        )
        next_drop = math.inf if dropped_capacity else run.drop_at
        event = min(next_arrival, next_completion, next_drop, next_trace)
        if event > run.duration:
            return outcome
        virtual += (event - now) * rate
        now = event
        if event == next_trace:
            outcome.trace_times.append(now)
            outcome.trace_limits.append(policy.limit())
            outcome.trace_in_flight.append(len(running))
            next_trace += TRACE_EVERY_S
        elif event == next_completion:
            _, _, start, token = heapq.heappop(running)
            latency = now - start
            policy.finish(token, latency, latency > run.deadline)
            outcome.starts.append(start)
            outcome.latencies.append(latency)
        elif event == next_drop:
            capacity = max(1, capacity // 2)
            dropped_capacity = True
        else:
            token = policy.admit(now)
            if token is None:
                outcome.refused.append(now)
            else:
                work = model.latency * (1.0 + model.jitter * (2.0 * rng.random() - 1.0))
                sequence += 1
                heapq.heappush(running, (virtual + work, sequence, now, token))
            next_arrival = now + rng.expovariate(arrival_rate)


def policies(
    model: ServerModel, algorithms: dict[str, AdaptiveAlgorithm]
) -> list[Callable[[], Policy]]:
    """`policies` are the contenders, built fresh per run: no limit, a
    bulkhead set right (the capacity before the drop), one set 2x too high,
    and one adaptive limit per entry of ``algorithms``."""
    made: list[Callable[[], Policy]] = [
        NoLimit,
        lambda: FixedLimit("fixed, right", model.capacity),
        lambda: FixedLimit("fixed, 2x too high", 2 * model.capacity),
    ]
    for name, algorithm in algorithms.items():
        made.append(_adaptive_maker(name, algorithm))
    return made


def _adaptive_maker(name: str, algorithm: AdaptiveAlgorithm) -> Callable[[], Policy]:
    return lambda: AdaptiveLimit(name, algorithm)
