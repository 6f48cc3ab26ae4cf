"""`LeaseConfig`: how a Redis-backed limiter leases units from the fleet.

A lease takes up to k units of a key's fleet quota in one script call
("take at most k": never more than the bucket admits at that moment) and
the process spends them locally, with no round trip, until they run out or
``lifetime`` seconds pass on the local monotonic clock, counted from just
before the request was sent. Unused units expire with the lease.

The bound: a unit is spent at most ``lifetime`` after the fleet granted it,
and gcra grants at most ``burst + rate * t`` units over any interval t, so
over any interval t the whole fleet admits at most
``burst + rate * (t + lifetime)``. Only gcra keeps that bound: a window
counter forgets what it admitted at each window edge, and units leased at
the end of one window and spent in the next would stack two windows' worth
into one, so leases on the window algorithms are refused at construction.

k adapts to local demand: the units spent since the last grant over the
time since it, times ``lifetime / 2`` (a lease should be spent well before
it expires), clamped to [min_units, max_units]. A refill starts in the
background once the balance falls below ``low_water`` times the last
lease's size, so callers do not wait on Redis while demand is steady.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# 10,000: a hot key's lease (k adapts to demand, so only a key spending
# 20,000 units/s or more reaches it) costs Redis 5 commands (EVALSHA and the
# script's TIME, 2 GET and SET): about 0.6 per 1,000 decisions, under the
# lease target of 5 without tuning (1,000 cost 5 and more). The fleet
# bound does not depend on it (see the module docstring).
DEFAULT_LEASE_MAX_UNITS: Final = 10_000
DEFAULT_LEASE_MIN_UNITS: Final = 1
DEFAULT_LEASE_LIFETIME: Final = 1.0
DEFAULT_LEASE_LOW_WATER: Final = 0.5
# Seconds between background refills after one failed (Redis down).
DEFAULT_REFILL_BACKOFF: Final = 0.05
MAX_LEASE_UNITS: Final = 1 << 31
MAX_LEASE_LIFETIME: Final = 3600.0
# The shortest lifetime: 1 microsecond, the smallest interval the Redis
# backend takes (below it lifetime_ns would round to 0 and every lease would
# expire as it is granted, its units taken from the fleet and never spent).
MIN_LEASE_LIFETIME: Final = 1e-6


def _check_units(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if not 1 <= value <= MAX_LEASE_UNITS:
        raise ValueError(f"{name} must be in [1, 2**31], got {value!r}")
    return value


def _check_seconds(name: str, value: float, top: float, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    # low > 0 is an inclusive bound; low 0 an exclusive one (NaN fails both).
    if not (low <= value <= top if low > 0 else 0 < value <= top):
        bound = f"[{low:g}" if low > 0 else "(0"
        raise ValueError(f"{name} must be in {bound}, {top:g}] seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class LeaseConfig:
    """`LeaseConfig` configures quota leases (see the module docstring).

    max_units: the most units one lease takes (k_max), >= 1; 10,000 by
        default.
    lifetime: seconds a lease's units stay spendable (L), >= 1e-6 (1
        microsecond); the fleet bound grows by ``rate * lifetime``.
    min_units: the fewest units a lease asks for (k before any demand is
        measured), in [1, max_units].
    low_water: share of the last lease below which a background refill
        starts, in [0, 1); 0 refills only when the balance is empty.
    refill_backoff: seconds before the next background refill after one
        failed, > 0.
    """

    max_units: int = DEFAULT_LEASE_MAX_UNITS
    lifetime: float = DEFAULT_LEASE_LIFETIME
    min_units: int = DEFAULT_LEASE_MIN_UNITS
    low_water: float = DEFAULT_LEASE_LOW_WATER
    refill_backoff: float = DEFAULT_REFILL_BACKOFF

    def __post_init__(self) -> None:
        _check_units("max_units", self.max_units)
        _check_units("min_units", self.min_units)
        if self.min_units > self.max_units:
            raise ValueError(
                f"min_units must be <= max_units ({self.max_units}), "
                f"got {self.min_units}"
            )
        _check_seconds(
            "lifetime", self.lifetime, MAX_LEASE_LIFETIME, MIN_LEASE_LIFETIME
        )
        _check_seconds("refill_backoff", self.refill_backoff, MAX_LEASE_LIFETIME)
        water = self.low_water
        if isinstance(water, bool) or not isinstance(water, (int, float)):
            raise ValueError(f"low_water must be a number, got {water!r}")
        if not 0 <= water < 1:
            raise ValueError(f"low_water must be in [0, 1), got {water!r}")

    @property
    def lifetime_ns(self) -> int:
        """`lifetime_ns` is ``lifetime`` in integer nanoseconds."""
        return round(self.lifetime * 1e9)

    def size(self, spent: int, elapsed_ns: int) -> int:
        """`size` is k for a demand of ``spent`` units over ``elapsed_ns``
        (no demand measured: ``min_units``)."""
        if spent <= 0 or elapsed_ns <= 0:
            return self.min_units
        wanted = math.ceil(spent * self.lifetime_ns / (2 * elapsed_ns))
        return max(self.min_units, min(self.max_units, wanted))

    def low_water_units(self, size: int) -> int:
        """`low_water_units` is the balance below which a lease of ``size``
        units is refilled."""
        return math.ceil(size * self.low_water)


def to_lease_config(lease: LeaseConfig | bool | None) -> LeaseConfig | None:
    """`to_lease_config` reads the ``lease=`` argument: a LeaseConfig, True
    (the defaults), or None/False (no leases)."""
    if lease is None or lease is False:
        return None
    if lease is True:
        return LeaseConfig()
    if not isinstance(lease, LeaseConfig):
        raise TypeError(
            f"lease must be a LeaseConfig, True, False or None, got {lease!r}"
        )
    return lease
