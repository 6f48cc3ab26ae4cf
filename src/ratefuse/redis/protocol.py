"""The backend protocols: what a keyed limiter needs from shared state.

A backend is bound once per limiter (`bind` validates the limits for that
backend and raises ValueError at construction); the bound store then
decides costs for keys. The Redis backends implement these; a keyed
limiter can take any backend that does::

    store = backend.bind(specs, name)      # at construction
    decision = store.decide(key, cost)     # per decision
    try:
        ...
    except (BackendError, CircuitOpenError):
        ...                                # apply the failure policy

Times come from the backend's clock (Redis: the server's), so stores take
no ``now``; ``now_us`` is a test hook of the Redis stores, not part of the
protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ratefuse.core.errors import BackendError
from ratefuse.core.spec import LimitSpec
from ratefuse.engine.subject import Decision
from ratefuse.redis._schema import Subject


class KeyedStore(Protocol):
    """`KeyedStore` decides costs per key for one limiter.

    `decide` raises BackendError when the backend cannot decide and
    CircuitOpenError when its breaker is open; `decide_many` returns, in
    place, the BackendError of each decision that failed alone (it raises
    when the whole batch failed); `reset` raises BackendError. Thread-safe.
    """

    def decide(self, key: Subject, cost: int = 1) -> Decision: ...

    def decide_many(
        self, keys: Sequence[Subject], costs: Sequence[int] | None = None
    ) -> list[Decision | BackendError]: ...

    def reset(self, key: Subject) -> None: ...


class SharedBackend(Protocol):
    """`SharedBackend` keeps keyed limiter state outside the process."""

    def bind(self, specs: Sequence[LimitSpec], name: str) -> KeyedStore: ...


class AsyncKeyedStore(Protocol):
    """`AsyncKeyedStore` is KeyedStore with awaited verbs."""

    async def decide(self, key: Subject, cost: int = 1) -> Decision: ...

    async def decide_many(
        self, keys: Sequence[Subject], costs: Sequence[int] | None = None
    ) -> list[Decision | BackendError]: ...

    async def reset(self, key: Subject) -> None: ...


class AsyncSharedBackend(Protocol):
    """`AsyncSharedBackend` is SharedBackend for asyncio stores."""

    def bind(self, specs: Sequence[LimitSpec], name: str) -> AsyncKeyedStore: ...
