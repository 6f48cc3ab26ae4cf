"""Load shedding by priority: a rate limit and a concurrency limit that
keep headroom for the work that matters.

Each request has a `Priority`; `PriorityShares` says how much of the
capacity each priority may use (by default sheddable work up to 50%,
default work up to 80%, critical work all of it). Under overload the
lowest priority is refused first, because it stops at its share while the
others still find room above it; critical work keeps the headroom nobody
else may take::

    limiter = PriorityLimiter(Limiter("100/s"))
    limiter.try_acquire(priority=Priority.SHEDDABLE)

    bulkhead = PriorityBulkhead(max_concurrent=10)
    with bulkhead.holding(Priority.CRITICAL):
        ...

The rate form measures the share on the limiter's own state (a sheddable
request is admitted only while more than half of the burst is left), so it
works with every in-memory algorithm and keeps its exact limit: shedding
never lets more through than the limiter alone would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from ratefuse.core.args import shown
from ratefuse.core.errors import RatefuseError
from ratefuse.throttle import MetricSample

PERCENT: Final = 100
DEFAULT_CRITICAL_SHARE: Final = 100
DEFAULT_DEFAULT_SHARE: Final = 80
DEFAULT_SHEDDABLE_SHARE: Final = 50


class Priority(IntEnum):
    """`Priority` ranks requests for shedding: higher values matter more.
    SHEDDABLE (prefetches, batch jobs, retries) is refused first, CRITICAL
    last."""

    SHEDDABLE = 0
    DEFAULT = 1
    CRITICAL = 2


def parse_priority(value: object, default: Priority = Priority.DEFAULT) -> Priority:
    """`parse_priority` reads a priority from a request attribute: a
    Priority, its int value, or its name or value as text or bytes (case
    insensitive: ``"critical"``, ``"0"``); anything else (None, an empty or
    unknown value) is ``default``. A header is something the client sends:
    let only a trusted proxy set the one you read."""
    if isinstance(value, Priority):
        return value
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        text = value.strip().upper()
        if text in Priority.__members__:
            return Priority[text]
        value = int(text) if text.isdigit() else None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return Priority(value)
        except ValueError:
            return default
    return default


@dataclass(frozen=True)
class PriorityShares:
    """`PriorityShares` is the percentage (an int, 0 to 100) of the
    capacity each priority may use; a lower priority may not have a larger
    share than a higher one. 0 refuses that priority always; 100 lets it
    use everything."""

    critical: int = DEFAULT_CRITICAL_SHARE
    default: int = DEFAULT_DEFAULT_SHARE
    sheddable: int = DEFAULT_SHEDDABLE_SHARE

    def __post_init__(self) -> None:
        for field in ("critical", "default", "sheddable"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"{field} must be an int percentage, got {shown(value)}"
                )
            if not 0 <= value <= PERCENT:
                raise ValueError(f"{field} must be between 0 and 100, got {value}")
        if not self.sheddable <= self.default <= self.critical:
            raise ValueError(
                "shares must not grow as the priority falls, got "
                f"critical={self.critical}, default={self.default}, "
                f"sheddable={self.sheddable}"
            )

    def share(self, priority: Priority) -> int:
        """`share` is the percentage ``priority`` may use."""
        return (self.sheddable, self.default, self.critical)[priority]

    def allowance(self, priority: Priority, capacity: int) -> int:
        """`allowance` is how much of ``capacity`` units ``priority`` may
        use: its share, rounded down."""
        return capacity * self.share(priority) // PERCENT


class LoadShedError(RatefuseError):
    """`LoadShedError` reports a request refused to keep headroom for
    higher priorities: ``priority`` its priority, ``name`` the limit's."""

    def __init__(
        self, name: str, priority: Priority, in_use: int, allowed: int
    ) -> None:
        self.name = name
        self.priority = priority
        self.in_use = in_use
        self.allowed = allowed
        super().__init__(
            f"{name!r} shed a {priority.name} request: {in_use} in use, "
            f"{priority.name} may use {allowed}"
        )


@dataclass(frozen=True)
class PriorityStats:
    """`PriorityStats` counts admissions and refusals since construction,
    indexed by Priority value (SHEDDABLE, DEFAULT, CRITICAL)."""

    admitted: tuple[int, int, int]
    refused: tuple[int, int, int]


def priority_samples(kind: str, stats: PriorityStats) -> list[MetricSample]:
    """`priority_samples` are the Prometheus samples of ``stats`` (see
    :class:`ratefuse.metrics.RatefuseCollector`), family ``<kind>_requests``
    by priority and result."""
    family = f"{kind}_requests"
    documentation = f"Requests of a {kind.replace('_', ' ')}, by priority and result."
    return [
        (
            family,
            documentation,
            False,
            {"priority": priority.name.lower(), "result": result},
            counts[priority],
        )
        for priority in Priority
        for result, counts in (("admitted", stats.admitted), ("refused", stats.refused))
    ]


class _ShedByPriority:
    # What both shedding forms share: the shares and name, and the counts
    # of admissions and refusals by priority, kept under the lock.

    def __init__(self, shares: PriorityShares | None, name: str) -> None:
        shares = PriorityShares() if shares is None else shares
        if not isinstance(shares, PriorityShares):
            raise TypeError(f"shares must be PriorityShares, got {shown(shares)}")
        self.shares = shares
        self.name = str(name)
        self._lock = threading.Lock()
        self._admitted = [0, 0, 0]
        self._refused = [0, 0, 0]

    def stats(self) -> PriorityStats:
        """`stats` counts admissions and refusals by priority since
        construction."""
        with self._lock:
            admitted, refused = self._admitted, self._refused
            return PriorityStats(
                (admitted[0], admitted[1], admitted[2]),
                (refused[0], refused[1], refused[2]),
            )


class PriorityLimiter(_ShedByPriority):
    """`PriorityLimiter` sheds by priority in front of ``limiter``, an
    in-memory limiter of one subject (:class:`ratefuse.Limiter`: anything
    with ``decide(cost, now)`` and ``clock``, None meaning the monotonic
    clock). A request of priority p
    and cost c is admitted only if the limiter then keeps ``capacity -
    allowance(p)`` units free, the capacity being the ``limit`` of the
    decision that applies (with several limits, the most restrictive). A
    refused request's Decision says when it could pass at its priority
    (``inf``: its cost exceeds its allowance). Thread-safe: decisions are
    serialised by a lock; calls that bypass this object and go to the
    limiter directly are not shed.
    """

    def __init__(
        self,
        limiter: Any,
        shares: PriorityShares | None = None,
        *,
        name: str = "priority_limiter",
    ) -> None:
        if not callable(getattr(limiter, "decide", None)):
            raise TypeError(f"limiter must have a decide method, got {shown(limiter)}")
        super().__init__(shares, name)
        self.limiter = limiter
        clock = getattr(limiter, "clock", None)
        self._clock: Callable[[], int] = time.monotonic_ns if clock is None else clock

    def decide(
        self,
        cost: int = 1,
        priority: Priority = Priority.DEFAULT,
        now: int | None = None,
    ) -> Any:
        """`decide` decides ``cost`` at ``priority`` and returns the
        limiter's Decision (cost 0 asks without consuming)."""
        limiter = self.limiter
        with self._lock:
            if now is None:
                # One reading for both steps: a unit that refilled between
                # them would turn the denial below into an admission of
                # the headroom too.
                now = self._clock()
            probe = limiter.decide(0, now)
            reserve = probe.limit - self.shares.allowance(priority, probe.limit)
            if probe.remaining >= cost + reserve:
                decision = limiter.decide(cost, now)
            else:
                # Denied at this priority: the limiter's answer for the
                # cost plus the headroom says when it would pass (and is
                # a denial, so it consumes nothing).
                decision = limiter.decide(cost + reserve, now)
            (self._admitted if decision.allowed else self._refused)[priority] += 1
        return decision

    @property
    def rates(self) -> Any:
        """`rates` are the limiter's rates (empty if it has none)."""
        return getattr(self.limiter, "rates", ())

    def reset(self) -> None:
        """`reset` resets the limiter (the counts keep growing)."""
        self.limiter.reset()

    def decide_at(self, priority: object, cost: int = 1) -> Any:
        """`decide_at` is `decide` for a priority read from a request
        (parsed by `parse_priority`); the middleware calls it."""
        return self.decide(cost, parse_priority(priority))

    def try_acquire(
        self,
        cost: int = 1,
        priority: Priority = Priority.DEFAULT,
        now: int | None = None,
    ) -> bool:
        """`try_acquire` reports whether `decide` admitted the request."""
        return bool(self.decide(cost, priority, now).allowed)

    def metric_samples(self) -> list[MetricSample]:
        """`metric_samples` are the Prometheus samples (family
        ``priority_limiter_requests``)."""
        return priority_samples("priority_limiter", self.stats())

    def __repr__(self) -> str:
        return f"PriorityLimiter({self.limiter!r}, {self.shares!r})"


class PriorityBulkhead(_ShedByPriority):
    """`PriorityBulkhead` lets at most ``max_concurrent`` (>= 1) calls run
    at once, a priority only up to its allowance of them (by default, of
    10 slots: sheddable 5, default 8, critical 10). A call that finds its
    allowance used is refused at once (shedding does not queue: waiting
    under overload is what it avoids). Thread-safe and asyncio-safe.
    """

    def __init__(
        self,
        max_concurrent: int,
        shares: PriorityShares | None = None,
        *,
        name: str = "priority_bulkhead",
    ) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
            raise ValueError(
                f"max_concurrent must be an int, got {shown(max_concurrent)}"
            )
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        super().__init__(shares, name)
        self.max_concurrent = max_concurrent
        self.allowances = tuple(
            self.shares.allowance(priority, max_concurrent) for priority in Priority
        )
        self._in_use = 0

    @property
    def in_use(self) -> int:
        """`in_use` is the number of slots held now."""
        return self._in_use

    def try_acquire(self, priority: Priority = Priority.DEFAULT) -> bool:
        """`try_acquire` takes a slot if ``priority``'s allowance has one
        free now, and reports whether it did; pair it with `release`."""
        with self._lock:
            if self._in_use < self.allowances[priority]:
                self._in_use += 1
                self._admitted[priority] += 1
                return True
            self._refused[priority] += 1
            return False

    def acquire(self, priority: Priority = Priority.DEFAULT) -> None:
        """`acquire` is `try_acquire` that raises LoadShedError instead of
        returning False."""
        if not self.try_acquire(priority):
            raise LoadShedError(
                self.name, priority, self._in_use, self.allowances[priority]
            )

    def release(self) -> None:
        """`release` frees a slot taken by `try_acquire` or `acquire`."""
        with self._lock:
            if self._in_use == 0:
                raise RuntimeError(f"bulkhead {self.name!r} released too many times")
            self._in_use -= 1

    @contextmanager
    def holding(self, priority: Priority = Priority.DEFAULT) -> Iterator[None]:
        """`holding` holds a slot for a with-block (LoadShedError if the
        priority's allowance is used up), released on every way out."""
        self.acquire(priority)
        try:
            yield
        finally:
            self.release()

    @asynccontextmanager
    async def holding_async(
        self, priority: Priority = Priority.DEFAULT
    ) -> AsyncIterator[None]:
        """`holding_async` is `holding` for ``async with`` (it never waits,
        so it never blocks the event loop)."""
        self.acquire(priority)
        try:
            yield
        finally:
            self.release()

    def metric_samples(self) -> list[MetricSample]:
        """`metric_samples` are the Prometheus samples (families
        ``priority_bulkhead_requests`` and ``priority_bulkhead_in_use``)."""
        return [
            *priority_samples("priority_bulkhead", self.stats()),
            (
                "priority_bulkhead_in_use",
                "Slots of a priority bulkhead held now.",
                True,
                {},
                self._in_use,
            ),
        ]

    def __repr__(self) -> str:
        return (
            f"<PriorityBulkhead {self.name!r} {self._in_use}/{self.max_concurrent} "
            f"in use, allowances {self.allowances}>"
        )
