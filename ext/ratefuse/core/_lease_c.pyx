# The lease table, compiled. The spec is src/ratefuse/core/_lease_py.py: same
# names, signatures and decisions; see its docstring for the semantics.
#
# Thread safety: every method holds the GIL and runs no Python code while it
# touches an entry (dict lookups use exact str, bytes and int keys, whose
# hashing and comparison run no Python code), so no lock is needed. On a
# free-threaded build this module keeps the GIL on.
# cython: freethreading_compatible = False
from cpython.dict cimport PyDict_GetItem
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t

from ratefuse.core._clock cimport monotonic_ns

from ratefuse.core.lease_answers import (
    DEFAULT_MAX_KEYS,
    DENIED,
    HIT,
    LOW,
    MISS,
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

# LeaseAnswer's values (ratefuse/core/lease_answers.py), as C constants.
cdef enum:
    C_MISS = -1
    C_DENIED = 0
    C_HIT = 1
    C_LOW = 2


cdef class _Entry:
    cdef int64_t cur_units, cur_expiry, next_units, next_expiry
    cdef int64_t deny_cost, deny_until, low_water, refill_after
    cdef int64_t consumed, granted_at
    cdef bint pending


cdef inline bint exact_key(object key) noexcept:
    cdef type kind = type(key)
    return kind is str or kind is bytes or kind is int


cdef class LeaseTable:
    """`LeaseTable` holds leased units and deny gates per key (see
    ratefuse.core._lease_py). Thread-safe."""

    cdef readonly Py_ssize_t max_keys
    cdef readonly int64_t max_cost
    cdef dict _entries
    cdef object _on_miss, _on_low, _clock
    cdef int64_t _hits, _denials, _units_expired, _evictions

    def __init__(self, max_keys=DEFAULT_MAX_KEYS, on_miss=None, on_low=None,
                 clock=None, int64_t max_cost=MAX_COST):
        self.max_keys = check_max_keys(max_keys)
        self.max_cost = max_cost
        self._entries = {}
        self._on_miss = on_miss
        self._on_low = on_low
        self._clock = clock

    def __len__(self):
        return len(self._entries)

    # --- the decision -------------------------------------------------------

    cdef inline void _expire(self, _Entry entry, int64_t now) noexcept:
        # Drops leases whose lifetime is over, then moves the refill up.
        if entry.cur_units and now >= entry.cur_expiry:
            self._units_expired += entry.cur_units
            entry.cur_units = 0
        if entry.next_units and now >= entry.next_expiry:
            self._units_expired += entry.next_units
            entry.next_units = 0
        if not entry.cur_units and entry.next_units:
            entry.cur_units = entry.next_units
            entry.cur_expiry = entry.next_expiry
            entry.next_units = 0

    cdef int _take(self, object key, int64_t cost, int64_t now) except -2:
        cdef PyObject* found = PyDict_GetItem(self._entries, key)
        if found is NULL:
            return C_MISS
        cdef _Entry entry = <_Entry>found
        self._expire(entry, now)
        cdef int64_t balance = entry.cur_units + entry.next_units
        if balance == 0 or cost > balance or cost > self.max_cost:
            if now < entry.deny_until and cost >= entry.deny_cost:
                self._denials += 1
                return C_DENIED
            return C_MISS
        if cost <= entry.cur_units:
            entry.cur_units -= cost
        else:
            entry.next_units -= cost - entry.cur_units
            entry.cur_units = 0
            self._expire(entry, now)
        entry.consumed += cost
        self._hits += 1
        if (balance - cost < entry.low_water and not entry.pending
                and now >= entry.refill_after):
            entry.pending = True
            return C_LOW
        return C_HIT

    def take(self, key, int64_t cost, int64_t now):
        """`take` decides ``cost`` (an int >= 0) for ``key`` at ``now``:
        HIT, LOW, DENIED or MISS."""
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost}")
        return self._take(key, cost, now)

    def try_acquire(self, key, cost=1):
        """`try_acquire` decides ``cost`` for ``key`` now and reports whether
        it was admitted; LOW calls on_low, MISS returns on_miss."""
        cdef int overflow = 0
        cdef long long units = 1
        if cost is not 1:
            if not PyLong_CheckExact(cost):
                return self._miss(key, cost)
            units = PyLong_AsLongLongAndOverflow(cost, &overflow)
            if overflow or units < 0:
                return self._miss(key, cost)
        if not exact_key(key):
            return self._miss(key, cost)
        cdef int64_t now = (
            monotonic_ns() if self._clock is None else <int64_t>self._clock()
        )
        cdef int result = self._take(key, units, now)
        if result == C_HIT:
            return True
        if result == C_DENIED:
            return False
        if result == C_LOW:
            if self._on_low is not None:
                self._on_low(key)
            return True
        return self._miss(key, cost)

    cdef object _miss(self, object key, object cost):
        if self._on_miss is None:
            return False
        return self._on_miss(key, cost)

    # --- what the fleet said ------------------------------------------------

    cdef _Entry _entry(self, object key):
        # The entry of ``key``, created (evicting the oldest) if absent.
        cdef PyObject* found = PyDict_GetItem(self._entries, key)
        if found is not NULL:
            return <_Entry>found
        if len(self._entries) >= self.max_keys:
            del self._entries[next(iter(self._entries))]
            self._evictions += 1
        entry = _Entry()
        self._entries[key] = entry
        return entry

    def grant(self, key, int64_t units, int64_t expires, int64_t low_water,
              int64_t now):
        """`grant` adds a lease of ``units`` expiring at ``expires`` to
        ``key`` (see LeaseTable.grant in ratefuse.core._lease_py)."""
        cdef _Entry entry = self._entry(key)
        self._expire(entry, now)
        if units > 0:
            if not entry.cur_units:
                entry.cur_units = units
                entry.cur_expiry = expires
            elif not entry.next_units:
                entry.next_units = units
                entry.next_expiry = expires
            else:
                entry.next_units += units
                entry.next_expiry = min(entry.next_expiry, expires)
        entry.low_water = low_water
        entry.pending = False
        entry.deny_until = 0
        entry.consumed = 0
        entry.granted_at = now

    def deny(self, key, int64_t cost, int64_t until, int64_t now):
        """`deny` closes ``key``'s gate to costs >= ``cost`` (at least 1)
        until ``until``; a no-op when ``until`` is not after ``now``."""
        if until <= now:
            return
        cdef _Entry entry = self._entry(key)
        entry.deny_cost = max(cost, 1)
        entry.deny_until = until

    def refill_failed(self, key, int64_t retry_at):
        """`refill_failed` ends ``key``'s pending refill; the next is not
        started before ``retry_at``."""
        cdef PyObject* found = PyDict_GetItem(self._entries, key)
        if found is NULL:
            return
        cdef _Entry entry = <_Entry>found
        entry.pending = False
        entry.refill_after = retry_at

    def reset(self, key):
        """`reset` forgets ``key``: its leased units are dropped."""
        self._entries.pop(key, None)

    # --- reading ------------------------------------------------------------

    def retry_after(self, key, int64_t now):
        """`retry_after` is the nanoseconds left on ``key``'s deny gate (0
        when open)."""
        cdef PyObject* found = PyDict_GetItem(self._entries, key)
        if found is NULL:
            return 0
        cdef _Entry entry = <_Entry>found
        if entry.deny_until <= now:
            return 0
        return entry.deny_until - now

    def balance(self, key, int64_t now):
        """`balance` is the unexpired units ``key`` holds at ``now``."""
        cdef PyObject* found = PyDict_GetItem(self._entries, key)
        if found is NULL:
            return 0
        cdef _Entry entry = <_Entry>found
        self._expire(entry, now)
        return entry.cur_units + entry.next_units

    def demand(self, key, int64_t now):
        """`demand` is (units spent, nanoseconds elapsed) since ``key``'s
        last grant; (0, 0) for an unknown key."""
        cdef PyObject* found = PyDict_GetItem(self._entries, key)
        if found is NULL:
            return 0, 0
        cdef _Entry entry = <_Entry>found
        return entry.consumed, now - entry.granted_at

    def stats(self):
        """`stats` counts hits, denials, units expired unused, evictions,
        and the keys held."""
        return {
            "hits": self._hits,
            "denials": self._denials,
            "units_expired": self._units_expired,
            "evictions": self._evictions,
            "keys": len(self._entries),
        }
