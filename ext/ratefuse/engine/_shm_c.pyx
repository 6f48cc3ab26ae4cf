# The shared-memory limiter cores, compiled: one state per key in a table
# that every process on the host maps (layout: src/ratefuse/engine/shm_layout.py),
# updated without locks. The spec is src/ratefuse/engine/_shm_py.py: same names,
# decisions and table contents.
#
# Why SIGKILL at any instruction leaves the table consistent: every change
# to a slot is one 16-byte compare-and-swap of (fingerprint, state)
# (include/ratefuse_atomic.h), and every change to a bucket's insertion
# sequence one 8-byte CAS. A decision reads the slot, steps a private copy
# of the state and publishes it with one CAS: killed before it, nothing
# happened; after it, the decision is complete. Nothing is ever held, so
# nobody waits for anybody. An insertion is three CASes (claim the slot as
# PENDING, advance the sequence naming the slot, confirm); a kill after the
# first leaves a PENDING slot that nobody decides on and that becomes
# reusable at the next insertion into the bucket; a kill after the second
# leaves the winner, which the next lookup or insertion confirms. At most
# one insertion per bucket can win per sequence value, and it scanned the
# bucket after the previous one was published, so a key never has two
# confirmed slots. Statistics are counted with atomic adds after the event;
# a kill in between loses one count, never a state.
from libc.stdint cimport INT64_MIN, int64_t, uint64_t

from libc.string cimport memset

from ratefuse.core._args cimport resolve_now, to_cost
from ratefuse.core._decision_c cimport make_reservation
from ratefuse.core._compound_c cimport CompoundLimit, compound_free, compound_init
from ratefuse.core._keys cimport key_fingerprint
from ratefuse.core._step cimport CSpec, StepResult
from ratefuse.engine._verbs_c cimport Verbs, acquire_at, decision_at

from functools import partial

from ratefuse.engine import shm_layout as layout
from ratefuse.core.algorithms import REGISTRY

__all__ = ["ShmKeyedLimiterCore", "ShmLimiterCore"]

cdef extern from "ratefuse_atomic.h":
    ctypedef struct Slot "ratefuse_slot":
        uint64_t fingerprint
        int64_t state
    enum: HAVE_CAS16 "RATEFUSE_HAVE_CAS16"
    uint64_t load_fingerprint "ratefuse_load_fingerprint"(
        const Slot* slot) noexcept nogil
    int64_t load_state "ratefuse_load_state"(const Slot* slot) noexcept nogil
    int64_t load_word "ratefuse_load_word"(const int64_t* word) noexcept nogil
    bint cas_word "ratefuse_cas_word"(int64_t* word, int64_t expected,
                                      int64_t desired) noexcept nogil
    void add_word "ratefuse_add_word"(int64_t* word, int64_t delta) noexcept nogil
    bint cas_slot "ratefuse_cas_slot"(Slot* slot, uint64_t fingerprint, int64_t state,
                                      uint64_t new_fingerprint,
                                      int64_t new_state) noexcept nogil

cdef enum:
    # The layout's numbers as compile-time constants; checked against
    # shm_layout at import.
    SLOTS = 15
    BUCKET_WORDS = 32
    HEADER_WORDS = 512
    EVICTIONS_WORD = 16
    EXPIRED_WORD = 17
    WINNER_BITS = 4
    OP_STEP = 0
    OP_RESERVE = 1
    OP_REFUND = 2

cdef int64_t FREE = -1

if (layout.SLOTS_PER_BUCKET, layout.BUCKET_WORDS, layout.HEADER_BYTES // 8,
        layout.EVICTIONS_OFFSET // 8, layout.EXPIRED_OFFSET // 8,
        layout.WINNER_BITS) != (SLOTS, BUCKET_WORDS, HEADER_WORDS, EVICTIONS_WORD,
                                EXPIRED_WORD, WINNER_BITS):
    raise ImportError("ratefuse.engine._shm_c was built for another table layout")


# ---- slot states ----

cdef inline bint is_pending(int64_t state) noexcept nogil:
    return state < 0 and state != FREE


cdef inline int64_t pending(int64_t counter) noexcept nogil:
    return INT64_MIN + counter


cdef inline int64_t pending_counter(int64_t state) noexcept nogil:
    return state - INT64_MIN


cdef inline Slot* slot_at(int64_t* bucket, int index) noexcept nogil:
    return <Slot*>(bucket + 2 + 2 * index)


cdef class _ShmCore(Verbs):
    # The shared-memory table as a state locator, for the keyed and the
    # single-subject cores: the mapping, the limit, and the lock-free table
    # operations; the verbs are Verbs'. Thread-safe: every table change is
    # a CAS; the lookup hint is touched with the GIL held.
    cdef unsigned char[::1] _view
    cdef int64_t* _words
    cdef uint64_t _bucket_mask
    cdef uint64_t _k0
    cdef uint64_t _k1
    cdef CompoundLimit _program
    cdef CSpec* _spec
    cdef int _counts
    cdef int _count_bits
    cdef int64_t _count_mask
    cdef Slot* _hint
    cdef uint64_t _hint_fingerprint
    cdef readonly object table

    def __cinit__(self, *args, **kwargs):
        memset(&self._program, 0, sizeof(CompoundLimit))
        self._words = NULL

    def __init__(self, table, clock=None, *, max_wait=None, sleep=None,
                 async_sleep=None):
        if self._words != NULL:
            raise TypeError(f"{type(self).__name__}.__init__ may be called only once")
        if not HAVE_CAS16:
            raise RuntimeError("shared-memory limiters need a 16-byte atomic "
                               "compare-and-swap, which this build lacks")
        spec = table.params.spec
        compound_init(&self._program, (spec,))
        self._spec = self._program.specs
        self._count_bits = layout.packing_bits(spec)
        self._count_mask = (<int64_t>1 << self._count_bits) - 1
        self._counts = REGISTRY.by_name(spec.algorithm).shm_counts
        self._init_waits(clock, max_wait, sleep, async_sleep)
        self._k0, self._k1 = table.k0, table.k1
        self._bucket_mask = table.params.buckets - 1
        self._view = table.mmap
        self._words = <int64_t*>&self._view[0]
        self.table = table

    def __dealloc__(self):
        compound_free(&self._program)

    def close(self):
        """`close` unmaps the table (idempotent); later calls raise ValueError."""
        if self._words != NULL:
            self._words = NULL
            self._hint = NULL
            self._hint_fingerprint = 0
            self._view = None
            self.table.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.close()

    # ---- state packing (see shm_layout.packing_bits) ----

    cdef inline void unpack(self, int64_t word, int64_t* state) noexcept nogil:
        if self._counts == 0:
            state[0] = word
        elif self._counts == 1:
            state[0] = word >> self._count_bits
            state[1] = word & self._count_mask
        else:
            state[0] = word >> (2 * self._count_bits)
            state[1] = (word >> self._count_bits) & self._count_mask
            state[2] = word & self._count_mask

    cdef inline int64_t pack(self, const int64_t* state) noexcept nogil:
        if self._counts == 0:
            # A tat below 0 decides as 0 for every now >= 0.
            return state[0] if state[0] > 0 else 0
        if self._counts == 1:
            return (state[0] << self._count_bits) | state[1]
        return ((state[0] << (2 * self._count_bits))
                | (state[1] << self._count_bits) | state[2])

    cdef inline void apply(self, int op, int64_t* state, int64_t now, int64_t cost,
                           int64_t arg, StepResult* out) noexcept nogil:
        if op == OP_STEP:
            self._spec.step(self._spec, state, now, cost, True, out)
        elif op == OP_RESERVE:
            # As compound_reserve: a denied reservation leaves the state as it
            # was (a window is not rolled forward).
            self._spec.reserve(self._spec, state, now, cost, arg, False, out)
            if out.allowed:
                self._spec.reserve(self._spec, state, now, cost, arg, True, out)
        else:
            self._spec.refund(self._spec, state, now, cost, arg)

    # ---- the table ----

    cdef inline int64_t* bucket(self, uint64_t fingerprint) noexcept nogil:
        return (self._words + HEADER_WORDS
                + <Py_ssize_t>(fingerprint & self._bucket_mask) * BUCKET_WORDS)

    cdef Slot* find(self, uint64_t fingerprint) noexcept nogil:
        # The key's confirmed slot, or NULL. Confirms the key's winning
        # insertion if its inserter died before confirming it.
        cdef int64_t* bucket = self.bucket(fingerprint)
        cdef Slot* slot
        cdef uint64_t found
        cdef int64_t state
        cdef int index
        for index in range(SLOTS):
            slot = slot_at(bucket, index)
            found = load_fingerprint(slot)
            state = load_state(slot)
            if found == fingerprint:
                if state >= 0:
                    return slot
                if (is_pending(state) and load_word(bucket) ==
                        ((pending_counter(state) + 1) << WINNER_BITS | index)):
                    cas_slot(slot, found, state, found, 0)
                    if load_fingerprint(slot) == fingerprint and load_state(slot) >= 0:
                        return slot
            elif found == 0 and state == 0:
                return NULL  # slots fill in order: the key is not further on
        return NULL

    cdef void insert(self, uint64_t fingerprint, int64_t now) noexcept nogil:
        # One attempt to insert the key (state as new); the caller looks it
        # up again either way. Target: the first free slot (EMPTY, FREE or
        # a void PENDING), else the first idle state, else the state closest
        # to new (an eviction), else an insertion in flight (its inserter
        # may be dead). The target is claimed only if it still holds what
        # the scan saw.
        cdef int64_t* bucket = self.bucket(fingerprint)
        cdef int64_t sequence = load_word(bucket)
        cdef int64_t counter = sequence >> WINNER_BITS
        cdef int64_t idle, victim_idle = 0
        cdef int64_t words[3]
        cdef int64_t seen_state[SLOTS]
        cdef uint64_t seen_fingerprint[SLOTS]
        cdef int index, free = -1, idle_slot = -1, victim = -1, in_flight = -1
        cdef int target
        cdef Slot* slot
        for index in range(SLOTS):
            slot = slot_at(bucket, index)
            seen_fingerprint[index] = load_fingerprint(slot)
            seen_state[index] = load_state(slot)
            if is_pending(seen_state[index]):
                if sequence == ((pending_counter(seen_state[index]) + 1)
                                << WINNER_BITS | index):
                    if not cas_slot(slot, seen_fingerprint[index],
                                    seen_state[index], seen_fingerprint[index], 0):
                        return
                    seen_state[index] = 0  # confirmed, as new: classified below
                elif counter > pending_counter(seen_state[index]):
                    free = index if free < 0 else free
                    continue
                else:
                    in_flight = index if in_flight < 0 else in_flight
                    continue
            if seen_state[index] == FREE:
                free = index if free < 0 else free
                continue
            if seen_fingerprint[index] == 0:  # EMPTY: the rest are EMPTY too
                free = index if free < 0 else free
                break
            if seen_fingerprint[index] == fingerprint:
                return  # inserted meanwhile
            self.unpack(seen_state[index], words)
            idle = self._spec.idle_at(self._spec, words)
            if idle <= now:
                idle_slot = index if idle_slot < 0 else idle_slot
            elif victim < 0 or idle < victim_idle:
                victim, victim_idle = index, idle
        target = (free if free >= 0 else idle_slot if idle_slot >= 0
                  else victim if victim >= 0 else in_flight)
        if target < 0:
            return
        slot = slot_at(bucket, target)
        if not cas_slot(slot, seen_fingerprint[target], seen_state[target],
                        fingerprint, pending(counter)):
            return
        if free < 0 and target == victim:
            add_word(self._words + EVICTIONS_WORD, 1)
        elif free < 0 and target == idle_slot:
            add_word(self._words + EXPIRED_WORD, 1)
        if cas_word(bucket, sequence, (counter + 1) << WINNER_BITS | target):
            cas_slot(slot, fingerprint, pending(counter), fingerprint, 0)
        else:  # another insertion won: give the slot back
            cas_slot(slot, fingerprint, pending(counter), 0, FREE)

    cdef int run(self, uint64_t fingerprint, int op, int64_t now, int64_t cost,
                 int64_t arg, StepResult* out) except -1:
        # Applies `op` to the key's state: read, step a copy, CAS, retry.
        cdef Slot* slot
        cdef int64_t state, updated
        cdef int64_t words[3]
        if self._words == NULL:
            raise ValueError(f"{type(self).__name__} is closed")
        while True:
            if self._hint_fingerprint == fingerprint:
                slot = self._hint
            else:
                slot = self.find(fingerprint)
            if slot == NULL:
                words[0] = words[1] = words[2] = 0
                self.apply(op, words, now, cost, arg, out)
                if op == OP_REFUND or self._spec.idle_at(self._spec, words) <= now:
                    self.count(op, out)
                    return 0  # as new before and after: nothing to keep
                self.insert(fingerprint, now)
                continue
            state = load_state(slot)
            if state < 0 or load_fingerprint(slot) != fingerprint:
                self._hint_fingerprint = 0  # the slot was reused: look again
                continue
            self.unpack(state, words)
            self.apply(op, words, now, cost, arg, out)
            updated = self.pack(words)
            if cas_slot(slot, fingerprint, state, fingerprint, updated):
                self._hint, self._hint_fingerprint = slot, fingerprint
                self.count(op, out)
                return 0

    cdef inline void count(self, int op, const StepResult* verdict) noexcept nogil:
        # Counts a decision of this process (a refund is none).
        if op != OP_REFUND:
            self._outcome_counts[verdict.allowed != 0] += 1

    def counters(self):
        """`counters` snapshots this process's decisions (not the other
        processes' sharing the table) since construction (see
        ratefuse.core.counters.LimiterCounters)."""
        return Verbs.counters(self)

    cdef int64_t _step(self, uint64_t where, int64_t cost, int64_t now,
                       StepResult* out) except -1:
        self.run(where, OP_STEP, now, cost, 0, out)
        return self._spec.capacity

    cdef object _reserve(self, uint64_t where, int64_t units, int64_t bound,
                         int64_t now, bint none_if_now):
        cdef StepResult verdict
        self.run(where, OP_RESERVE, now, units, bound, &verdict)
        if none_if_now and verdict.allowed and verdict.retry_after_ns == 0:
            return None
        return make_reservation(&verdict, self._spec.capacity,
                                partial(self._refund, where, units, verdict.stamp))

    cdef int _forget(self, uint64_t where) except -1:
        if self._words == NULL:
            raise ValueError(f"{type(self).__name__} is closed")
        self.forget(where)
        return 0

    cdef void forget(self, uint64_t fingerprint) noexcept nogil:
        cdef Slot* slot
        cdef int64_t state
        while True:
            slot = self.find(fingerprint)
            if slot == NULL:
                return
            state = load_state(slot)
            if state >= 0 and cas_slot(slot, fingerprint, state, 0, FREE):
                return

    def _refund(self, uint64_t fingerprint, int64_t cost, int64_t stamp, now):
        cdef StepResult unused
        self.run(fingerprint, OP_REFUND, resolve_now(self._clock, now), cost, stamp,
                 &unused)

    def stats(self):
        """`stats` reports ``live_keys`` (slots holding a state, idle ones
        included), ``max_keys``, ``capacity`` (slots), ``evictions`` (states
        replaced before they were idle: the only over-admission, counted by
        every process), ``expired`` (idle states replaced, harmlessly) and
        ``memory_bytes`` (the table file). Scans the table: not for the hot
        path."""
        cdef Py_ssize_t live = 0, index, buckets = self._bucket_mask + 1
        cdef int64_t* bucket
        cdef Slot* slot
        if self._words == NULL:
            raise ValueError(f"{type(self).__name__} is closed")
        for index in range(buckets * SLOTS):
            bucket = self._words + HEADER_WORDS + (index // SLOTS) * BUCKET_WORDS
            slot = slot_at(bucket, index % SLOTS)
            if load_fingerprint(slot) != 0 and load_state(slot) >= 0:
                live += 1
        return {
            "live_keys": live,
            "max_keys": self.table.params.max_keys,
            "capacity": buckets * SLOTS,
            "evictions": load_word(self._words + EVICTIONS_WORD),
            "expired": load_word(self._words + EXPIRED_WORD),
            "memory_bytes": layout.table_bytes(buckets),
        }


cdef class ShmKeyedLimiterCore(_ShmCore):
    """`ShmKeyedLimiterCore` decides costs per key against the limit of a
    shared-memory table (see shm_layout.open_table), so that every process
    mapping it shares each key's quota. ``clock`` returns integer ns on a
    host-wide clock, None meaning CLOCK_MONOTONIC (read in C); ``max_wait``,
    ``sleep`` and ``async_sleep`` are as for the in-memory cores.
    Thread- and process-safe: each decision is one atomic update.
    """

    cdef object _last_key
    cdef uint64_t _last_fingerprint

    cdef inline uint64_t fingerprint(self, object key) except 0:
        # The last key's fingerprint is kept: the same object (immutable
        # str, bytes or int) hashes the same.
        if key is self._last_key and self._last_fingerprint != 0:
            return self._last_fingerprint
        self._last_fingerprint = key_fingerprint(self._k0, self._k1, key)
        self._last_key = key
        return self._last_fingerprint

    def try_acquire(self, key, cost=1, now=None):
        """`try_acquire` consumes ``cost`` units of ``key``'s quota if the
        limit admits them and reports whether it did."""
        cdef StepResult verdict
        cdef uint64_t fingerprint = self.fingerprint(key)
        cdef int64_t units = to_cost(cost)
        self.run(fingerprint, OP_STEP, resolve_now(self._clock, now), units, 0,
                 &verdict)
        return verdict.allowed

    def decide(self, key, cost=1, now=None):
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        return decision_at(self, self.fingerprint(key), cost, now)

    def reserve(self, key, cost=1, max_wait=None, now=None):
        """`reserve` sets ``cost`` units of ``key``'s quota aside if they can
        be used within ``max_wait`` seconds (see LimiterCore.reserve)."""
        return self._reservation(self.fingerprint(key), cost, max_wait, now)

    def acquire(self, key, cost=1, timeout=None):
        """`acquire` takes ``cost`` units of ``key``'s quota, sleeping until
        they are admitted (see LimiterCore.acquire)."""
        return acquire_at(self, self.fingerprint(key), key, True, cost, timeout)

    def acquire_async(self, key, cost=1, timeout=None):
        """`acquire_async` is `acquire` for asyncio: ``await`` it."""
        return self._acquire_async(self.fingerprint(key), key, True, cost, timeout)

    def reset(self, key):
        """`reset` forgets ``key`` in every process: its next decision is as
        if new."""
        self._forget(self.fingerprint(key))


cdef class ShmLimiterCore(_ShmCore):
    """`ShmLimiterCore` is `ShmKeyedLimiterCore` for one subject: the same
    verbs without the key."""

    cdef uint64_t _subject

    def __init__(self, table, clock=None, **options):
        super().__init__(table, clock, **options)
        self._subject = key_fingerprint(self._k0, self._k1, b"")

    def try_acquire(self, cost=1, now=None):
        """`try_acquire` consumes ``cost`` units if the limit admits them and
        reports whether it did."""
        cdef StepResult verdict
        cdef int64_t units = to_cost(cost)
        self.run(self._subject, OP_STEP, resolve_now(self._clock, now), units, 0,
                 &verdict)
        return verdict.allowed

    def decide(self, cost=1, now=None):
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        return decision_at(self, self._subject, cost, now)

    def reserve(self, cost=1, max_wait=None, now=None):
        """`reserve` sets ``cost`` units aside if they can be used within
        ``max_wait`` seconds (see LimiterCore.reserve)."""
        return self._reservation(self._subject, cost, max_wait, now)

    def acquire(self, cost=1, timeout=None):
        """`acquire` takes ``cost`` units, sleeping until they are admitted."""
        return acquire_at(self, self._subject, None, False, cost, timeout)

    def acquire_async(self, cost=1, timeout=None):
        """`acquire_async` is `acquire` for asyncio: ``await`` it."""
        return self._acquire_async(self._subject, None, False, cost, timeout)

    def reset(self):
        """`reset` forgets the state in every process: as if new."""
        self._forget(self._subject)
