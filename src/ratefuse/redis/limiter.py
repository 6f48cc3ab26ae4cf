"""`RedisLimiter` and `AsyncRedisLimiter`: keyed limiters whose state lives in
Redis, shared by every process that uses the same name.

Both are thin: the arguments, validation, binding, the failure policy and
the local answers (deny cache and quota leases) are shared
(:class:`._limiter_core.LimiterCore`); each verb here is at most one
backend call between two of its steps.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio
from redis.cluster import RedisCluster

from ratefuse.core.spec import MAX_COST
from ratefuse.engine.subject import Decision
from ratefuse.redis._async import AsyncRedisBackendIO, AsyncRedisStore
from ratefuse.redis._backend_core import AsyncClosing, Closing
from ratefuse.redis._codec import RawReply
from ratefuse.redis._lease_config import LeaseConfig
from ratefuse.redis._leasing import (
    Ask,
    LowHandler,
    MissHandler,
    Refiller,
    weakly,
)
from ratefuse.redis._limiter_core import (
    FAILURES,
    PLAIN_KEYS,
    LimiterCore,
)
from ratefuse.redis._schema import Subject
from ratefuse.redis._sync import RedisBackendIO, RedisStore

__all__ = ["AsyncRedisLimiter", "LeaseConfig", "RedisLimiter"]

SyncClient = redis.Redis | RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.RedisCluster


class RedisLimiter(LimiterCore[RedisBackendIO, SyncClient, RedisStore], Closing):
    """`RedisLimiter` limits each key to ``limits``, fleet-wide, in Redis.

    ``limits`` is a rate string ("10/s; 1000/h"), a Rate or a sequence of
    either; several limits decide all-or-nothing in one script and report
    the most restrictive. ``algorithm``: gcra (default, alias
    token_bucket), fixed_window, sliding_window or sliding_log.
    ``backend`` is a :class:`RedisBackend`, or a ``redis.Redis`` /
    ``redis.RedisCluster`` client to build one with default settings
    (closed with the limiter). ``name`` names the quota: every limiter with
    the same name, prefix and namespace shares it.

    When Redis cannot decide (down, slow past the backend's timeout,
    erroring, or its breaker open), ``on_backend_error`` answers: "deny"
    (default: never more than the quota), "local" (a local limiter per key
    at ``local_share`` of each limit in each process, remembering at most
    ``local_max_keys`` keys; giving ``local_share`` alone chooses it),
    "allow", or "raise" (BackendError). See :mod:`._policy`.

    ``deny_cache``: after the fleet denies cost c with retry_after r, deny
    costs >= c of that key locally for r (local monotonic clock, from just
    before the request was sent), so a denied caller costs no round trip.
    Exact for gcra and fixed_window; None (default) turns it on there;
    True on sliding_window or sliding_log is a ValueError. ``lease``: a
    :class:`LeaseConfig` (or True for its defaults) to spend units leased
    from the fleet locally: over any interval t the fleet then admits at
    most ``burst + rate * (t + lifetime)``; gcra only (see
    :mod:`._lease_config`). Both keep at most ``cache_max_keys`` keys and
    read ``clock`` (integer ns; None: the monotonic clock). A cached or
    leased decision reports remaining and reset_after as lower bounds;
    the batch verbs always ask Redis.

    Verbs: ``try_acquire(key, cost=1) -> bool``, ``decide(key, cost=1) ->
    Decision``, ``decide_many(keys, costs=None, now=None,
    retry_after=False)`` (numpy arrays, as the in-memory KeyedLimiter's;
    ``now`` must be None) and ``decide_many_decisions(keys, costs=None) ->
    list[Decision]`` (one round trip per node each), ``reset(key)``. Keys
    are str, bytes or int (and numpy int64 id arrays in a batch). Cost 0
    asks without consuming. Times come from the Redis server's clock.
    Thread-safe; `close` stops the background refills of leases.
    """

    _refiller: Refiller
    _table_try: Callable[[Subject, int], bool] | None

    _backend_class = RedisBackendIO

    def _handlers(self, name: str) -> tuple[MissHandler | None, LowHandler]:
        self._refiller = Refiller(
            weakly(self, self._refill, None), f"ratefuse-lease-{name}"
        )
        # A limiter dropped without close() still stops its refill thread.
        weakref.finalize(self, self._refiller.stop)
        return weakly(self, self._miss, False), self._refiller.request

    def _abandon(self) -> None:
        self.close()

    def _started(self) -> None:
        # The table's compiled call answers hits and cached denials; only
        # misses come back to Python (self._miss). It is called from
        # try_acquire rather than installed as it: the table reaches the
        # limiter through a weak reference (see weakly), so the table's
        # bound method alone, kept after the limiter was dropped, could
        # only deny. A bound method of the limiter keeps the limiter alive.
        answers = self._answers
        self._table_try = None if answers is None else answers.table.try_acquire

    def try_acquire(self, key: Subject, cost: int = 1) -> bool:
        """`try_acquire` consumes ``cost`` for ``key`` if every limit admits
        it and reports whether it did."""
        table_try = self._table_try
        if table_try is not None:
            return table_try(key, cost)
        if self._answers is not None:
            return self._decide_locally(key, cost).allowed
        try:
            outcome = self._store.decide_raw(key, cost)
        except FAILURES as exc:
            return self._settle(key, cost, exc).allowed
        # Redis's verdict, without the Decision decide would build.
        self._fallback.answered()
        return outcome[0] == 1

    def decide(self, key: Subject, cost: int = 1) -> Decision:
        """`decide` is `try_acquire` with the whole Decision."""
        if self._answers is not None:
            return self._decide_locally(key, cost)
        try:
            outcome: RawReply | BaseException = self._store.decide_raw(key, cost)
        except FAILURES as exc:
            outcome = exc
        return self._settle(key, cost, outcome)

    def _miss(self, key: Subject, cost: int) -> bool:
        # try_acquire's compiled call missed in the table (or met a key or
        # cost it does not take): an exact decision with a plain key and
        # cost goes straight to Redis, since the table has just been read.
        answers = self._answers
        assert answers is not None
        if (
            answers.lease is None
            and type(cost) is int
            and 0 <= cost <= MAX_COST
            and type(key) in PLAIN_KEYS
        ):
            sent = answers.clock()
            try:
                outcome = self._store.decide_raw(key, cost)
            except FAILURES as exc:
                return self._settle(key, cost, exc, sent).allowed
            # `_settle` but for the Decision, which try_acquire never shows.
            if outcome[0] != 1:
                answers.remember(key, cost, outcome, sent)
                self._fallback.answered()
                return False
            self._fallback.answered()
            return True
        return self._decide_locally(key, cost).allowed

    def _decide_locally(self, key: Subject, cost: int) -> Decision:
        # The deny cache or the lease answers, else one round trip.
        step = self._begin(key, cost)
        if isinstance(step, Decision):
            return step
        try:
            outcome: RawReply | BaseException = self._send(step)
        except FAILURES as exc:
            outcome = exc
        return self._conclude(step, outcome)

    def _send(self, ask: Ask) -> RawReply:
        # One round trip for ``ask``; raises BackendError or CircuitOpenError.
        if not ask.units:
            return self._store.decide_raw(ask.key, ask.cost)
        return self._store.send(*self._lease_call(ask, self.backend.cluster))

    def _refill(self, key: Subject) -> None:
        # On the refill thread: never raises, or the key's refill would
        # stay pending and its lease would never be refilled again.
        answers = self._answers
        assert answers is not None
        ask = answers.refill(key)
        if ask is None:
            return
        try:
            outcome: RawReply | Exception = self._send(ask)
        except Exception as exc:
            outcome = exc
        self._refilled(ask, outcome)

    def decide_many(
        self,
        keys: Any,
        costs: Any = None,
        now: int | None = None,
        retry_after: bool = False,
    ) -> Any:
        """`decide_many` is the in-memory KeyedLimiter.decide_many on Redis:
        a numpy bool array (and, if ``retry_after``, a float64 array of
        seconds), one verdict per key, in order. ``keys``: a numpy int64
        array of ids or a sequence of keys; ``costs``: None (1 each), an int
        or one per key. ``now`` must be None (ValueError otherwise: the
        server's clock decides). Needs numpy. One round trip per node, as
        `decide_many_decisions`, whose Decisions it reads."""
        numpy, listed, checked = self._array_batch(keys, costs, now)
        try:
            outcomes: Sequence[RawReply | BaseException] = self._store.decide_many_raw(
                listed, checked
            )
        except FAILURES as exc:
            outcomes = [exc] * len(listed)
        return self._raw_arrays(numpy, listed, checked, outcomes, retry_after)

    def decide_many_decisions(
        self, keys: Sequence[Subject], costs: Sequence[int] | int | None = None
    ) -> list[Decision]:
        """`decide_many_decisions` decides ``costs[i]`` (None: 1 each) for
        ``keys[i]``, in order for repeated keys, grouped by slot and
        pipelined per node, and returns every Decision. ``costs`` may also
        be one int for every key; keys as `decide_many` takes them."""
        keys, costs = self._batch(keys, costs)
        return self._decide_batch(keys, costs)

    def _decide_batch(
        self, keys: list[Subject], costs: list[int] | None
    ) -> list[Decision]:
        # A checked batch's Decisions: Redis's, or the policy's for a failure.
        try:
            # Decisions, built call by call as the replies arrive.
            outcomes: Sequence[Decision | BaseException] = self._store.decide_many(
                keys, costs
            )
        except FAILURES as exc:
            outcomes = [exc] * len(keys)
        return self._settle_many(keys, costs, outcomes)

    def reset(self, key: Subject) -> None:
        """`reset` forgets ``key`` in Redis and in the local fallback; raises
        BackendError if Redis cannot delete it."""
        self._forget(key)
        self._store.reset(key)

    def close(self) -> None:
        """`close` stops the lease refills and closes the backend if the
        limiter built it."""
        self._refiller.close()
        if self._owns_backend:
            self.backend.close()


class AsyncRedisLimiter(
    LimiterCore[AsyncRedisBackendIO, AsyncClient, AsyncRedisStore], AsyncClosing
):
    """`AsyncRedisLimiter` is :class:`RedisLimiter` for asyncio: the same
    arguments (``backend`` an :class:`AsyncRedisBackend` or a
    ``redis.asyncio`` client) and the same decisions, with awaited verbs.
    Safe to share between tasks of one event loop.
    """

    _backend_class = AsyncRedisBackendIO

    def _handlers(self, name: str) -> tuple[MissHandler | None, LowHandler]:
        self._refills: set[asyncio.Task[None]] = set()
        self._closed = False
        return None, weakly(self, self._start_refill, None)

    async def try_acquire(self, key: Subject, cost: int = 1) -> bool:
        """`try_acquire`: see RedisLimiter.try_acquire."""
        if self._answers is not None:
            return (await self._decide_locally(key, cost)).allowed
        try:
            outcome = await self._store.decide_raw(key, cost)
        except FAILURES as exc:
            return self._settle(key, cost, exc).allowed
        # Redis's verdict, without the Decision decide would build.
        self._fallback.answered()
        return outcome[0] == 1

    async def decide(self, key: Subject, cost: int = 1) -> Decision:
        """`decide`: see RedisLimiter.decide."""
        if self._answers is not None:
            return await self._decide_locally(key, cost)
        try:
            outcome: RawReply | BaseException = await self._store.decide_raw(key, cost)
        except FAILURES as exc:
            outcome = exc
        return self._settle(key, cost, outcome)

    async def _decide_locally(self, key: Subject, cost: int) -> Decision:
        # See RedisLimiter._decide_locally.
        step = self._begin(key, cost)
        if isinstance(step, Decision):
            return step
        outcome: RawReply | BaseException
        try:
            outcome = await self._send(step)
        except FAILURES as exc:
            outcome = exc
        return self._conclude(step, outcome)

    async def _send(self, ask: Ask) -> RawReply:
        # See RedisLimiter._send.
        if ask.units:
            return await self._store.send(*self._lease_call(ask, self.backend.cluster))
        return await self._store.decide_raw(ask.key, ask.cost)

    def _start_refill(self, key: Subject) -> None:
        # Called from decide (on the event loop): the refill runs as a task
        # so that the caller does not wait on Redis. Once aclose has begun,
        # none starts (aclose could not wait for it: it would outlive the
        # limiter and its backend); the key's next miss asks the fleet.
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._refill(key))
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _refill(self, key: Subject) -> None:
        # See RedisLimiter._refill; a cancelled refill (aclose) also ends
        # the key's pending state.
        answers = self._answers
        assert answers is not None
        ask = answers.refill(key)
        if ask is None:
            return
        outcome: RawReply | Exception
        try:
            outcome = await self._send(ask)
        except asyncio.CancelledError:
            answers.refill_failed(key)
            raise
        except Exception as exc:
            outcome = exc
        self._refilled(ask, outcome)

    async def decide_many(
        self,
        keys: Any,
        costs: Any = None,
        now: int | None = None,
        retry_after: bool = False,
    ) -> Any:
        """`decide_many`: see RedisLimiter.decide_many."""
        numpy, listed, checked = self._array_batch(keys, costs, now)
        try:
            outcomes: Sequence[
                RawReply | BaseException
            ] = await self._store.decide_many_raw(listed, checked)
        except FAILURES as exc:
            outcomes = [exc] * len(listed)
        return self._raw_arrays(numpy, listed, checked, outcomes, retry_after)

    async def decide_many_decisions(
        self, keys: Sequence[Subject], costs: Sequence[int] | int | None = None
    ) -> list[Decision]:
        """`decide_many_decisions`: see RedisLimiter.decide_many_decisions."""
        keys, costs = self._batch(keys, costs)
        return await self._decide_batch(keys, costs)

    async def _decide_batch(
        self, keys: list[Subject], costs: list[int] | None
    ) -> list[Decision]:
        # See RedisLimiter._decide_batch.
        try:
            outcomes: Sequence[
                Decision | BaseException
            ] = await self._store.decide_many(keys, costs)
        except FAILURES as exc:
            outcomes = [exc] * len(keys)
        return self._settle_many(keys, costs, outcomes)

    async def reset(self, key: Subject) -> None:
        """`reset`: see RedisLimiter.reset."""
        self._forget(key)
        await self._store.reset(key)

    async def aclose(self) -> None:
        """`aclose` cancels the lease refills in flight (and starts no
        more) and closes the backend if the limiter built it."""
        self._closed = True
        refills = list(self._refills)
        for task in refills:
            task.cancel()
        await asyncio.gather(*refills, return_exceptions=True)
        if self._owns_backend:
            await self.backend.aclose()
