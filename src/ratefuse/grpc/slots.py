"""What holds a gRPC call's concurrency slot, and how it is given back.

A rule's ``bulkhead`` is a :class:`ratefuse.Bulkhead` (its ``acquire``
returns None: the bulkhead itself is given back) or an
:class:`ratefuse.AdaptiveLimiter` (its ``acquire`` returns the call's
permit, and `AdaptiveLimiter.finish` feeds the limit how the call ended:
a latency sample, a drop for an exception of its ``drop_on``, nothing
for any other).
"""

from __future__ import annotations

from typing import Any


class _Abandoned(BaseException):
    # How a call ended that gives no outcome (gRPC's callback on a
    # cancellation or a deadline): an exception no ``drop_on`` names.
    pass


ABANDONED = _Abandoned()


def held_by(bulkhead: Any, taken: Any) -> Any:
    """`held_by` is what holds the slot that ``bulkhead.acquire`` gave: the
    bulkhead, or (the adaptive limit, its permit)."""
    return bulkhead if taken is None else (bulkhead, taken)


def give_back(held: Any, ended: BaseException | None) -> None:
    """`give_back` returns the slot ``held`` (None: no bulkhead) of a call
    that ended with ``ended`` (None: it returned)."""
    if held is None:
        return
    if isinstance(held, tuple):
        limiter, permit = held
        limiter.finish(permit, ended)
    else:
        held.release()
