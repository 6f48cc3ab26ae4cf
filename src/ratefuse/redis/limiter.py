"""`RedisLimiter` and `AsyncRedisLimiter`: keyed limiters whose state lives in
Redis, shared by every process that uses the same name.

Both are thin: validation, binding and the failure policy are shared
(:class:`_LimiterBase`); each verb is one backend call plus the policy for
the decisions the backend could not make.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
import redis.asyncio
from redis.cluster import RedisCluster

from .._args_py import check_cost
from .._engine import Decision
from ..errors import BackendError, CircuitOpenError
from ..rates import (
    DEFAULT_ALGORITHM,
    Rate,
    RateLike,
    build_specs,
    canonical_algorithm,
    to_rates,
)
from ._async import AsyncRedisBackend
from ._binding import Binding
from ._codec import RawVerdict
from ._policy import (
    DEFAULT_LOCAL_MAX_KEYS,
    DEFAULT_LOCAL_SHARE,
    DEFAULT_ON_BACKEND_ERROR,
    FailurePolicy,
    Fallback,
    LimiterStats,
    PolicyName,
)
from ._schema import Subject
from ._sync import RedisBackend

_FAILURES = (BackendError, CircuitOpenError)


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

    @property
    def name(self) -> str:
        """`name` names the shared quota: limiters with the same name (and
        prefix and namespace) share state."""
        return self._schema.name

    def stats(self) -> LimiterStats:
        """`stats` snapshots the decisions made and every fallback."""
        return self._fallback.stats()

    def _settle(
        self, key: Subject, cost: int, outcome: RawVerdict | BaseException
    ) -> Decision:
        if isinstance(outcome, BaseException):
            return self._fallback.decide(self._schema.tag(key), cost, outcome)
        self._fallback.answered()
        return self._binding.decision(outcome)

    def _settle_many(
        self,
        keys: Sequence[Subject],
        costs: Sequence[int] | None,
        outcomes: Sequence[RawVerdict | BaseException],
    ) -> list[Decision]:
        decisions = []
        answered = 0
        decision = self._binding.decision
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, BaseException):
                cost = 1 if costs is None else check_cost(costs[index])
                tag = self._schema.tag(keys[index])
                decisions.append(self._fallback.decide(tag, cost, outcome))
            else:
                answered += 1
                decisions.append(decision(outcome))
        self._fallback.answered(answered)
        return decisions


def _policy(
    on_backend_error: PolicyName, local_share: float, local_max_keys: int
) -> FailurePolicy:
    return FailurePolicy(on_backend_error, local_share, local_max_keys)


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

    Verbs: ``try_acquire(key, cost=1) -> bool``, ``decide(key, cost=1) ->
    Decision``, ``decide_many(keys, costs=None) -> list[Decision]`` (one
    round trip per node), ``reset(key)``. Keys are str, bytes or int. Cost
    0 asks without consuming. Times come from the Redis server's clock.
    Thread-safe.
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
    ) -> None:
        self.rates = to_rates(limits)
        self.algorithm = canonical_algorithm(algorithm)
        policy = _policy(on_backend_error, local_share, local_max_keys)
        self._owns_backend = not isinstance(backend, RedisBackend)
        if not isinstance(backend, RedisBackend):
            backend = RedisBackend(backend)
        self.backend = backend
        self._store = backend.bind(build_specs(self.rates, self.algorithm), name)
        super().__init__(self._store.binding, policy, self.rates, self.algorithm)

    def try_acquire(self, key: Subject, cost: int = 1) -> bool:
        """`try_acquire` consumes ``cost`` for ``key`` if every limit admits
        it and reports whether it did."""
        return self.decide(key, cost).allowed

    def decide(self, key: Subject, cost: int = 1) -> Decision:
        """`decide` is `try_acquire` with the whole Decision."""
        try:
            outcome: RawVerdict | BaseException = self._store.decide_raw(key, cost)
        except _FAILURES as exc:
            outcome = exc
        return self._settle(key, cost, outcome)

    def decide_many(
        self, keys: Sequence[Subject], costs: Sequence[int] | None = None
    ) -> list[Decision]:
        """`decide_many` decides ``costs[i]`` (None: 1 each) for ``keys[i]``,
        in order for repeated keys, grouped by slot and pipelined per node."""
        try:
            outcomes: Sequence[RawVerdict | BaseException] = (
                self._store.decide_many_raw(keys, costs)
            )
        except _FAILURES as exc:
            outcomes = [exc] * len(keys)
        return self._settle_many(keys, costs, outcomes)

    def reset(self, key: Subject) -> None:
        """`reset` forgets ``key`` in Redis and in the local fallback; raises
        BackendError if Redis cannot delete it."""
        self._fallback.reset(self._schema.tag(key))
        self._store.reset(key)

    def close(self) -> None:
        """`close` closes the backend if the limiter built it."""
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
    ) -> None:
        self.rates = to_rates(limits)
        self.algorithm = canonical_algorithm(algorithm)
        policy = _policy(on_backend_error, local_share, local_max_keys)
        self._owns_backend = not isinstance(backend, AsyncRedisBackend)
        if not isinstance(backend, AsyncRedisBackend):
            backend = AsyncRedisBackend(backend)
        self.backend = backend
        self._store = backend.bind(build_specs(self.rates, self.algorithm), name)
        super().__init__(self._store.binding, policy, self.rates, self.algorithm)

    async def try_acquire(self, key: Subject, cost: int = 1) -> bool:
        """`try_acquire`: see RedisLimiter.try_acquire."""
        return (await self.decide(key, cost)).allowed

    async def decide(self, key: Subject, cost: int = 1) -> Decision:
        """`decide`: see RedisLimiter.decide."""
        try:
            outcome: RawVerdict | BaseException = await self._store.decide_raw(
                key, cost
            )
        except _FAILURES as exc:
            outcome = exc
        return self._settle(key, cost, outcome)

    async def decide_many(
        self, keys: Sequence[Subject], costs: Sequence[int] | None = None
    ) -> list[Decision]:
        """`decide_many`: see RedisLimiter.decide_many."""
        try:
            outcomes: Sequence[
                RawVerdict | BaseException
            ] = await self._store.decide_many_raw(keys, costs)
        except _FAILURES as exc:
            outcomes = [exc] * len(keys)
        return self._settle_many(keys, costs, outcomes)

    async def reset(self, key: Subject) -> None:
        """`reset`: see RedisLimiter.reset."""
        self._fallback.reset(self._schema.tag(key))
        await self._store.reset(key)

    async def aclose(self) -> None:
        """`aclose` closes the backend if the limiter built it."""
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
