"""Several limits on one request, decided in order: what the web
middleware and the gRPC interceptors share.

A limit here is any object with ``ask(request, cost)`` (a decision, an
awaitable of one when ``is_async``, or None when the limit does not apply
to the request), ``cost`` and ``is_async``. Several limits must all admit,
and they are tried in the order listed: each takes its cost until one
denies; from then on the remaining limits are asked with cost 0 (every
ratefuse limiter answers cost 0 without consuming), so a request denied by
a specific limit does not use up the quota of the shared ones after it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, Protocol

from ratefuse.protocols import is_keyed


class OrderedLimit(Protocol):
    """`OrderedLimit` is one compiled limit the in-order loop asks."""

    @property
    def cost(self) -> int: ...

    @property
    def is_async(self) -> bool: ...

    def ask(self, request: Any, cost: int) -> Any: ...


class AskByKey:
    """`AskByKey` is the ``ask`` of a compiled limit: ``decide`` is the
    limiter's bound decide method, ``key_of`` reads a request's key (None:
    the limiter has one quota). Subclasses declare both slots."""

    __slots__ = ()
    decide: Callable[..., Any]
    key_of: Callable[[Any], Any] | None

    def ask(self, request: object, cost: int) -> Any:
        """`ask` decides ``cost`` for ``request``: the decision, an
        awaitable of it for an async limiter, or None when the key reader
        finds no key (the limit does not apply)."""
        key_of = self.key_of
        if key_of is None:
            return self.decide(cost)
        key = key_of(request)
        return None if key is None else self.decide(key, cost)


def check_cost(cost: object) -> int:
    """`check_cost` returns ``cost`` if it is an int >= 0, else raises
    ValueError naming it."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise ValueError(f"cost must be an int >= 0, got {cost!r}")
    return cost


def check_limiter(limiter: object, key: object) -> None:
    """`check_limiter` raises unless ``limiter`` can decide (every limiter
    of :mod:`ratefuse.protocols` can), with a ``key`` only for keyed
    limiters (`ratefuse.protocols.is_keyed`)."""
    if not callable(getattr(limiter, "decide", None)):
        raise TypeError(f"limiter must have a decide method, got {limiter!r}")
    if key is not None and not is_keyed(limiter):
        raise ValueError(
            f"key is for keyed limiters; {limiter!r} has one quota, got key={key!r}"
        )


def resolve_limiter(limiter: object, key: object, registry: object | None) -> Any:
    """`resolve_limiter` is ``limiter``, or the limiter of that name in
    ``registry`` (checked as `check_limiter` checks a given one)."""
    if not isinstance(limiter, str):
        return limiter
    if registry is None:
        raise ValueError(
            f"limiter {limiter!r} is a registry name but no registry was given"
        )
    named = registry.limiter(limiter)  # type: ignore[attr-defined]
    check_limiter(named, key)
    return named


def in_order(
    limits: Sequence[OrderedLimit], request: object, decisions: list[Any]
) -> Generator[Awaitable[Any], Any, None]:
    """`in_order` is the one loop of "in order": each limit takes its cost
    until one denies, the rest are asked with cost 0. It appends a decision
    per limit to ``decisions`` (None: the limit did not apply); an async
    limit's awaitable is yielded, and its decision sent back."""
    denied = False
    for limit in limits:
        decision = limit.ask(request, 0 if denied else limit.cost)
        if limit.is_async and decision is not None:
            decision = yield decision
        if decision is not None and not decision.allowed:
            denied = True
        decisions.append(decision)


def decide_in_order(limits: Sequence[OrderedLimit], request: object) -> list[Any]:
    """`decide_in_order` decides ``limits`` for ``request`` in order, one
    decision each (None: the limit did not apply). The limits must be sync."""
    decisions: list[Any] = []
    for _ in in_order(limits, request, decisions):
        raise TypeError("an async limiter needs decide_in_order_async")
    return decisions


async def decide_in_order_async(
    limits: Sequence[OrderedLimit], request: object
) -> list[Any]:
    """`decide_in_order_async` is `decide_in_order` awaiting the async
    limits' decisions."""
    decisions: list[Any] = []
    steps = in_order(limits, request, decisions)
    try:
        pending = next(steps)
        while True:
            pending = steps.send(await pending)
    except StopIteration:
        return decisions
