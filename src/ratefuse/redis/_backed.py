"""Redis as a :class:`ratefuse.protocols.LimiterBackend`: the backends
that build limiters (:class:`RedisBackend`, :class:`AsyncRedisBackend`,
and `backend_for` a raw redis-py client, the ``ratefuse.backends`` entry
point) and the limiters they build, which ``KeyedLimiter(...,
backend=...)`` and ``Limiter(..., backend=...)`` return.

The limiters add to :class:`RedisLimiter` and :class:`AsyncRedisLimiter`
what the in-memory limiters have: the blocking verbs (``acquire``,
``acquire_async``, sleeping the retry_after Redis reports, see
:func:`ratefuse.engine.waiting.retry`), the decorator and context-manager forms, and a
one-subject form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
from redis.cluster import RedisCluster

from ratefuse.engine.forms import KeyedForms, SubjectForms
from ratefuse.engine.subject import Decision
from ratefuse.engine.waiting import Clock, check_wait, retry, retry_async
from ratefuse.rates import DEFAULT_ALGORITHM, Rate, RateLike
from ratefuse.redis import _async, _sync
from ratefuse.redis._policy import LimiterStats
from ratefuse.redis._schema import Subject
from ratefuse.redis.limiter import AsyncRedisLimiter, RedisLimiter

# The subject a one-subject limiter decides for: its quota is the name's.
SUBJECT: Subject = ""


class RedisKeyedLimiter(KeyedForms, RedisLimiter):
    """`RedisKeyedLimiter` is a RedisLimiter with the blocking verbs of
    KeyedLimiter: ``acquire(key, cost=1, timeout=None)`` and ``await
    acquire_async(key, cost=1, timeout=None)`` decide in Redis and sleep
    the reported retry_after until admitted; they raise RateLimitExceeded
    at once, without sleeping, when the cost can never be admitted or the
    wait would pass ``timeout`` (or ``max_wait``). ``clock`` (integer ns,
    None: monotonic) measures those waits; ``sleep`` and ``async_sleep``
    replace ``time.sleep`` and ``asyncio.sleep``. Thread-safe.
    """

    def __init__(
        self,
        limits: Any,
        algorithm: str,
        *,
        max_wait: float | None = None,
        sleep: Callable[[float], object] | None = None,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
        clock: Clock | None = None,
        **options: Any,
    ) -> None:
        check_wait(None, max_wait)
        self.max_wait = max_wait
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._wait_clock = clock
        if clock is not None:
            options["clock"] = clock
        super().__init__(limits, algorithm, **options)

    def acquire(
        self, key: Subject, cost: int = 1, timeout: float | None = None
    ) -> None:
        """`acquire` takes ``cost`` units of ``key``, sleeping until Redis
        admits them (see the class)."""
        bound = check_wait(timeout, self.max_wait)
        retry(lambda: self.decide(key, cost), bound, self._wait_clock, self._sleep)

    async def acquire_async(
        self, key: Subject, cost: int = 1, timeout: float | None = None
    ) -> None:
        """`acquire_async` is `acquire` with asyncio sleeps (the decision
        itself is a blocking round trip of the sync backend)."""
        bound = check_wait(timeout, self.max_wait)

        async def decide() -> Decision:
            return self.decide(key, cost)

        await retry_async(decide, bound, self._wait_clock, self._async_sleep)


class AsyncRedisKeyedLimiter(AsyncRedisLimiter):
    """`AsyncRedisKeyedLimiter` is an AsyncRedisLimiter with ``await
    acquire_async(key, cost=1, timeout=None)``, as RedisKeyedLimiter's.
    Safe to share between tasks of one event loop."""

    def __init__(
        self,
        limits: Any,
        algorithm: str,
        *,
        max_wait: float | None = None,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
        clock: Clock | None = None,
        **options: Any,
    ) -> None:
        check_wait(None, max_wait)
        self.max_wait = max_wait
        self._async_sleep = async_sleep
        self._wait_clock = clock
        if clock is not None:
            options["clock"] = clock
        super().__init__(limits, algorithm, **options)

    async def acquire_async(
        self, key: Subject, cost: int = 1, timeout: float | None = None
    ) -> None:
        """`acquire_async` takes ``cost`` units of ``key``, sleeping until
        Redis admits them (see RedisKeyedLimiter.acquire)."""
        bound = check_wait(timeout, self.max_wait)
        await retry_async(
            lambda: self.decide(key, cost), bound, self._wait_clock, self._async_sleep
        )


class _SubjectBase:
    # What the one-subject forms share: the keyed limiter they wrap.

    def __init__(self, keyed: RedisLimiter | AsyncRedisLimiter) -> None:
        self.keyed = keyed

    @property
    def name(self) -> str:
        """`name` names the shared quota (see RedisLimiter.name)."""
        return self.keyed.name

    @property
    def rates(self) -> tuple[Rate, ...]:
        """`rates` are the limits, as given."""
        return tuple(self.keyed.rates)

    @property
    def algorithm(self) -> str:
        """`algorithm` is the canonical algorithm."""
        return self.keyed.algorithm

    def stats(self) -> LimiterStats:
        """`stats` snapshots the decisions and fallbacks (see RedisLimiter)."""
        return self.keyed.stats()

    def __repr__(self) -> str:
        rates = "; ".join(str(rate) for rate in self.rates)
        return (
            f"{type(self).__name__}({rates!r}, algorithm={self.algorithm!r}, "
            f"name={self.name!r})"
        )


class RedisSubjectLimiter(SubjectForms, _SubjectBase):
    """`RedisSubjectLimiter` is a Limiter whose one subject's state is in
    Redis: every limiter with the same name (prefix, namespace) shares it.

    Verbs as Limiter's, without ``now=`` (times come from the server's
    clock): ``try_acquire(cost=1)``, ``decide(cost=1)``, ``reset()``,
    ``acquire(cost=1, timeout=None)``, ``await acquire_async(...)``, the
    forms ``limit``, ``acquiring``, ``admit_or_raise``; and ``stats()``,
    ``close()``. Thread-safe.
    """

    keyed: RedisKeyedLimiter

    def __init__(self, keyed: RedisKeyedLimiter) -> None:
        super().__init__(keyed)

    def try_acquire(self, cost: int = 1) -> bool:
        """`try_acquire` consumes ``cost`` if every limit admits it and
        reports whether it did."""
        # The keyed limiter's try_acquire: with leases or the deny cache it
        # is the table's compiled call, which decide would bypass.
        return self.keyed.try_acquire(SUBJECT, cost)

    def decide(self, cost: int = 1) -> Decision:  # type: ignore[override]
        """`decide` is `try_acquire` with the whole Decision."""
        return self.keyed.decide(SUBJECT, cost)

    def reset(self) -> None:
        """`reset` forgets the subject's state (in Redis and locally)."""
        self.keyed.reset(SUBJECT)

    def acquire(self, cost: int = 1, timeout: float | None = None) -> None:
        """`acquire`: see RedisKeyedLimiter.acquire."""
        self.keyed.acquire(SUBJECT, cost, timeout)

    async def acquire_async(self, cost: int = 1, timeout: float | None = None) -> None:
        """`acquire_async`: see RedisKeyedLimiter.acquire_async."""
        await self.keyed.acquire_async(SUBJECT, cost, timeout)

    def close(self) -> None:
        """`close` closes the backend if the limiter built it."""
        self.keyed.close()

    def __enter__(self) -> RedisSubjectLimiter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncRedisSubjectLimiter(_SubjectBase):
    """`AsyncRedisSubjectLimiter` is RedisSubjectLimiter for asyncio: ``await
    try_acquire(cost=1)``, ``decide``, ``reset``, ``acquire_async``;
    ``stats()``, ``await aclose()``. Safe to share between tasks of one
    event loop."""

    keyed: AsyncRedisKeyedLimiter

    def __init__(self, keyed: AsyncRedisKeyedLimiter) -> None:
        super().__init__(keyed)

    async def try_acquire(self, cost: int = 1) -> bool:
        """`try_acquire`: see RedisSubjectLimiter.try_acquire."""
        return await self.keyed.try_acquire(SUBJECT, cost)

    async def decide(self, cost: int = 1) -> Decision:
        """`decide`: see RedisSubjectLimiter.decide."""
        return await self.keyed.decide(SUBJECT, cost)

    async def reset(self) -> None:
        """`reset`: see RedisSubjectLimiter.reset."""
        await self.keyed.reset(SUBJECT)

    async def acquire_async(self, cost: int = 1, timeout: float | None = None) -> None:
        """`acquire_async`: see RedisKeyedLimiter.acquire_async."""
        await self.keyed.acquire_async(SUBJECT, cost, timeout)

    async def aclose(self) -> None:
        """`aclose` closes the backend if the limiter built it."""
        await self.keyed.aclose()

    async def __aenter__(self) -> AsyncRedisSubjectLimiter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# Options a Redis limiter takes with a default: None leaves it.
_DEFAULTED: tuple[str, ...] = ("on_backend_error", "local_share", "local_max_keys")

SyncClient = redis.Redis | RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.RedisCluster


def _reject(field: str, value: object, why: str) -> ValueError:
    return ValueError(
        f"{field} does not apply to a limiter on Redis{why}, got {value!r}"
    )


def _redis_options(options: dict[str, Any]) -> dict[str, Any]:
    # A RedisLimiter's options from a facade's: name is required, max_keys
    # means nothing (the states are in Redis), and None leaves a default.
    if options.get("name") is None:
        raise ValueError(
            "name must name the shared quota of a limiter on Redis "
            "(limiters with the same name share it), got None"
        )
    if "max_keys" in options:
        raise _reject(
            "max_keys", options["max_keys"], " (use local_max_keys for the fallback)"
        )
    return {
        field: value
        for field, value in options.items()
        if value is not None or field not in _DEFAULTED
    }


def _keyed_limiter(
    backend: _sync.RedisBackendIO | SyncClient,
    limits: RateLike,
    algorithm: str,
    options: dict[str, Any],
) -> RedisKeyedLimiter:
    return RedisKeyedLimiter(
        limits, algorithm, backend=backend, **_redis_options(options)
    )


def _async_keyed_limiter(
    backend: _async.AsyncRedisBackendIO | AsyncClient,
    limits: RateLike,
    algorithm: str,
    options: dict[str, Any],
) -> AsyncRedisKeyedLimiter:
    sleep = options.pop("sleep", None)
    if sleep is not None:
        raise _reject("sleep", sleep, " with asyncio (use async_sleep)")
    return AsyncRedisKeyedLimiter(
        limits, algorithm, backend=backend, **_redis_options(options)
    )


class RedisBackend(_sync.RedisBackendIO):
    """`RedisBackend` keeps limiter state in Redis, through redis-py (see
    the transport it extends for ``client``, ``prefix``, ``namespace``,
    ``timeout``, ``breaker`` and ``chunk``), and is a LimiterBackend:
    `limiter` and `keyed_limiter` build limiters on it. Thread-safe."""

    def limiter(
        self, limits: RateLike, algorithm: str = DEFAULT_ALGORITHM, **options: Any
    ) -> RedisSubjectLimiter:
        """`limiter` is one subject whose state is in Redis (``Limiter(...,
        backend=self)``): `keyed_limiter` around one subject."""
        return RedisSubjectLimiter(self.keyed_limiter(limits, algorithm, **options))

    def keyed_limiter(
        self, limits: RateLike, algorithm: str = DEFAULT_ALGORITHM, **options: Any
    ) -> RedisKeyedLimiter:
        """`keyed_limiter` is a RedisKeyedLimiter on this backend
        (``KeyedLimiter(..., backend=self)``): ``name`` is required; the
        other options are RedisKeyedLimiter's, None leaving a default."""
        return _keyed_limiter(self, limits, algorithm, options)


class AsyncRedisBackend(_async.AsyncRedisBackendIO):
    """`AsyncRedisBackend` is RedisBackend through redis.asyncio: its
    limiters' verbs are awaited (``sleep`` is a ValueError: they sleep
    with ``async_sleep``). Safe to share between tasks of one event loop."""

    def limiter(
        self, limits: RateLike, algorithm: str = DEFAULT_ALGORITHM, **options: Any
    ) -> AsyncRedisSubjectLimiter:
        """`limiter`: see RedisBackend.limiter."""
        return AsyncRedisSubjectLimiter(
            self.keyed_limiter(limits, algorithm, **options)
        )

    def keyed_limiter(
        self, limits: RateLike, algorithm: str = DEFAULT_ALGORITHM, **options: Any
    ) -> AsyncRedisKeyedLimiter:
        """`keyed_limiter`: see RedisBackend.keyed_limiter."""
        return _async_keyed_limiter(self, limits, algorithm, options)


class ClientBackend:
    """`ClientBackend` is the LimiterBackend of a raw redis-py client
    (``KeyedLimiter(..., backend=redis.Redis())``): each limiter it builds
    opens its own RedisBackend on ``client`` and closes it with itself,
    as ``RedisLimiter(..., backend=client)`` does."""

    def __init__(self, client: SyncClient) -> None:
        self.client = client

    def limiter(
        self, limits: RateLike, algorithm: str = DEFAULT_ALGORITHM, **options: Any
    ) -> RedisSubjectLimiter:
        """`limiter`: see RedisBackend.limiter."""
        return RedisSubjectLimiter(self.keyed_limiter(limits, algorithm, **options))

    def keyed_limiter(
        self, limits: RateLike, algorithm: str = DEFAULT_ALGORITHM, **options: Any
    ) -> RedisKeyedLimiter:
        """`keyed_limiter`: see RedisBackend.keyed_limiter."""
        return _keyed_limiter(self.client, limits, algorithm, options)


class AsyncClientBackend:
    """`AsyncClientBackend` is ClientBackend for a redis.asyncio client."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    def limiter(
        self, limits: RateLike, algorithm: str = DEFAULT_ALGORITHM, **options: Any
    ) -> AsyncRedisSubjectLimiter:
        """`limiter`: see RedisBackend.limiter."""
        return AsyncRedisSubjectLimiter(
            self.keyed_limiter(limits, algorithm, **options)
        )

    def keyed_limiter(
        self, limits: RateLike, algorithm: str = DEFAULT_ALGORITHM, **options: Any
    ) -> AsyncRedisKeyedLimiter:
        """`keyed_limiter`: see RedisBackend.keyed_limiter."""
        return _async_keyed_limiter(self.client, limits, algorithm, options)


def backend_for(client: object) -> ClientBackend | AsyncClientBackend:
    """`backend_for` is the LimiterBackend of a raw redis-py client: sync
    (``redis.Redis``, ``redis.RedisCluster``) or asyncio. The target of
    the ``redis`` entry point in the ``ratefuse.backends`` group, which
    ``Limiter(..., backend=client)`` looks up. TypeError for another
    object."""
    if isinstance(client, (redis.Redis, RedisCluster)):
        return ClientBackend(client)
    if isinstance(client, (redis.asyncio.Redis, redis.asyncio.RedisCluster)):
        return AsyncClientBackend(client)
    raise TypeError(
        "backend must be a redis.Redis / redis.RedisCluster client, sync or "
        f"redis.asyncio, got {type(client).__name__}: {client!r}"
    )
