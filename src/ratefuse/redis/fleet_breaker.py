"""`FleetBreaker`: a circuit breaker whose window and state live in Redis,
shared by every process that uses the same name.

Each process buffers its calls' outcomes (one byte each, in C) and a
background thread sends them in small batches, every ``batch_size``
outcomes or every ``flush_interval`` seconds, to one Lua script
(``lua/fleet_breaker.lua``) that records them in the fleet's sliding window
and runs the breaker's state machine, atomically, on the server's clock.
Its reply is the fleet's state, so every process opens when the fleet
opens. In HALF_OPEN the fleet hands out ``half_open_calls`` probe permits in
all, not per process. When Redis cannot be reached the breaker falls back to
a local :class:`ratefuse.CircuitBreaker` (the compiled core) seeded with the
last fleet state, and follows the fleet again once Redis answers::

    breaker = FleetBreaker("payments", BreakerConfig(), client=redis.Redis())

    @breaker
    def charge(order): ...

Deciding in CLOSED (a compiled gate) and recording an outcome never wait
for Redis: only a call that finds the fleet OPEN past its wait, or
HALF_OPEN, asks Redis for a probe permit (one round trip, bounded by the
breaker's ``timeout``). :class:`AsyncFleetBreaker` is the asyncio twin.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException, RedisError

from ratefuse.breaker import Permit
from ratefuse.core.backend_defaults import DEFAULT_TIMEOUT
from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.core.breaker.fleet_recorder import FleetPermit, Gate
from ratefuse.core.breaker.spec import Listener, State
from ratefuse.core.errors import CircuitOpenError
from ratefuse.engine.breaker_forms import BreakerForms
from ratefuse.redis._connection import check_timeout
from ratefuse.redis._fleet_async import AsyncFleetBreaker
from ratefuse.redis._fleet_base import CLOSED, DISABLED, FleetBase, RedisLost
from ratefuse.redis._fleet_client import FleetClient, fleet_client_factory
from ratefuse.redis._fleet_script import (
    ACQUIRE,
    RECORD,
    TRANSITION,
    FleetReply,
    fleet_script_source,
    to_reply,
)
from ratefuse.redis._fleet_stats import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_IDLE_TTL,
    DEFAULT_MAX_PENDING,
    FleetBreakerStats,
)
from ratefuse.redis._schema import DEFAULT_PREFIX

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_IDLE_TTL",
    "DEFAULT_MAX_PENDING",
    "AsyncFleetBreaker",
    "FleetBreaker",
    "FleetBreakerStats",
]

# What a lost Redis raises: redis-py's errors, sockets, an unreadable reply;
# and a cluster client's (RedisClusterException, "cannot be connected",
# SlotNotCoveredError, is no RedisError).
_LOST = (RedisError, RedisClusterException, OSError, ValueError)

logger = logging.getLogger("ratefuse.breaker")

# The state type, by a name the class attribute `State` does not shadow.
_State = State


def _flush_loop(
    ref: weakref.ReferenceType[FleetBreaker], wake: threading.Event, interval: float
) -> None:
    # The background flusher. It holds the breaker weakly, so a breaker
    # nobody references (and never closed) is collected and the thread ends.
    while True:
        wake.wait(interval)
        wake.clear()
        breaker = ref()
        if breaker is None or breaker.closed:
            return
        try:
            breaker.flush()
        except Exception:
            logger.exception("fleet breaker %r could not flush", breaker.name)
        del breaker


class FleetBreaker(FleetBase, BreakerForms):
    """`FleetBreaker` guards calls to one dependency for a whole fleet.

    ``FleetBreaker(name, config=None, *, client, ...)`` takes the same
    ``name``, ``config`` (a :class:`BreakerConfig`; None: the defaults),
    ``clock``, ``fallback`` and ``listeners`` as :class:`CircuitBreaker`,
    and has the same forms: ``@breaker`` (sync and async functions),
    ``with``/``async with breaker.guard()``, ``breaker.call(fn, ...)``, and
    ``permit = breaker.try_acquire()`` then ``permit.on_success(duration)``
    or ``permit.on_error(duration, exc)``. Every process using the same
    ``name``, ``prefix`` and ``namespace`` shares one window and state, and
    must use the same config.

    ``client`` is a ``redis.Redis`` or ``redis.RedisCluster``: the breaker
    opens its own client with its settings, ``timeout`` seconds (default
    0.1) on every connect, send and read and no retries, so that a lost
    Redis costs a flush or a probe request one timeout before the breaker
    falls back. ``batch_size`` (1 to 4096, default 64) outcomes or
    ``flush_interval`` seconds (0.001 to 60, default 0.05) trigger a
    flush; every flush also reads the fleet state, so a process learns of
    a fleet trip within about ``flush_interval``.
    ``idle_ttl`` seconds (1 to 30 days, default 3600) is how long Redis
    keeps a breaker nobody uses, beyond its current wait. ``max_pending``
    bounds the outcomes buffered between flushes (the rest are dropped and
    counted). ``background`` False starts no flusher thread: then call
    `flush` yourself (tests do). ``redis_clock`` returns the time in
    integer microseconds that the script uses instead of the server's TIME:
    for tests only.

    The constructor reads the fleet state once (and falls back at once if
    Redis cannot be reached). While fallen back, manual transitions are
    local only. Thread-safe; listeners run outside any lock. `close` stops
    the flusher after a last flush (``client`` stays open).
    """

    def __init__(
        self,
        name: str = "breaker",
        config: BreakerConfig | None = None,
        *,
        client: redis.Redis | RedisCluster,
        clock: Callable[[], int] | None = None,
        fallback: Callable[..., Any] | None = None,
        listeners: Iterable[Listener] = (),
        prefix: str = DEFAULT_PREFIX,
        namespace: str = "",
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        idle_ttl: float = DEFAULT_IDLE_TTL,
        max_pending: int = DEFAULT_MAX_PENDING,
        timeout: float = DEFAULT_TIMEOUT,
        background: bool = True,
        redis_clock: Callable[[], int] | None = None,
    ) -> None:
        if not isinstance(client, (redis.Redis, RedisCluster)):
            raise TypeError(
                f"client must be a redis.Redis or redis.RedisCluster, got {client!r}"
            )
        self._wake = threading.Event()
        super().__init__(
            name,
            config,
            clock=clock,
            fallback=fallback,
            listeners=listeners,
            prefix=prefix,
            namespace=namespace,
            batch_size=batch_size,
            flush_interval=flush_interval,
            idle_ttl=idle_ttl,
            max_pending=max_pending,
            redis_clock=redis_clock,
            wake=self._wake.set,
        )
        self._make_client = fleet_client_factory(client, check_timeout(timeout))
        self._redis: FleetClient | None = None
        self._runner: Script | None = None
        self._io_lock = threading.RLock()
        self._gate = Gate(self._try_acquire_slow)
        # The gate's bound method, found before the class's: in CLOSED a
        # call runs no Python frame (try_acquire below documents it).
        self.__dict__["try_acquire"] = self._gate.try_acquire
        self.flush()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=_flush_loop,
                args=(weakref.ref(self), self._wake, self._flush_interval),
                name=f"ratefuse-fleet-breaker-{self.name}",
                daemon=True,
            )
            self._thread.start()

    def _call(
        self, op: bytes, generation: int = 0, batch: bytes = b"", target: int = 0
    ) -> FleetReply:
        # One script call. Precondition: the I/O lock is held.
        try:
            runner = self._runner
            if runner is None:
                # Opened on first use (a cluster client reads its slot map,
                # which may fail like any call).
                self._redis = self._make_client()
                runner = self._runner = self._redis.register_script(
                    fleet_script_source()
                )
            raw = runner(
                keys=self._keys, args=self._args(op, generation, batch, target)
            )
            return to_reply(raw)
        except _LOST as exc:
            raise self._lost(exc) from exc

    def flush(self) -> None:
        """`flush` sends the buffered outcomes in one script call and follows
        the fleet state it returns; while fallen back it tries Redis again
        (and follows the fleet if it answers). Never raises for a lost
        Redis: the breaker falls back instead."""
        with self._io_lock:
            generation, batch = self._take_batch()
            try:
                reply = self._call(RECORD, generation, batch)
            except RedisLost:
                self._fall_back(len(batch))
            else:
                self._flushed(reply, batch)
        self._deliver()

    def try_acquire(self, now: int | None = None) -> FleetPermit | Permit | None:
        """`try_acquire` returns a permit if a call may go ahead now, else
        None (see `retry_after`). Report the call's outcome on the permit
        exactly once. In CLOSED this reads no clock and waits for nothing;
        a call that finds the fleet OPEN past its wait or HALF_OPEN asks
        Redis for one of the fleet's probe permits."""
        assert self._gate is not None
        return self._gate.try_acquire(now)  # type: ignore[no-any-return]

    def permit_or_error(
        self, now: int | None = None
    ) -> FleetPermit | Permit | CircuitOpenError:
        """`permit_or_error` is `try_acquire` that answers a rejection with
        its CircuitOpenError (returned, not raised)."""
        permit = self.try_acquire(now)
        return self.open_error(now) if permit is None else permit

    def _try_acquire_slow(self, now: int | None) -> FleetPermit | Permit | None:
        # What the gate cannot answer alone.
        if self._fallen_back:
            return self._local.try_acquire(now)
        if self._state in (CLOSED, DISABLED):
            return self._permit
        at = self._at(now)
        permit: FleetPermit | Permit | None = None
        if not self._blocked(at):
            with self._io_lock:
                permit = self._acquire_locked(at)
            self._deliver_or_release(permit)
        if permit is None:
            self._rejected()
        return permit

    def _acquire_locked(self, at: int) -> FleetPermit | Permit | None:
        answer = self._before_probe_request(at)
        if answer is not True:
            return answer  # type: ignore[return-value]
        try:
            reply = self._call(ACQUIRE)
        except RedisLost:
            self._fall_back(0)
            return self._local.try_acquire(at)
        return self._probe_answer(reply, at)

    def transition_to(self, state: _State, now: int | None = None) -> None:
        """`transition_to` enters ``state`` by hand, fleet-wide (only
        locally while fallen back); IllegalTransitionError for CLOSED to
        HALF_OPEN."""
        target = State(state)
        with self._io_lock:
            if not self._fallen_back:
                try:
                    reply = self._call(TRANSITION, target=int(target))
                except RedisLost:
                    self._fall_back(0)
                else:
                    self._transitioned(reply, target)
        if self._fallen_back:
            self._local.transition_to(target, now)
        self._deliver()

    def reset(self) -> None:
        """`reset` closes the breaker fleet-wide as if new: empty window,
        base wait, a new generation."""
        self.transition_to(State.CLOSED)

    def force_open(self) -> None:
        """`force_open` rejects every call, fleet-wide, until a manual
        transition."""
        self.transition_to(State.FORCED_OPEN)

    def disable(self) -> None:
        """`disable` permits every call and records nothing, fleet-wide,
        until a manual transition."""
        self.transition_to(State.DISABLED)

    def close(self) -> None:
        """`close` stops the flusher thread after a last flush and closes
        the breaker's own connections (not ``client``). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if not self._fallen_back:
            self.flush()
        if self._redis is not None:
            self._redis.close()

    def __enter__(self) -> FleetBreaker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
