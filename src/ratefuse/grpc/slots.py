"""What holds a gRPC call's concurrency slot, and how it is given back.

A rule's ``bulkhead`` is a :class:`ratefuse.Bulkhead` (its ``acquire``
returns None: the bulkhead itself is given back) or an
:class:`ratefuse.AdaptiveLimiter` (its ``acquire`` returns the call's
permit, which feeds the limit how the call went).
"""

from __future__ import annotations

import enum
from typing import Any

from ratefuse.core.adaptive.limit import AdaptivePermit


class Ended(enum.IntEnum):
    """`Ended` is how a call ended, for an adaptive limit's sample."""

    OK = 0  # returned: its latency is a sample
    FAILED = 1  # raised (an abort included): a drop
    INTERRUPTED = 2  # cancelled or interrupted: no sample


def held_by(bulkhead: Any, taken: Any) -> Any:
    """`held_by` is what holds the slot that ``bulkhead.acquire`` gave."""
    return bulkhead if taken is None else taken


def give_back(held: Any, ended: Ended) -> None:
    """`give_back` returns the slot ``held`` (None: no bulkhead) of a call
    that ended as ``ended``."""
    if held is None:
        return
    if not isinstance(held, AdaptivePermit) or ended is Ended.OK:
        held.release()
    elif ended is Ended.FAILED:
        held.drop()
    else:
        held.ignore()
