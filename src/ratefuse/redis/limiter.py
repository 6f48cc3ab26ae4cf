"""`RedisLimiter` and `AsyncRedisLimiter`: keyed limiters whose state lives in
Redis, shared by every process that uses the same name.

Both are thin: validation, binding, the failure policy and the local
answers (deny cache and quota leases, :mod:`._leasing`) are shared
(:class:`_LimiterBase`); each verb is at most one backend call plus the
policy for the decisions the backend could not make.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.cluster import RedisCluster

from ratefuse.core.args import check_cost
from ratefuse.core.backend_defaults import DEFAULT_ON_BACKEND_ERROR, PolicyName
from ratefuse.core.errors import BackendError, CircuitOpenError
from ratefuse.core.spec import MAX_COST
from ratefuse.engine.subject import Decision
from ratefuse.rates import (
    DEFAULT_ALGORITHM,
    Rate,
    RateLike,
    build_specs,
    canonical_algorithm,
    to_rates,
)
from ratefuse.redis._async import AsyncRedisBackend
from ratefuse.redis._binding import Binding
from ratefuse.redis._codec import RawReply
from ratefuse.redis._lease_config import LeaseConfig, to_lease_config
from ratefuse.redis._leasing import (
    DEFAULT_CACHE_MAX_KEYS,
    Ask,
    Clock,
    LocalAnswers,
    LowHandler,
    MissHandler,
    Refiller,
    check_clock,
    check_deny_cache,
    weakly,
)
from ratefuse.redis._policy import (
    DEFAULT_LOCAL_MAX_KEYS,
    DEFAULT_LOCAL_SHARE,
    FailurePolicy,
    Fallback,
    LimiterStats,
)
from ratefuse.redis._schema import Subject
from ratefuse.redis._sync import RedisBackend

__all__ = ["AsyncRedisLimiter", "LeaseConfig", "RedisLimiter"]

_FAILURES = (BackendError, CircuitOpenError)
_PLAIN_KEYS = (str, bytes, int)


class _LimiterBase:
    # What the sync and async limiters share: everything but the awaits.

    def __init__(
        self,
        binding: Binding,
        policy: FailurePolicy,
        rates: Sequence[Rate],
        algorithm: str,
    ) -> None:
        self.policy = policy
        self._binding = binding
        self._fallback = Fallback(policy, rates, algorithm)
        self._schema = binding.schema
        self._answers: LocalAnswers | None = None
        self._commands = 0
        self._commands_lock = threading.Lock()

    @property
    def name(self) -> str:
        """`name` names the shared quota: limiters with the same name (and
        prefix and namespace) share state."""
        return self._schema.name

    def stats(self) -> LimiterStats:
        """`stats` snapshots the decisions made, every fallback and the
        deny cache's and leases' counters."""
        stats = self._fallback.stats()
        with self._commands_lock:
            sent = stats.backend_decisions + self._commands
        stats = dataclasses.replace(stats, redis_commands=sent)
        answers = self._answers
        return stats if answers is None else answers.add_counts(stats)

    def _local_answers(
        self,
        algorithm: str,
        deny_cache: bool | None,
        lease: LeaseConfig | bool | None,
        cache_max_keys: int,
        clock: Clock | None,
        on_miss: MissHandler | None,
        on_low: LowHandler | None,
    ) -> LocalAnswers | None:
        # Validates the local-answer arguments; None when there are none.
        if (
            isinstance(cache_max_keys, bool)
            or not isinstance(cache_max_keys, int)
            or cache_max_keys < 1
        ):
            raise ValueError(
                f"cache_max_keys must be an int >= 1, got {cache_max_keys!r}"
            )
        config = to_lease_config(lease)
        caching = check_deny_cache(deny_cache, algorithm)
        check_clock(clock)
        if config is None and not caching:
            return None
        return LocalAnswers(
            self._binding,
            config,
            cache_max_keys,
            clock,
            on_miss,
            on_low if config is not None else None,
        )

    def _before_ask(self, key: Subject, cost: int) -> tuple[int, int]:
        # Validates a decision answered locally or by a lease (TypeError for
        # a bad key, from the schema; ValueError for a bad cost) and returns
        # the cost and the local time now.
        assert self._answers is not None
        if not isinstance(key, _PLAIN_KEYS):
            self._schema.tag(key)
        return check_cost(cost), self._answers.clock()

    def _conclude(self, ask: Ask, outcome: RawReply | BaseException) -> Decision:
        # The decision of ``ask`` once the fleet answered it, or failed to.
        answers = self._answers
        assert answers is not None
        if isinstance(outcome, BaseException) or not ask.units:
            return self._settle(ask.key, ask.cost, outcome, ask.sent)
        self._count(outcome)
        return answers.finish(ask, outcome)

    def _count(self, outcome: object) -> None:
        # Counts sends that Redis did not answer as a decision (leases, and
        # failures other than the breaker's rejection, which sends nothing);
        # the answered decisions are the policy's backend_decisions.
        if not isinstance(outcome, CircuitOpenError):
            with self._commands_lock:
                self._commands += 1

    def _settle(
        self,
        key: Subject,
        cost: int,
        outcome: RawReply | BaseException,
        sent: int | None = None,
    ) -> Decision:
        # ``sent``: the local time before sending, to cache a denial.
        if isinstance(outcome, BaseException):
            self._count(outcome)
            return self._fallback.decide(self._schema.tag(key), cost, outcome)
        if sent is not None and outcome[0] != 1 and self._answers is not None:
            self._answers.remember(key, cost, outcome, sent)
        self._fallback.answered()
        return self._binding.decision(outcome)

    def _settle_many(
        self,
        keys: Sequence[Subject],
        costs: Sequence[int] | None,
        outcomes: Sequence[Decision | BaseException],
    ) -> list[Decision]:
        # Failures are the exception: find them in one pass, then replace
        # them by the policy's decisions, in order.
        failed = [
            index
            for index, outcome in enumerate(outcomes)
            if isinstance(outcome, BaseException)
        ]
        decisions: list[Any] = list(outcomes)
        for index in failed:
            error = decisions[index]
            self._count(error)
            cost = 1 if costs is None else check_cost(costs[index])
            tag = self._schema.tag(keys[index])
            decisions[index] = self._fallback.decide(tag, cost, error)
        self._fallback.answered(len(decisions) - len(failed))
        return decisions


class RedisLimiter(_LimiterBase):
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
    erroring, or its breaker open), ``on_backend_error`` answers: "local"
    (default: a local limiter per key at ``local_share`` of each limit,
    remembering at most ``local_max_keys`` keys), "allow", "deny", or
    "raise" (BackendError). See :mod:`._policy`.

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
    `decide_many` always asks Redis.

    Verbs: ``try_acquire(key, cost=1) -> bool``, ``decide(key, cost=1) ->
    Decision``, ``decide_many(keys, costs=None) -> list[Decision]`` (one
    round trip per node), ``reset(key)``. Keys are str, bytes or int. Cost
    0 asks without consuming. Times come from the Redis server's clock.
    Thread-safe; `close` stops the background refills of leases.
    """

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        backend: RedisBackend | redis.Redis | RedisCluster,
        name: str,
        on_backend_error: PolicyName = DEFAULT_ON_BACKEND_ERROR,
        local_share: float = DEFAULT_LOCAL_SHARE,
        local_max_keys: int = DEFAULT_LOCAL_MAX_KEYS,
        deny_cache: bool | None = None,
        lease: LeaseConfig | bool | None = None,
        cache_max_keys: int = DEFAULT_CACHE_MAX_KEYS,
        clock: Clock | None = None,
    ) -> None:
        self.rates = to_rates(limits)
        self.algorithm = canonical_algorithm(algorithm)
        policy = FailurePolicy(on_backend_error, local_share, local_max_keys)
        specs = build_specs(self.rates, self.algorithm)
        self._owns_backend = not isinstance(backend, RedisBackend)
        if not isinstance(backend, RedisBackend):
            backend = RedisBackend(backend)
        self.backend = backend
        self._store = backend.bind(specs, name)
        super().__init__(self._store.binding, policy, self.rates, self.algorithm)
        self._refiller = Refiller(
            weakly(self, self._refill, None), f"ratefuse-lease-{name}"
        )
        # A limiter dropped without close() still stops its refill thread.
        weakref.finalize(self, self._refiller.stop)
        try:
            self._answers = self._local_answers(
                self.algorithm,
                deny_cache,
                lease,
                cache_max_keys,
                clock,
                weakly(self, self._miss, False),
                self._refiller.request,
            )
        except BaseException:
            self.close()
            raise
        if self._answers is not None:
            # The hot path: one compiled call answers hits and cached
            # denials; only misses come back to Python (self._miss).
            self.try_acquire = self._answers.table.try_acquire  # type: ignore[method-assign]

    def try_acquire(self, key: Subject, cost: int = 1) -> bool:
        """`try_acquire` consumes ``cost`` for ``key`` if every limit admits
        it and reports whether it did."""
        return self.decide(key, cost).allowed

    def decide(self, key: Subject, cost: int = 1) -> Decision:
        """`decide` is `try_acquire` with the whole Decision."""
        if self._answers is not None:
            return self._decide_locally(key, cost)
        try:
            outcome: RawReply | BaseException = self._store.decide_raw(key, cost)
        except _FAILURES as exc:
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
            and type(key) in _PLAIN_KEYS
        ):
            sent = answers.clock()
            try:
                outcome: RawReply | BaseException = self._store.decide_raw(key, cost)
            except _FAILURES as exc:
                outcome = exc
            return self._settle(key, cost, outcome, sent).allowed
        return self._decide_locally(key, cost).allowed

    def _decide_locally(self, key: Subject, cost: int) -> Decision:
        # The deny cache or the lease answers, else one round trip.
        answers = self._answers
        assert answers is not None
        step = answers.begin(key, *self._before_ask(key, cost))
        if isinstance(step, Decision):
            return step
        outcome: RawReply | BaseException
        try:
            outcome = self._send(step)
        except _FAILURES as exc:
            outcome = exc
        return self._conclude(step, outcome)

    def _send(self, ask: Ask) -> RawReply:
        # One round trip for ``ask``; raises BackendError or CircuitOpenError.
        if not ask.units:
            return self._store.decide_raw(ask.key, ask.cost)
        answers = self._answers
        assert answers is not None
        call = answers.lease_call(ask.key, ask.units, self.backend.cluster)
        return self._store.send(answers.packer, call)

    def _refill(self, key: Subject) -> None:
        # On the refill thread: never raises, or the key's refill would
        # stay pending and its lease would never be refilled again.
        answers = self._answers
        assert answers is not None
        ask = answers.refill(key)
        try:
            reply = self._send(ask)
        except Exception as exc:
            self._count(exc)
            answers.refill_failed(key)
            return
        self._count(reply)
        answers.absorb(key, ask.units, reply, ask.sent)

    def decide_many(
        self, keys: Sequence[Subject], costs: Sequence[int] | None = None
    ) -> list[Decision]:
        """`decide_many` decides ``costs[i]`` (None: 1 each) for ``keys[i]``,
        in order for repeated keys, grouped by slot and pipelined per node."""
        try:
            # Decisions, built call by call as the replies arrive.
            outcomes: Sequence[Decision | BaseException] = self._store.decide_many(
                keys, costs
            )
        except _FAILURES as exc:
            outcomes = [exc] * len(keys)
        return self._settle_many(keys, costs, outcomes)

    def reset(self, key: Subject) -> None:
        """`reset` forgets ``key`` in Redis and in the local fallback; raises
        BackendError if Redis cannot delete it."""
        self._fallback.reset(self._schema.tag(key))
        if self._answers is not None:
            self._answers.table.reset(key)
        self._store.reset(key)

    def close(self) -> None:
        """`close` stops the lease refills and closes the backend if the
        limiter built it."""
        self._refiller.close()
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> RedisLimiter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        rates = "; ".join(str(rate) for rate in self.rates)
        return (
            f"RedisLimiter({rates!r}, algorithm={self.algorithm!r}, name={self.name!r})"
        )


class AsyncRedisLimiter(_LimiterBase):
    """`AsyncRedisLimiter` is :class:`RedisLimiter` for asyncio: the same
    arguments (``backend`` an :class:`AsyncRedisBackend` or a
    ``redis.asyncio`` client) and the same decisions, with awaited verbs.
    Safe to share between tasks of one event loop.
    """

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        backend: AsyncRedisBackend | redis.asyncio.Redis | redis.asyncio.RedisCluster,
        name: str,
        on_backend_error: PolicyName = DEFAULT_ON_BACKEND_ERROR,
        local_share: float = DEFAULT_LOCAL_SHARE,
        local_max_keys: int = DEFAULT_LOCAL_MAX_KEYS,
        deny_cache: bool | None = None,
        lease: LeaseConfig | bool | None = None,
        cache_max_keys: int = DEFAULT_CACHE_MAX_KEYS,
        clock: Clock | None = None,
    ) -> None:
        self.rates = to_rates(limits)
        self.algorithm = canonical_algorithm(algorithm)
        policy = FailurePolicy(on_backend_error, local_share, local_max_keys)
        specs = build_specs(self.rates, self.algorithm)
        self._owns_backend = not isinstance(backend, AsyncRedisBackend)
        if not isinstance(backend, AsyncRedisBackend):
            backend = AsyncRedisBackend(backend)
        self.backend = backend
        self._store = backend.bind(specs, name)
        super().__init__(self._store.binding, policy, self.rates, self.algorithm)
        self._refills: set[asyncio.Task[None]] = set()
        self._closed = False
        self._answers = self._local_answers(
            self.algorithm,
            deny_cache,
            lease,
            cache_max_keys,
            clock,
            None,
            weakly(self, self._start_refill, None),
        )

    async def try_acquire(self, key: Subject, cost: int = 1) -> bool:
        """`try_acquire`: see RedisLimiter.try_acquire."""
        return (await self.decide(key, cost)).allowed

    async def decide(self, key: Subject, cost: int = 1) -> Decision:
        """`decide`: see RedisLimiter.decide."""
        if self._answers is not None:
            return await self._decide_locally(key, cost)
        try:
            outcome: RawReply | BaseException = await self._store.decide_raw(
                key, cost
            )
        except _FAILURES as exc:
            outcome = exc
        return self._settle(key, cost, outcome)

    async def _decide_locally(self, key: Subject, cost: int) -> Decision:
        # See RedisLimiter._decide_locally.
        answers = self._answers
        assert answers is not None
        step = answers.begin(key, *self._before_ask(key, cost))
        if isinstance(step, Decision):
            return step
        outcome: RawReply | BaseException
        try:
            outcome = await self._send(step)
        except _FAILURES as exc:
            outcome = exc
        return self._conclude(step, outcome)

    async def _send(self, ask: Ask) -> RawReply:
        # See RedisLimiter._send.
        if not ask.units:
            return await self._store.decide_raw(ask.key, ask.cost)
        answers = self._answers
        assert answers is not None
        call = answers.lease_call(ask.key, ask.units, self.backend.cluster)
        return await self._store.send(answers.packer, call)

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
        try:
            reply = await self._send(ask)
        except asyncio.CancelledError:
            answers.refill_failed(key)
            raise
        except Exception as exc:
            self._count(exc)
            answers.refill_failed(key)
            return
        self._count(reply)
        answers.absorb(key, ask.units, reply, ask.sent)

    async def decide_many(
        self, keys: Sequence[Subject], costs: Sequence[int] | None = None
    ) -> list[Decision]:
        """`decide_many`: see RedisLimiter.decide_many."""
        try:
            outcomes: Sequence[
                Decision | BaseException
            ] = await self._store.decide_many(keys, costs)
        except _FAILURES as exc:
            outcomes = [exc] * len(keys)
        return self._settle_many(keys, costs, outcomes)

    async def reset(self, key: Subject) -> None:
        """`reset`: see RedisLimiter.reset."""
        self._fallback.reset(self._schema.tag(key))
        if self._answers is not None:
            self._answers.table.reset(key)
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

    async def __aenter__(self) -> AsyncRedisLimiter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        rates = "; ".join(str(rate) for rate in self.rates)
        return (
            f"AsyncRedisLimiter({rates!r}, algorithm={self.algorithm!r}, "
            f"name={self.name!r})"
        )
