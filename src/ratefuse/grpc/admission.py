"""What both server interceptors decide for one method: its compiled
limits, its bulkhead, and the answer to a call (admitted, or the denial
to send).

A method's rule is compiled once, on its first call (`MethodPolicy`); a
call then costs one decision per limit, in order (`ratefuse.ordered`),
and, with a bulkhead, a slot held until the call ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from ratefuse.adaptive import AdaptiveLimiter
from ratefuse.bulkhead import Bulkhead
from ratefuse.grpc.keys import PEER, CallKey
from ratefuse.grpc.rules import MethodRule
from ratefuse.ordered import AskByKey, in_order, resolve_limiter
from ratefuse.protocols import is_async, is_keyed
from ratefuse.web.rules import Limit


class CallLimit(AskByKey):
    """`CallLimit` is a :class:`ratefuse.web.Limit` resolved for one
    method: the bound decide and acquire methods and the key reader."""

    __slots__ = (
        "acquire",
        "cost",
        "decide",
        "is_async",
        "key_of",
        "name",
        "try_acquire",
    )

    def __init__(
        self, limit: Limit, method: str, registry: object | None, aio: bool
    ) -> None:
        limiter = resolve_limiter(limit.limiter, limit.key, registry)
        self.decide: Callable[..., Any] = limiter.decide
        self.try_acquire: Callable[..., Any] = limiter.try_acquire
        self.is_async = is_async(limiter)
        if self.is_async and not aio:
            raise TypeError(
                f"limiter {limiter!r} is async; a sync grpc.Server needs a sync limiter"
            )
        # Waiting: asyncio servers sleep in the event loop, sync ones block
        # their handler thread.
        self.acquire: Callable[..., Any] | None = getattr(
            limiter, "acquire_async" if aio else "acquire", None
        )
        self.key_of = _key_reader(limit.key, method) if is_keyed(limiter) else None
        self.cost = limit.cost
        self.name = limit.name

    def key(self, context: Any) -> Any:
        """`key` is the call's key for this limit (None: it does not apply;
        a limit of one quota has the key ``()``)."""
        key_of = self.key_of
        return () if key_of is None else key_of(context)

    def refusal(self, context: Any) -> Any:
        """`refusal` decides this limit's cost for the call of ``context``
        (a sync limiter): None when admitted or when the limit does not
        apply, else the denying decision. It asks ``try_acquire`` first,
        so an admitted call makes no Decision."""
        key_of, cost = self.key_of, self.cost
        if key_of is None:
            if self.try_acquire(cost):
                return None
            decision = self.decide(cost)
        else:
            key = key_of(context)
            if key is None or self.try_acquire(key, cost):
                return None
            decision = self.decide(key, cost)  # admits if capacity came back
        return None if decision.allowed else decision


def _key_reader(key: object, method: str) -> Callable[[Any], Any]:
    if key is None:
        key = PEER
    if isinstance(key, CallKey):
        if key.of_context is not None:
            return key.of_context
        read = key.read
        return lambda context: read(method, context)
    return key  # type: ignore[return-value]


@dataclass(frozen=True)
class Denial:
    """`Denial` is why a call is refused: ``message`` names the limit (or
    the bulkhead); ``retry_after`` is in seconds (``inf``: never; None: a
    full bulkhead, which cannot say)."""

    message: str
    retry_after: float | None


class MethodPolicy:
    """`MethodPolicy` is a rule compiled for one method: ``limits``,
    ``single`` (the one sync limit of the common case, else None),
    ``bulkhead`` (the method's, made by the interceptor; None: none),
    ``max_wait`` and ``per_message``."""

    __slots__ = ("bulkhead", "limits", "max_wait", "method", "per_message", "single")

    def __init__(
        self,
        rule: MethodRule,
        method: str,
        bulkhead: Bulkhead | AdaptiveLimiter | None,
        registry: object | None,
        aio: bool,
    ) -> None:
        self.method = method
        self.limits = tuple(
            CallLimit(limit, method, registry, aio) for limit in rule.limits
        )
        self.bulkhead = bulkhead
        self.max_wait = rule.max_wait
        self.per_message = rule.per_message
        only = self.limits[0] if len(self.limits) == 1 else None
        self.single = (
            only
            if only is not None and not only.is_async and not self.max_wait
            else None
        )

    def denial(self, index: int, retry_after: float) -> Denial:
        """`denial` is the refusal by the limit at ``index``."""
        name = self.limits[index].name
        if retry_after == math.inf:
            when = "the cost can never be admitted"
        else:
            when = f"retry after {retry_after:.3f}s"
        return Denial(
            f"rate limit {name!r} exceeded on {self.method}: {when}", retry_after
        )

    def bulkhead_full(self, error: BaseException) -> Denial:
        """`bulkhead_full` is the refusal by the full bulkhead."""
        return Denial(f"{error} on {self.method}", None)


def first_denial(decisions: Sequence[Any]) -> tuple[int, float] | None:
    """`first_denial` is (index of the limit that denied, the longest wait
    among the denial and the cost-0 verdicts after it), or None when every
    limit admitted (or did not apply)."""
    for index, decision in enumerate(decisions):
        if decision is not None and not decision.allowed:
            longest = decision.retry_after
            for later in decisions[index + 1 :]:
                if later is not None and later.retry_after > longest:
                    longest = later.retry_after
            return index, longest
    return None


def wait_budget(max_wait: float, context: Any) -> float:
    """`wait_budget` is how long a call may wait: ``max_wait`` seconds,
    never past the call's deadline (``context.time_remaining()``; None or
    no deadline: ``max_wait``)."""
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return max_wait
    return max(0.0, min(max_wait, remaining))


@dataclass(frozen=True)
class WaitFor:
    """`WaitFor` asks the driver of `admission` to wait for ``limit``'s
    capacity for ``key`` (``()``: a limit of one quota), at most
    ``timeout`` seconds; the driver sends back whether it was granted."""

    limit: CallLimit
    key: Any
    timeout: float

    def arguments(self) -> tuple[Any, ...]:
        """`arguments` are the positional arguments of the limiter's
        acquire: the key, if any, then the cost."""
        limit = self.limit
        return (limit.cost,) if limit.key_of is None else (self.key, limit.cost)


def admission(policy: MethodPolicy, context: Any) -> Generator[Any, Any, Denial | None]:
    """`admission` decides a call's limits in order and returns its Denial,
    or None when admitted. It yields the awaitables of async limiters
    (send back their decisions) and, when the rule lets calls wait, a
    `WaitFor` for the limit that denied (send back whether the wait was
    granted); admitted after a wait, the limits after that one are decided
    again with their cost. Every wait together stays within ``max_wait``
    and the call's deadline."""
    limits = policy.limits
    start = 0
    deadline = None
    while True:
        decisions: list[Any] = []
        yield from in_order(limits[start:], context, decisions)
        found = first_denial(decisions)
        if found is None:
            return None
        index, retry_after = found[0] + start, found[1]
        limit = limits[index]
        if not policy.max_wait or limit.acquire is None:
            return policy.denial(index, retry_after)
        if deadline is None:
            deadline = time.monotonic() + wait_budget(policy.max_wait, context)
        budget = deadline - time.monotonic()
        # A wait that cannot fit is refused at once (acquire would refuse
        # it too, after a reservation round trip).
        if retry_after > budget or not (
            yield WaitFor(limit, limit.key(context), budget)
        ):
            return policy.denial(index, retry_after)
        start = index + 1
