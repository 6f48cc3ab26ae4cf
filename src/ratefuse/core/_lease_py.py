"""The lease table, the reference core: units leased from a fleet quota and
spent locally, and the deny cache, per key.

Each key holds up to two leases (the current one and the refill that
arrived before it ran dry), each a count of units and the local time at
which its unused units expire; and a deny gate: costs >= ``deny_cost`` are
denied until ``deny_until``. `take` decides one cost at ``now`` (integer
nanoseconds, local monotonic clock) without I/O:

- HIT: the leases covered the cost, which is spent (oldest lease first);
- LOW: a HIT that left the balance below the key's low-water mark with no
  refill pending: the caller starts one (the key is marked pending until
  `grant` or `refill_failed`);
- DENIED: the balance is short and the deny gate refuses the cost;
- MISS: nothing local decides; the caller asks the fleet (also while a
  refill is in flight: a caller whose lease ran dry first asks itself
  rather than be denied what the fleet may still hold).

A key with no leased units never answers HIT (exact mode uses the table as
a deny cache only), and neither does a cost above ``max_cost`` (the
smallest capacity: a cost the fleet never admits at once is never admitted
from two leases either). The table holds at most ``max_keys`` keys and evicts
the oldest entry beyond that (its unused units are lost: never an
over-admission). Thread-safe: the compiled twin holds the GIL and runs no
Python code while it touches an entry; this one takes a lock.

`try_acquire` is the public fast path: it reads the clock (``clock`` or the
monotonic clock) and answers HIT and DENIED itself; it calls ``on_low(key)``
after a LOW and returns ``on_miss(key, cost)`` for a MISS, or for a key or
cost that is not exactly str/bytes/int and an int in [0, 2**63) (the miss
path validates and raises).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ratefuse.core.lease_answers import (
    DEFAULT_MAX_KEYS,
    DENIED,
    HIT,
    LOW,
    MISS,
    Key,
    LowHandler,
    MissHandler,
    check_max_keys,
)
from ratefuse.core.spec import MAX_COST

__all__ = [
    "DEFAULT_MAX_KEYS",
    "DENIED",
    "HIT",
    "LOW",
    "MAX_COST",
    "MISS",
    "LeaseTable",
    "check_max_keys",
]


@dataclass(slots=True)
class _Entry:
    # One key's leases (current and next: units and local expiry), its deny
    # gate, low-water mark, refill state and what it has spent; all zero
    # for a new key.
    cur_units: int = 0
    cur_expiry: int = 0
    next_units: int = 0
    next_expiry: int = 0
    deny_cost: int = 0
    deny_until: int = 0
    low_water: int = 0
    pending: bool = False
    refill_after: int = 0
    consumed: int = 0
    granted_at: int = 0


class LeaseTable:
    """`LeaseTable` holds leased units and deny gates per key (see the
    module docstring). Thread-safe."""

    def __init__(
        self,
        max_keys: int = DEFAULT_MAX_KEYS,
        on_miss: MissHandler | None = None,
        on_low: LowHandler | None = None,
        clock: Callable[[], int] | None = None,
        max_cost: int = MAX_COST,
    ) -> None:
        self.max_keys = check_max_keys(max_keys)
        self.max_cost = max_cost
        self._on_miss = on_miss
        self._on_low = on_low
        self._clock = time.monotonic_ns if clock is None else clock
        self._entries: dict[Key, _Entry] = {}
        self._lock = threading.RLock()
        self._hits = 0
        self._denials = 0
        self._units_expired = 0
        self._evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    # --- the decision -----------------------------------------------------

    def _expire(self, entry: _Entry, now: int) -> None:
        # Drops leases whose lifetime is over, then moves the refill up.
        if entry.cur_units and now >= entry.cur_expiry:
            self._units_expired += entry.cur_units
            entry.cur_units = 0
        if entry.next_units and now >= entry.next_expiry:
            self._units_expired += entry.next_units
            entry.next_units = 0
        if not entry.cur_units and entry.next_units:
            entry.cur_units, entry.cur_expiry = entry.next_units, entry.next_expiry
            entry.next_units = 0

    def take(self, key: Key, cost: int, now: int) -> int:
        """`take` decides ``cost`` (an int >= 0) for ``key`` at ``now``:
        HIT, LOW, DENIED or MISS (see the module docstring)."""
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost}")
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return MISS
            self._expire(entry, now)
            balance = entry.cur_units + entry.next_units
            if balance == 0 or cost > balance or cost > self.max_cost:
                if now < entry.deny_until and cost >= entry.deny_cost:
                    self._denials += 1
                    return DENIED
                return MISS
            if cost <= entry.cur_units:
                entry.cur_units -= cost
            else:
                entry.next_units -= cost - entry.cur_units
                entry.cur_units = 0
                self._expire(entry, now)
            entry.consumed += cost
            self._hits += 1
            if (
                balance - cost < entry.low_water
                and not entry.pending
                and now >= entry.refill_after
            ):
                entry.pending = True
                return LOW
            return HIT

    def try_acquire(self, key: Key, cost: int = 1) -> bool:
        """`try_acquire` decides ``cost`` for ``key`` now (see the module
        docstring) and reports whether it was admitted."""
        kind = type(key)
        if (
            type(cost) is not int
            or not 0 <= cost <= MAX_COST
            or kind not in (str, bytes, int)
        ):
            return self._miss(key, cost)
        result = self.take(key, cost, self._clock())
        if result == HIT:
            return True
        if result == DENIED:
            return False
        if result == LOW:
            if self._on_low is not None:
                self._on_low(key)
            return True
        return self._miss(key, cost)

    def _miss(self, key: Key, cost: int) -> bool:
        if self._on_miss is None:
            return False
        return self._on_miss(key, cost)

    # --- what the fleet said ----------------------------------------------

    def _entry(self, key: Key) -> _Entry:
        # The entry of ``key``, created (evicting the oldest) if absent.
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.max_keys:
                del self._entries[next(iter(self._entries))]
                self._evictions += 1
            entry = self._entries[key] = _Entry()
        return entry

    def grant(
        self, key: Key, units: int, expires: int, low_water: int, now: int
    ) -> None:
        """`grant` adds a lease of ``units`` expiring at ``expires`` to
        ``key``, sets its low-water mark, ends its pending refill and opens
        its deny gate (the fleet has answered anew). A lease that arrives
        while two are held joins the newer one and keeps the earlier expiry
        (never extending a unit's life)."""
        with self._lock:
            entry = self._entry(key)
            self._expire(entry, now)
            if units > 0:
                if not entry.cur_units:
                    entry.cur_units, entry.cur_expiry = units, expires
                elif not entry.next_units:
                    entry.next_units, entry.next_expiry = units, expires
                else:
                    entry.next_units += units
                    entry.next_expiry = min(entry.next_expiry, expires)
            entry.low_water = low_water
            entry.pending = False
            entry.deny_until = 0
            entry.consumed = 0
            entry.granted_at = now

    def deny(self, key: Key, cost: int, until: int, now: int) -> None:
        """`deny` closes ``key``'s gate to costs >= ``cost`` (at least 1)
        until ``until``; a no-op when ``until`` is not after ``now``."""
        if until <= now:
            return
        with self._lock:
            entry = self._entry(key)
            entry.deny_cost = max(cost, 1)
            entry.deny_until = until

    def refill_failed(self, key: Key, retry_at: int) -> None:
        """`refill_failed` ends ``key``'s pending refill; the next is not
        started before ``retry_at``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.pending = False
                entry.refill_after = retry_at

    def reset(self, key: Key) -> None:
        """`reset` forgets ``key``: its leased units are dropped."""
        with self._lock:
            self._entries.pop(key, None)

    # --- reading ------------------------------------------------------------

    def retry_after(self, key: Key, now: int) -> int:
        """`retry_after` is the nanoseconds left on ``key``'s deny gate (0
        when open)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.deny_until <= now:
                return 0
            return entry.deny_until - now

    def balance(self, key: Key, now: int) -> int:
        """`balance` is the unexpired units ``key`` holds at ``now``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return 0
            self._expire(entry, now)
            return entry.cur_units + entry.next_units

    def demand(self, key: Key, now: int) -> tuple[int, int]:
        """`demand` is (units spent, nanoseconds elapsed) since ``key``'s
        last grant; (0, 0) for an unknown key."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return 0, 0
            return entry.consumed, now - entry.granted_at

    def stats(self) -> dict[str, int]:
        """`stats` counts HITs and LOWs (hits), DENIEDs (denials), units
        that expired unused and evicted keys, and the keys held."""
        with self._lock:
            return {
                "hits": self._hits,
                "denials": self._denials,
                "units_expired": self._units_expired,
                "evictions": self._evictions,
                "keys": len(self._entries),
            }
