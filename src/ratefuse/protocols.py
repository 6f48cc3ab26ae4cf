"""What every limiter meets, local or not, and what builds one.

:class:`RateLimiter` (one subject), :class:`KeyedRateLimiter` (key first)
and their asyncio twins :class:`AsyncRateLimiter` and
:class:`AsyncKeyedRateLimiter` (the verbs are awaited: the limiters of an
asyncio Redis client) are runtime-checkable: one ``isinstance`` check
tells the kind of any limiter, in memory (either implementation), in
shared memory or in Redis (leased or not). Every kind has the same verb
names, and a runtime check compares names only: ``decide_many`` sets the
keyed kinds apart and ``aclose`` the asyncio ones, so check
:data:`KEYED_KINDS` and :data:`ASYNC_KINDS` before the one-subject
protocols, which every limiter's verb names meet (`is_keyed`,
`is_async`).

:class:`LimiterBackend` is an object that builds limiters whose state it
keeps (``ShmBackend``, ``RedisBackend``, ``AsyncRedisBackend``).
``Limiter(..., backend=X)`` and ``KeyedLimiter(..., backend=X)`` call it;
for another object, such as a raw redis-py client, `limiter_backend` asks
the package that declares an entry point for the object's top-level
module in the ``ratefuse.backends`` group, so no facade imports a backend.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar, runtime_checkable

from ratefuse.core.keys import Key
from ratefuse.engine.subject import Decision
from ratefuse.rates import DEFAULT_ALGORITHM, RateLike

__all__ = [
    "ASYNC_KINDS",
    "BACKEND_ENTRY_POINTS",
    "KEYED_KINDS",
    "AsyncKeyedRateLimiter",
    "AsyncRateLimiter",
    "KeyedRateLimiter",
    "LimiterBackend",
    "RateLimiter",
    "is_async",
    "is_keyed",
    "limiter_backend",
]

# The entry point group of `limiter_backend`: name = a client's top-level
# module, value = a callable that takes the client and returns its
# LimiterBackend.
BACKEND_ENTRY_POINTS = "ratefuse.backends"


@runtime_checkable
class RateLimiter(Protocol):
    """`RateLimiter` is a limiter of one subject whose verbs answer at once
    (``Limiter``, ``ShmLimiter``, ``Limiter(..., backend=redis.Redis())``).

    ``try_acquire(cost=1)`` consumes ``cost`` if every limit admits it and
    reports whether it did; ``decide`` returns the whole Decision; cost 0
    asks without consuming. ``reset`` forgets the state. The engine
    cores (``LimiterCore``, either implementation) meet it too.
    """

    def try_acquire(self, cost: int = 1) -> bool: ...

    def decide(self, cost: int = 1) -> Decision: ...

    def reset(self) -> None: ...


@runtime_checkable
class AsyncRateLimiter(Protocol):
    """`AsyncRateLimiter` is `RateLimiter` with awaited verbs and ``await
    aclose()`` (``Limiter(..., backend=redis.asyncio.Redis())``)."""

    async def try_acquire(self, cost: int = 1) -> bool: ...

    async def decide(self, cost: int = 1) -> Decision: ...

    async def reset(self) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class KeyedRateLimiter(Protocol):
    """`KeyedRateLimiter` is a limiter with one quota per key, key first,
    whose verbs answer at once (``KeyedLimiter``, ``ShmKeyedLimiter``,
    ``RedisLimiter``). Verbs as `RateLimiter`'s, plus ``decide_many(keys,
    costs=None)``: every key in order, a numpy bool array in every
    backend (in memory, shared memory, Redis; the Decisions of a batch are
    ``decide_many_decisions`` in shared memory and Redis)."""

    def try_acquire(self, key: Key, cost: int = 1) -> bool: ...

    def decide(self, key: Key, cost: int = 1) -> Decision: ...

    def decide_many(
        self, keys: Sequence[Key], costs: Sequence[int] | None = None
    ) -> Any: ...

    def reset(self, key: Key) -> None: ...


@runtime_checkable
class AsyncKeyedRateLimiter(Protocol):
    """`AsyncKeyedRateLimiter` is `KeyedRateLimiter` with awaited verbs and
    ``await aclose()`` (``AsyncRedisLimiter``)."""

    async def try_acquire(self, key: Key, cost: int = 1) -> bool: ...

    async def decide(self, key: Key, cost: int = 1) -> Decision: ...

    async def decide_many(
        self, keys: Sequence[Key], costs: Sequence[int] | None = None
    ) -> Any: ...

    async def reset(self, key: Key) -> None: ...

    async def aclose(self) -> None: ...


AnyRateLimiter = RateLimiter | AsyncRateLimiter
AnyKeyedRateLimiter = KeyedRateLimiter | AsyncKeyedRateLimiter
SubjectT = TypeVar("SubjectT", bound=AnyRateLimiter, covariant=True)
KeyedT = TypeVar("KeyedT", bound=AnyKeyedRateLimiter, covariant=True)

# The kinds `is_keyed` and `is_async` tell apart, for isinstance.
KEYED_KINDS = (KeyedRateLimiter, AsyncKeyedRateLimiter)
ASYNC_KINDS = (AsyncRateLimiter, AsyncKeyedRateLimiter)


def is_keyed(limiter: object) -> bool:
    """`is_keyed` reports whether ``limiter``'s verbs take the key first: a
    KeyedRateLimiter or AsyncKeyedRateLimiter, or an object with a decide
    that is no limiter of one subject (try_acquire, decide, reset)."""
    return isinstance(limiter, KEYED_KINDS) or not isinstance(limiter, RateLimiter)


def is_async(limiter: object) -> bool:
    """`is_async` reports whether ``limiter``'s verbs are awaited: an
    AsyncRateLimiter or AsyncKeyedRateLimiter, or an object whose decide
    is a coroutine function."""
    return isinstance(limiter, ASYNC_KINDS) or inspect.iscoroutinefunction(
        getattr(limiter, "decide", None)
    )


@runtime_checkable
class LimiterBackend(Protocol[SubjectT, KeyedT]):
    """`LimiterBackend` builds limiters whose state it keeps.

    ``limiter(limits, algorithm, **options)`` is a one-subject limiter and
    ``keyed_limiter(...)`` a keyed one; ``options`` are the backend's
    limiter's (every backend takes ``clock``, ``max_wait``, ``sleep`` and
    ``async_sleep`` as the in-memory limiters do, None meaning their
    default). An option the backend cannot honour is a ValueError naming
    the field.
    """

    def limiter(
        self, limits: RateLike, algorithm: str = DEFAULT_ALGORITHM, **options: Any
    ) -> SubjectT: ...

    def keyed_limiter(
        self, limits: RateLike, algorithm: str = DEFAULT_ALGORITHM, **options: Any
    ) -> KeyedT: ...


def limiter_backend(backend: object) -> LimiterBackend[Any, Any]:
    """`limiter_backend` is ``backend`` if it is a LimiterBackend, else the
    LimiterBackend that the ``ratefuse.backends`` entry point named after
    the top-level module of its type builds around it (``redis`` for a
    redis-py client, sync, asyncio or cluster). Raises TypeError for an
    object no installed backend takes."""
    if isinstance(backend, LimiterBackend):
        return backend
    module = type(backend).__module__.partition(".")[0]
    for entry_point in entry_points(group=BACKEND_ENTRY_POINTS, name=module):
        built: LimiterBackend[Any, Any] = entry_point.load()(backend)
        return built
    raise TypeError(
        "backend must be a LimiterBackend (ShmBackend, RedisBackend, "
        "AsyncRedisBackend) or a client an installed backend takes "
        "(redis.Redis, redis.RedisCluster, redis.asyncio), "
        f"got {type(backend).__name__}: {backend!r}"
    )
