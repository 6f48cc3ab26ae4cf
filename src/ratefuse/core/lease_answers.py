"""`LeaseAnswer` and the lease table's bounds, shared by both twins of the
lease table (the reference ``core/_lease_py.py`` and the compiled
``ext/ratefuse/core/_lease_c.pyx``), which import them from here and
re-export them, and by the Redis leases that drive the table."""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Final


class LeaseAnswer(IntEnum):
    """`LeaseAnswer` is what ``LeaseTable.take`` answers for one cost (see
    :mod:`ratefuse.core._lease_py`): HIT, spent from the leases; LOW, a HIT
    that asks for a refill; DENIED, refused by the deny gate; MISS, nothing
    local decides and the fleet must."""

    MISS = -1
    DENIED = 0
    HIT = 1
    LOW = 2


MISS: Final = LeaseAnswer.MISS
DENIED: Final = LeaseAnswer.DENIED
HIT: Final = LeaseAnswer.HIT
LOW: Final = LeaseAnswer.LOW
# Keys a lease table holds before it evicts the oldest.
DEFAULT_MAX_KEYS: Final = 100_000

Key = str | bytes | int
MissHandler = Callable[[Key, int], bool]
LowHandler = Callable[[Key], None]


def check_max_keys(max_keys: int) -> int:
    """`check_max_keys` returns ``max_keys`` or raises ValueError."""
    if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
        raise ValueError(f"max_keys must be an int >= 1, got {max_keys!r}")
    return max_keys
