"""`AsyncFleetBreaker`: the fleet breaker for asyncio, over ``redis.asyncio``.

The decisions are :class:`._fleet_base.FleetBase`'s, as for the sync
:class:`.fleet_breaker.FleetBreaker`; this module awaits the script's
calls and flushes from a task instead of a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisClusterException, RedisError

from ratefuse.breaker import Permit
from ratefuse.core.backend_defaults import DEFAULT_TIMEOUT
from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.core.breaker.fleet_recorder import FleetPermit
from ratefuse.core.breaker.spec import Listener, State
from ratefuse.core.errors import CircuitOpenError
from ratefuse.engine.breaker_forms import AsyncBreakerForms
from ratefuse.redis._connection import check_timeout
from ratefuse.redis._fleet_base import CLOSED, DISABLED, FleetBase, RedisLost
from ratefuse.redis._fleet_client import AsyncFleetClient, async_fleet_client_factory
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
)
from ratefuse.redis._schema import DEFAULT_PREFIX

# As fleet_breaker._LOST, and asyncio's timeout.
_LOST = (RedisError, RedisClusterException, OSError, ValueError, asyncio.TimeoutError)

logger = logging.getLogger("ratefuse.breaker")

# The state type, by a name the class attribute `State` does not shadow.
_State = State


class AsyncFleetBreaker(FleetBase, AsyncBreakerForms):
    """`AsyncFleetBreaker` is :class:`FleetBreaker` for asyncio.

    Same arguments, but ``client`` is a ``redis.asyncio.Redis`` or
    ``redis.asyncio.RedisCluster``, and the verbs that may reach Redis are
    awaited: ``await breaker.try_acquire()`` (and ``permit_or_error``),
    ``await breaker.flush()``,
    ``await breaker.transition_to(state)`` (and ``reset``,
    ``force_open``, ``disable``). Forms: ``@breaker`` on coroutine
    functions, ``async with breaker.guard()``, ``await breaker.call(fn,
    ...)``; permits are reported as with the sync breaker.

    Use it as ``async with AsyncFleetBreaker(...) as breaker`` (or ``await
    breaker.start()`` and ``await breaker.aclose()``): starting reads the
    fleet state and starts the flusher task (none if ``background`` is
    False); a breaker used unstarted starts on its first `try_acquire`.
    Not thread-safe: use it from one event loop.
    """

    def __init__(
        self,
        name: str = "breaker",
        config: BreakerConfig | None = None,
        *,
        client: redis.asyncio.Redis | AsyncRedisCluster,
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
        if not isinstance(client, (redis.asyncio.Redis, AsyncRedisCluster)):
            raise TypeError(
                "client must be a redis.asyncio.Redis or redis.asyncio.RedisCluster, "
                f"got {client!r}"
            )
        self._wake = asyncio.Event()
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
        self._make_client = async_fleet_client_factory(client, check_timeout(timeout))
        self._redis: AsyncFleetClient | None = None
        self._runner: AsyncScript | None = None
        self._io_lock = asyncio.Lock()
        self._background = bool(background)
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """`start` reads the fleet state and starts the flusher task.
        Idempotent; concurrent callers wait for the first to finish, so that
        no call is permitted before the fleet state is known."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            await self.flush()
            if self._background:
                self._task = asyncio.get_running_loop().create_task(
                    self._flush_forever(), name=f"ratefuse-fleet-breaker-{self.name}"
                )
            self._started = True

    async def _flush_forever(self) -> None:
        wake = self._wake
        while not self.closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), self._flush_interval)
            wake.clear()
            if self.closed:
                return
            try:
                await self.flush()
            except Exception:
                logger.exception("fleet breaker %r could not flush", self.name)

    async def _call(
        self, op: bytes, generation: int = 0, batch: bytes = b"", target: int = 0
    ) -> FleetReply:
        # One script call. Precondition: the I/O lock is held.
        try:
            runner = self._runner
            if runner is None:
                self._redis = self._make_client()
                runner = self._runner = self._redis.register_script(
                    fleet_script_source()
                )
            raw = await runner(
                keys=self._keys, args=self._args(op, generation, batch, target)
            )
            return to_reply(raw)
        except _LOST as exc:
            raise self._lost(exc) from exc

    async def flush(self) -> None:
        """`flush` is `FleetBreaker.flush`, awaited."""
        async with self._io_lock:
            generation, batch = self._take_batch()
            try:
                reply = await self._call(RECORD, generation, batch)
            except RedisLost:
                self._fall_back(len(batch))
            else:
                self._flushed(reply, batch)
        self._deliver()

    async def try_acquire(self, now: int | None = None) -> FleetPermit | Permit | None:
        """`try_acquire` is `FleetBreaker.try_acquire`, awaited: it waits
        for Redis only when the fleet is OPEN past its wait or HALF_OPEN."""
        if not self._started:
            await self.start()
        if self._fallen_back:
            return self._local.try_acquire(now)
        if self._state in (CLOSED, DISABLED):
            return self._permit
        at = self._at(now)
        permit: FleetPermit | Permit | None = None
        if not self._blocked(at):
            async with self._io_lock:
                answer = self._before_probe_request(at)
                if answer is not True:
                    permit = answer  # type: ignore[assignment]
                else:
                    try:
                        reply = await self._call(ACQUIRE)
                    except RedisLost:
                        self._fall_back(0)
                        permit = self._local.try_acquire(at)
                    else:
                        permit = self._probe_answer(reply, at)
            self._deliver_or_release(permit)
        if permit is None:
            self._rejected()
        return permit

    async def permit_or_error(
        self, now: int | None = None
    ) -> FleetPermit | Permit | CircuitOpenError:
        """`permit_or_error` is `try_acquire` that answers a rejection with
        its CircuitOpenError (returned, not raised)."""
        permit = await self.try_acquire(now)
        return self.open_error(now) if permit is None else permit

    async def transition_to(self, state: _State, now: int | None = None) -> None:
        """`transition_to` is `FleetBreaker.transition_to`, awaited."""
        target = State(state)
        async with self._io_lock:
            if not self._fallen_back:
                try:
                    reply = await self._call(TRANSITION, target=int(target))
                except RedisLost:
                    self._fall_back(0)
                else:
                    self._transitioned(reply, target)
        if self._fallen_back:
            self._local.transition_to(target, now)
        self._deliver()

    async def reset(self) -> None:
        """`reset` closes the breaker fleet-wide as if new."""
        await self.transition_to(State.CLOSED)

    async def force_open(self) -> None:
        """`force_open` rejects every call, fleet-wide."""
        await self.transition_to(State.FORCED_OPEN)

    async def disable(self) -> None:
        """`disable` permits every call and records nothing, fleet-wide."""
        await self.transition_to(State.DISABLED)

    async def aclose(self) -> None:
        """`aclose` stops the flusher task after a last flush and closes the
        breaker's own connections (not ``client``). Idempotent."""
        if self.closed:
            return
        self.closed = True
        task = self._task
        if task is not None:
            self._wake.set()
            await task
        if self._started and not self._fallen_back:
            await self.flush()
        if self._redis is not None:
            await self._redis.aclose()

    async def __aenter__(self) -> AsyncFleetBreaker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
