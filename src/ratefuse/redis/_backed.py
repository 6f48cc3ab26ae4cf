"""The Redis-backed limiters that ``KeyedLimiter(..., backend=...)`` and
``Limiter(..., backend=...)`` return (see :mod:`ratefuse._backends`).

They add to :class:`RedisLimiter` and :class:`AsyncRedisLimiter` what the
in-memory limiters have: the blocking verbs (``acquire``, ``acquire_async``,
sleeping the retry_after Redis reports, see
:func:`ratefuse.engine.waiting.retry`), the
decorator and context-manager forms, and a one-subject form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ratefuse.engine.forms import KeyedForms, SubjectForms
from ratefuse.engine.subject import Decision
from ratefuse.engine.waiting import Clock, check_wait, retry, retry_async
from ratefuse.rates import Rate
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
