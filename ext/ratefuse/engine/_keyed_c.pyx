# The keyed limiter engine and its key table, compiled. The specs are
# src/ratefuse/engine/_keyed_py.py, _keytable_py.py and _keys_py.py: same names,
# signatures, errors and decisions, evictions included.
#
# Thread safety: single-key decisions hold the GIL and call no Python code
# while they touch the table. decide_many releases the GIL for the table
# work, so the table is taken in turn, by ticket: two counters read and
# written only with the GIL held; whoever's ticket is not yet served waits
# (with the GIL released) until the batch ahead of it is done. Tickets are
# served in arrival order, so a thread issuing batch after batch cannot
# starve single-key callers (a plain busy flag did: the batch thread took it
# back before a waiter woke). On a free-threaded build this module keeps the
# GIL on.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_Check
from cpython.unicode cimport PyUnicode_Check
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from ratefuse.core._args cimport resolve_now, to_cost
from ratefuse.core._decision_c cimport make_decision, make_reservation
from ratefuse.core._compound_c cimport (
    CompoundLimit,
    compound_decide,
    compound_free,
    compound_idle_at,
    compound_init,
    compound_refund,
    compound_reserve,
)
from ratefuse.core._step cimport NEVER, StepResult

from functools import partial

from ratefuse.core.counters import LimiterCounters
from ratefuse.core._decision_c import Decision
from ratefuse.core.respec import keeps_state
from ratefuse.engine.waiting import acquire_timeout, wait, wait_async, wait_bound_ns
from ratefuse.core._keys_py import PROCESS_SECRET, split_secret
from ratefuse.engine._keyed_py import DEFAULT_MAX_KEYS, check_max_keys

__all__ = ["Decision", "KeyedLimiterCore"]

cdef extern from "ratefuse_siphash.h":
    uint64_t ratefuse_siphash13(uint64_t k0, uint64_t k1, const void* data,
                                size_t length) noexcept nogil

cdef extern from "<sched.h>":
    int sched_yield() noexcept nogil

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

cdef extern from *:
    """
    #if defined(__GNUC__)
    #define RATEFUSE_PREFETCH(address) __builtin_prefetch(address)
    #else
    #define RATEFUSE_PREFETCH(address) ((void)0)
    #endif
    #include <stdlib.h>
    #include <string.h>
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* Zeroed slots. Tables of 2 MiB and more are aligned to 2 MiB and
     * advised into transparent huge pages: a random probe into a large
     * table then misses the TLB far less often. NULL if out of memory. */
    static int64_t *ratefuse_allocate_slots(size_t words) {
        size_t bytes = words * sizeof(int64_t);
        void *slots = NULL;
        if (bytes < ((size_t)2 << 20)) {
            return (int64_t *)calloc(words, sizeof(int64_t));
        }
        if (posix_memalign(&slots, (size_t)2 << 20, bytes) != 0) {
            return NULL;
        }
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        madvise(slots, bytes, MADV_HUGEPAGE);
    #endif
        memset(slots, 0, bytes);
        return (int64_t *)slots;
    }
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define RATEFUSE_TO_LE64(value) __builtin_bswap64(value)
    #else
    #define RATEFUSE_TO_LE64(value) (value)
    #endif
    """
    void prefetch "RATEFUSE_PREFETCH"(const void* address) noexcept nogil
    int64_t* allocate_slots "ratefuse_allocate_slots"(size_t words) noexcept nogil
    uint64_t to_le64 "RATEFUSE_TO_LE64"(uint64_t value) noexcept nogil

cdef enum:
    TAG_STR = 1
    TAG_BYTES = 2
    TAG_INT = 3
    TAG_BIG_INT = 4
    EVICTION_SAMPLE = 16
    MIN_CAPACITY = 16
    PREFETCH_AHEAD = 16

cdef uint64_t TAG_MIX = 0x9E3779B97F4A7C15ULL


# ---- fingerprints (spec: _keys_py.py) ----

cdef inline uint64_t nonzero(uint64_t value) noexcept nogil:
    return value if value != 0 else 1


cdef inline uint64_t int_fingerprint(uint64_t k0, uint64_t k1,
                                     int64_t key) noexcept nogil:
    cdef uint64_t little = to_le64(<uint64_t>key)
    return nonzero(ratefuse_siphash13(k0 ^ (TAG_INT * TAG_MIX), k1, &little, 8))


cdef uint64_t key_fingerprint(uint64_t k0, uint64_t k1, object key) except 0:
    cdef const char* data
    cdef Py_ssize_t size
    cdef int overflow = 0
    cdef long long value
    if PyUnicode_Check(key):
        try:
            data = PyUnicode_AsUTF8AndSize(key, &size)
        except UnicodeEncodeError:  # lone surrogates: still a distinct key
            encoded = key.encode("utf-8", "surrogatepass")
            data, size = PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded)
        return nonzero(ratefuse_siphash13(k0 ^ (TAG_STR * TAG_MIX), k1, data, size))
    if PyBytes_Check(key):
        return nonzero(ratefuse_siphash13(
            k0 ^ (TAG_BYTES * TAG_MIX), k1, PyBytes_AS_STRING(key),
            PyBytes_GET_SIZE(key)))
    if PyLong_Check(key):
        value = PyLong_AsLongLongAndOverflow(key, &overflow)
        if not overflow:
            return int_fingerprint(k0, k1, value)
        encoded = str(int(key)).encode("ascii")
        return nonzero(ratefuse_siphash13(
            k0 ^ (TAG_BIG_INT * TAG_MIX), k1, PyBytes_AS_STRING(encoded),
            PyBytes_GET_SIZE(encoded)))
    raise TypeError(f"key must be str, bytes or int, got {type(key).__name__}")


# ---- the table (spec: _keytable_py.py) ----
# Slot i is `stride` words at slots + i * stride: the fingerprint, then the
# key's state words.

cdef struct Table:
    int64_t* slots
    Py_ssize_t capacity
    uint64_t mask
    Py_ssize_t words
    Py_ssize_t stride
    Py_ssize_t live
    Py_ssize_t max_keys
    Py_ssize_t max_capacity
    Py_ssize_t inserts_since_rebuild
    int64_t evictions
    int64_t expired


cdef Py_ssize_t max_capacity_for(Py_ssize_t max_keys) noexcept nogil:
    cdef Py_ssize_t capacity = MIN_CAPACITY
    while capacity * 3 < max_keys * 4:
        capacity *= 2
    return capacity


cdef inline uint64_t slot_fingerprint(const Table* table,
                                      Py_ssize_t slot) noexcept nogil:
    return <uint64_t>table.slots[slot * table.stride]


cdef inline int64_t* slot_state(const Table* table, Py_ssize_t slot) noexcept nogil:
    return table.slots + slot * table.stride + 1


cdef int table_allocate(Table* table, Py_ssize_t capacity) noexcept nogil:
    # Returns -1 if out of memory (the old slots are then untouched).
    cdef int64_t* slots = allocate_slots(capacity * table.stride)
    if slots == NULL:
        return -1
    table.slots = slots
    table.capacity = capacity
    table.mask = <uint64_t>(capacity - 1)
    return 0


cdef inline Py_ssize_t table_find(const Table* table,
                                  uint64_t fingerprint) noexcept nogil:
    cdef Py_ssize_t slot = <Py_ssize_t>(fingerprint & table.mask)
    cdef uint64_t found
    while True:
        found = slot_fingerprint(table, slot)
        if found == fingerprint:
            return slot
        if found == 0:
            return -1
        slot = <Py_ssize_t>((slot + 1) & table.mask)


cdef Py_ssize_t table_place(Table* table, uint64_t fingerprint,
                            const int64_t* state) noexcept nogil:
    cdef Py_ssize_t slot = <Py_ssize_t>(fingerprint & table.mask)
    while slot_fingerprint(table, slot) != 0:
        slot = <Py_ssize_t>((slot + 1) & table.mask)
    table.slots[slot * table.stride] = <int64_t>fingerprint
    memcpy(slot_state(table, slot), state, table.words * sizeof(int64_t))
    table.live += 1
    return slot


cdef void table_remove(Table* table, Py_ssize_t slot) noexcept nogil:
    cdef Py_ssize_t hole = slot, probe = slot
    cdef uint64_t fingerprint, home
    while True:
        probe = <Py_ssize_t>((probe + 1) & table.mask)
        fingerprint = slot_fingerprint(table, probe)
        if fingerprint == 0:
            break
        home = fingerprint & table.mask
        if ((<uint64_t>probe - home) & table.mask) >= (
            (<uint64_t>probe - <uint64_t>hole) & table.mask
        ):
            memcpy(table.slots + hole * table.stride,
                   table.slots + probe * table.stride,
                   table.stride * sizeof(int64_t))
            hole = probe
    memset(table.slots + hole * table.stride, 0, table.stride * sizeof(int64_t))
    table.live -= 1


cdef int table_rebuild(Table* table, Py_ssize_t capacity, int64_t now,
                       const CompoundLimit* program) noexcept nogil:
    # Rehashes into `capacity` slots, dropping idle states; -1 if out of memory.
    cdef int64_t* old_slots = table.slots
    cdef Py_ssize_t old_capacity = table.capacity, slot
    cdef int64_t* old
    if table_allocate(table, capacity) != 0:
        return -1
    table.live = 0
    for slot in range(old_capacity):
        old = old_slots + slot * table.stride
        if old[0] == 0:
            continue
        if compound_idle_at(program, old + 1) > now:
            table_place(table, <uint64_t>old[0], old + 1)
        else:
            table.expired += 1
    free(old_slots)
    table.inserts_since_rebuild = 0
    return 0


cdef void table_evict_sampled(Table* table, uint64_t fingerprint, int64_t now,
                              const CompoundLimit* program) noexcept nogil:
    # Precondition: the table holds at least one key.
    cdef Py_ssize_t slot = <Py_ssize_t>((fingerprint >> 32) & table.mask)
    cdef Py_ssize_t victim = -1, examined = 0
    cdef int64_t idle, victim_idle = 0
    while examined < EVICTION_SAMPLE or victim < 0:
        if slot_fingerprint(table, slot) != 0:
            idle = compound_idle_at(program, slot_state(table, slot))
            if victim < 0 or idle < victim_idle:
                victim = slot
                victim_idle = idle
        slot = <Py_ssize_t>((slot + 1) & table.mask)
        examined += 1
    table_remove(table, victim)
    if victim_idle > now:
        table.evictions += 1
    else:
        table.expired += 1


cdef Py_ssize_t table_insert(Table* table, uint64_t fingerprint,
                             const int64_t* state, int64_t now,
                             const CompoundLimit* program) noexcept nogil:
    # Precondition: fingerprint is not in the table. -1 if out of memory.
    cdef Py_ssize_t sweep_every = table.max_keys // 4 if table.max_keys >= 4 else 1
    if table.live >= table.max_keys:
        if table.inserts_since_rebuild >= sweep_every:
            if table_rebuild(table, table.capacity, now, program) != 0:
                return -1
        if table.live >= table.max_keys:
            table_evict_sampled(table, fingerprint, now, program)
    elif ((table.live + 1) * 4 > table.capacity * 3
          and table.capacity < table.max_capacity):
        if table_rebuild(table, table.capacity * 2, now, program) != 0:
            return -1
    table.inserts_since_rebuild += 1
    return table_place(table, fingerprint, state)


cdef Py_ssize_t table_decide(Table* table, CompoundLimit* program, int64_t* scratch,
                             uint64_t fingerprint, int64_t now, int64_t cost,
                             StepResult* out) noexcept nogil:
    # One decision for one key; returns the binding spec index, or -1 if the
    # table could not grow (the decision stands, the new key is not kept).
    cdef Py_ssize_t slot = table_find(table, fingerprint), binding
    if slot >= 0:
        if program.count == 1:  # the common case, without a call
            program.specs.step(program.specs, slot_state(table, slot), now, cost,
                               True, out)
            return 0
        return compound_decide(program, slot_state(table, slot), now, cost, out)
    memset(scratch, 0, program.words * sizeof(int64_t))
    binding = compound_decide(program, scratch, now, cost, out)
    if compound_idle_at(program, scratch) > now:
        if table_insert(table, fingerprint, scratch, now, program) < 0:
            return -1
    return binding


cdef Py_ssize_t table_reserve(Table* table, CompoundLimit* program, int64_t* scratch,
                              uint64_t fingerprint, int64_t now, int64_t cost,
                              int64_t max_wait, StepResult* out,
                              int64_t* stamps) noexcept nogil:
    # As table_decide, for a reservation.
    cdef Py_ssize_t slot = table_find(table, fingerprint), binding
    if slot >= 0:
        return compound_reserve(program, slot_state(table, slot), now, cost,
                                max_wait, out, stamps)
    memset(scratch, 0, program.words * sizeof(int64_t))
    binding = compound_reserve(program, scratch, now, cost, max_wait, out, stamps)
    if compound_idle_at(program, scratch) > now:
        if table_insert(table, fingerprint, scratch, now, program) < 0:
            return -1
    return binding

# ---- the engine (spec: _keyed_py.py) ----

cdef class KeyedLimiterCore:
    """`KeyedLimiterCore` decides costs per key against ``specs``.

    ``max_keys`` bounds the live states (see the key table for what happens
    when full); ``clock`` returns integer nanoseconds, None meaning the
    monotonic clock (read in C); ``secret`` (16 bytes) keys the fingerprints,
    None meaning the per-process secret. ``max_wait``, ``sleep`` and
    ``async_sleep`` are as for LimiterCore. Thread-safe: each decision is
    atomic.
    """

    cdef CompoundLimit _program
    cdef Table _table
    cdef int64_t* _scratch
    cdef int64_t* _stamps
    cdef object _max_wait
    cdef int64_t _max_wait_ns
    cdef object _sleep
    cdef object _async_sleep
    cdef uint64_t _k0
    cdef uint64_t _k1
    cdef uint64_t _next_ticket
    cdef uint64_t _now_serving
    cdef tuple _specs
    cdef object _clock
    # Verdicts counted by outcome (index 1: allowed, 0: denied), bumped only
    # by the holder of the table's turn; read by counters().
    cdef int64_t _verdicts[2]
    # Counts the reconfigures that started the table anew.
    cdef int64_t _layout

    def __cinit__(self, *args, **kwargs):
        # Takes any arguments so that Python subclasses may have their own
        # constructor signature.
        memset(&self._program, 0, sizeof(CompoundLimit))
        memset(&self._table, 0, sizeof(Table))
        self._scratch = NULL
        self._stamps = NULL
        self._verdicts[0] = self._verdicts[1] = 0

    def __init__(self, specs, max_keys=DEFAULT_MAX_KEYS, clock=None, secret=None, *,
                 max_wait=None, sleep=None, async_sleep=None):
        if self._scratch != NULL:
            raise TypeError("KeyedLimiterCore.__init__ may be called only once")
        specs = tuple(specs)
        max_keys = check_max_keys(max_keys)
        self._k0, self._k1 = split_secret(PROCESS_SECRET if secret is None else secret)
        compound_init(&self._program, specs)
        self._max_wait_ns = wait_bound_ns(None, max_wait)
        self._max_wait = max_wait
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._scratch = <int64_t*>calloc(self._program.words, sizeof(int64_t))
        self._stamps = <int64_t*>calloc(self._program.count, sizeof(int64_t))
        if self._scratch == NULL or self._stamps == NULL:
            raise MemoryError()
        self._table.words = self._program.words
        self._table.stride = self._program.words + 1
        self._table.max_keys = max_keys
        self._table.max_capacity = max_capacity_for(max_keys)
        if table_allocate(&self._table, MIN_CAPACITY) != 0:
            raise MemoryError()
        self._specs = specs
        self._clock = clock

    def __dealloc__(self):
        compound_free(&self._program)
        free(self._scratch)
        free(self._stamps)
        free(self._table.slots)

    @property
    def clock(self):
        """`clock` is the injected clock, or None for the monotonic clock."""
        return self._clock

    @property
    def max_keys(self):
        """`max_keys` is the most states the table holds."""
        return self._table.max_keys

    @property
    def _specs(self):
        return self._specs

    cdef inline void _enter(self):
        # Takes the table in turn: waits for a batch running without the GIL
        # (see the module comment). Every _enter is paired with one _exit.
        cdef uint64_t ticket = self._next_ticket
        self._next_ticket += 1
        while self._now_serving != ticket:
            with nogil:
                sched_yield()

    cdef inline void _exit(self):
        self._now_serving += 1

    cdef Py_ssize_t _decide(self, uint64_t fingerprint, int64_t cost, int64_t now,
                            StepResult* out) except -2:
        cdef Py_ssize_t binding
        self._enter()
        binding = table_decide(&self._table, &self._program, self._scratch,
                               fingerprint, now, cost, out)
        self._verdicts[out.allowed != 0] += 1
        self._exit()
        if binding < 0:
            raise MemoryError("the key table could not grow")
        return binding

    def try_acquire(self, key, cost=1, now=None):
        """`try_acquire` consumes ``cost`` units of ``key``'s quota if every
        limit admits them and reports whether it did."""
        cdef StepResult verdict
        cdef uint64_t fingerprint = key_fingerprint(self._k0, self._k1, key)
        # The key's slot is likely a cache miss in a large table: start the
        # load now so it overlaps reading the clock.
        prefetch(slot_state(&self._table, <Py_ssize_t>(fingerprint & self._table.mask)))
        cdef int64_t units = to_cost(cost)
        self._decide(fingerprint, units, resolve_now(self._clock, now), &verdict)
        return verdict.allowed

    def decide(self, key, cost=1, now=None):
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        cdef StepResult verdict
        cdef uint64_t fingerprint = key_fingerprint(self._k0, self._k1, key)
        prefetch(slot_state(&self._table, <Py_ssize_t>(fingerprint & self._table.mask)))
        cdef int64_t units = to_cost(cost)
        cdef Py_ssize_t binding = self._decide(
            fingerprint, units, resolve_now(self._clock, now), &verdict
        )
        return make_decision(&verdict, self._program.specs[binding].capacity)

    def reset(self, key):
        """`reset` forgets ``key``: its next decision is as if new."""
        cdef uint64_t fingerprint = key_fingerprint(self._k0, self._k1, key)
        cdef Py_ssize_t slot
        self._enter()
        slot = table_find(&self._table, fingerprint)
        if slot >= 0:
            table_remove(&self._table, slot)
        self._exit()

    def reserve(self, key, cost=1, max_wait=None, now=None):
        """`reserve` sets ``cost`` units of ``key``'s quota aside if they can
        be used within ``max_wait`` seconds (see LimiterCore.reserve)."""
        cdef uint64_t fingerprint = key_fingerprint(self._k0, self._k1, key)
        cdef int64_t units = to_cost(cost)
        cdef int64_t bound = (
            self._max_wait_ns if max_wait is None
            else wait_bound_ns(max_wait, self._max_wait, "max_wait")
        )
        return self._reserve(fingerprint, units, bound,
                             resolve_now(self._clock, now))

    cdef object _reserve(self, uint64_t fingerprint, int64_t units, int64_t bound,
                         int64_t now, bint none_if_now=False):
        # With none_if_now, units admitted with no wait return None instead
        # of a reservation: acquire's fast path builds nothing to throw away.
        cdef StepResult verdict
        cdef Py_ssize_t binding
        cdef int64_t capacity = 0, layout = self._layout
        stamps = None
        self._enter()
        try:
            binding = table_reserve(&self._table, &self._program, self._scratch,
                                    fingerprint, now, units, bound, &verdict,
                                    self._stamps)
            self._verdicts[verdict.allowed != 0] += 1
            # What the reservation needs from the program, read while no
            # reconfigure can swap it.
            layout = self._layout
            if binding >= 0:
                capacity = self._program.specs[binding].capacity
            if not (none_if_now and verdict.allowed and verdict.retry_after_ns == 0):
                # Read the shared stamps while the table is still ours.
                stamps = tuple([self._stamps[index]
                                for index in range(self._program.count)])
        finally:
            self._exit()
        if binding < 0:
            raise MemoryError("the key table could not grow")
        if stamps is None:
            return None
        return make_reservation(
            &verdict, capacity,
            partial(self._refund, fingerprint, units, stamps, layout),
        )

    def acquire(self, key, cost=1, timeout=None):
        """`acquire` takes ``cost`` units of ``key``'s quota, sleeping until
        they are admitted (see LimiterCore.acquire)."""
        cdef uint64_t fingerprint = key_fingerprint(self._k0, self._k1, key)
        cdef int64_t units = to_cost(cost)
        cdef int64_t bound = (
            self._max_wait_ns if timeout is None
            else wait_bound_ns(timeout, self._max_wait)
        )
        first = self._reserve(fingerprint, units, bound,
                              resolve_now(self._clock, None), True)
        if first is None:
            return None  # the fast path: admitted now, nothing to build
        wait(first, partial(self.reserve, key, cost), self._clock_ns,
             acquire_timeout(timeout, self._max_wait), self._sleep)

    def acquire_async(self, key, cost=1, timeout=None):
        """`acquire_async` is `acquire` for asyncio: ``await`` it."""
        cdef uint64_t fingerprint = key_fingerprint(self._k0, self._k1, key)
        cdef int64_t units = to_cost(cost)
        cdef int64_t bound = (
            self._max_wait_ns if timeout is None
            else wait_bound_ns(timeout, self._max_wait)
        )
        first = self._reserve(fingerprint, units, bound,
                              resolve_now(self._clock, None))
        return wait_async(first, partial(self.reserve, key, cost), self._clock_ns,
                          acquire_timeout(timeout, self._max_wait), self._async_sleep)

    def _clock_ns(self):
        return resolve_now(self._clock, None)

    def _refund(self, uint64_t fingerprint, int64_t cost, tuple stamps,
                int64_t layout, now):
        cdef int64_t at = resolve_now(self._clock, now)
        cdef Py_ssize_t index, slot
        # self._stamps is shared: fill it only once the table is ours (a
        # reservation served before us would overwrite it meanwhile).
        self._enter()
        try:
            if layout != self._layout:
                return  # the table was started anew since: nothing to refund
            for index in range(self._program.count):
                self._stamps[index] = stamps[index]
            slot = table_find(&self._table, fingerprint)
            if slot >= 0:  # an evicted or dropped key has nothing to refund
                compound_refund(&self._program, slot_state(&self._table, slot), at,
                                cost, self._stamps)
        finally:
            self._exit()

    def stats(self):
        """`stats` reports ``live_keys``, ``max_keys``, ``capacity`` (slots),
        ``evictions`` (states removed before they were idle: the only
        over-admission), ``expired`` (idle states dropped, harmlessly) and
        ``memory_bytes`` (the table's slots: 8 bytes per word)."""
        return {
            "live_keys": self._table.live,
            "max_keys": self._table.max_keys,
            "capacity": self._table.capacity,
            "evictions": self._table.evictions,
            "expired": self._table.expired,
            "memory_bytes": self._table.capacity * self._table.stride * 8,
        }

    def decide_many(self, keys, costs=None, now=None, retry_after=False):
        """`decide_many` decides every key in order, as consecutive
        `try_acquire` calls at one time, and returns a numpy bool array
        (and, if ``retry_after``, a float64 array of seconds).

        ``keys``: a numpy int64 array of key ids (the same keys as Python
        ints; hashed and decided without the GIL) or a sequence of keys;
        ``costs``: None (each 1), an int, or one per key. Needs numpy.
        Nothing is decided if any key or cost is invalid.
        """
        numpy = _numpy_module()
        cdef Py_ssize_t count, index
        cdef const int64_t[::1] ids = None
        cdef uint64_t[::1] fingerprints = None
        if (isinstance(keys, numpy.ndarray) and keys.dtype == numpy.int64
                and keys.ndim == 1):
            ids = numpy.ascontiguousarray(keys)
            count = ids.shape[0]
        else:
            key_list = keys.tolist() if isinstance(keys, numpy.ndarray) else list(keys)
            count = len(key_list)
            fingerprints = numpy.empty(count, dtype=numpy.uint64)
            for index in range(count):
                fingerprints[index] = key_fingerprint(self._k0, self._k1,
                                                      key_list[index])
        cdef const int64_t[::1] units = _costs(numpy, costs, count)
        cdef int64_t at = resolve_now(self._clock, now)
        allowed_bytes = numpy.empty(count, dtype=numpy.uint8)
        waits_array = (
            numpy.empty(count, dtype=numpy.float64) if retry_after else _NO_WAITS
        )
        cdef unsigned char[::1] allowed = allowed_bytes
        cdef double[::1] waits = waits_array
        cdef bint failed
        cdef bint want_waits = retry_after
        self._enter()
        with nogil:
            failed = self._decide_batch(ids, fingerprints, count, units, at,
                                        allowed, waits, want_waits)
        self._exit()
        if failed:
            raise MemoryError("the key table could not grow")
        allowed_array = allowed_bytes.view(numpy.bool_)
        return (allowed_array, waits_array) if retry_after else allowed_array

    cdef bint _decide_batch(self, const int64_t[::1] ids,
                            const uint64_t[::1] fingerprints, Py_ssize_t count,
                            const int64_t[::1] units, int64_t now,
                            unsigned char[::1] allowed, double[::1] waits,
                            bint want_waits) noexcept nogil:
        # Decides `count` keys given as `ids` (hashed here, ahead of use) or
        # as `fingerprints`. Slots are prefetched PREFETCH_AHEAD keys ahead
        # so that cache misses on a large table overlap. Precondition: the
        # caller holds the busy flag. Returns True if the table could not grow.
        cdef Py_ssize_t index, ahead
        cdef bint by_id = fingerprints is None
        cdef bint per_key_costs = units.shape[0] == count
        cdef uint64_t upcoming[PREFETCH_AHEAD]
        cdef uint64_t fingerprint
        cdef StepResult verdict
        cdef Table* table = &self._table
        cdef int64_t admitted = 0
        for index in range(count if count < PREFETCH_AHEAD else PREFETCH_AHEAD):
            upcoming[index] = (int_fingerprint(self._k0, self._k1, ids[index])
                               if by_id else fingerprints[index])
            prefetch(slot_state(table, <Py_ssize_t>(upcoming[index] & table.mask)))
        for index in range(count):
            fingerprint = upcoming[index % PREFETCH_AHEAD]
            ahead = index + PREFETCH_AHEAD
            if ahead < count:
                upcoming[ahead % PREFETCH_AHEAD] = (
                    int_fingerprint(self._k0, self._k1, ids[ahead])
                    if by_id else fingerprints[ahead]
                )
                prefetch(slot_state(
                    table, <Py_ssize_t>(upcoming[ahead % PREFETCH_AHEAD] & table.mask)
                ))
            if table_decide(table, &self._program, self._scratch, fingerprint, now,
                            units[index] if per_key_costs else units[0],
                            &verdict) < 0:
                self._count_batch(index, admitted)
                return True
            allowed[index] = verdict.allowed
            admitted += verdict.allowed != 0
            if want_waits:
                waits[index] = (
                    INFINITY if verdict.retry_after_ns == NEVER
                    else <double>verdict.retry_after_ns / 1e9
                )
        self._count_batch(count, admitted)
        return False

    cdef inline void _count_batch(self, Py_ssize_t decided,
                                  int64_t admitted) noexcept nogil:
        # Precondition: the caller holds the table's turn.
        self._verdicts[1] += admitted
        self._verdicts[0] += decided - admitted

    def counters(self):
        """`counters` snapshots the verdicts counted since construction, one
        per key of decide_many (see ratefuse.core.counters.LimiterCounters)."""
        return LimiterCounters(self._verdicts[1], self._verdicts[0])

    def reconfigure(self, specs):
        """`reconfigure` replaces the limits of every key in one atomic step:
        each decision, and each decide_many batch as a whole, runs under the
        old specs or the new ones, never a mix.

        Every key's state is kept when it means the same under the new specs
        (see ratefuse.core.respec.keeps_state); otherwise the table starts empty,
        as if every key were reset, and reservations taken before refund
        nothing. Counters, evictions and max_keys are kept. Raises ValueError
        for bad specs, and then nothing changes.
        """
        cdef CompoundLimit program
        specs = tuple(specs)
        memset(&program, 0, sizeof(CompoundLimit))
        try:
            compound_init(&program, specs)
            while True:
                judged = self._specs
                if self._swap(&program, specs, judged, keeps_state(judged, specs)):
                    break
                # Another reconfigure came in between: judge again.
        finally:
            compound_free(&program)  # the retired program, or the unused one

    cdef bint _swap(self, CompoundLimit* program, tuple specs, tuple judged,
                    bint keep) except -1:
        # Installs *program (leaving the retired one in it) if the specs are
        # still `judged`; returns False otherwise. The swap happens in the
        # table's turn, so no decide_many batch (running without the GIL) and
        # no single decision sees a half-changed engine.
        cdef Table fresh = self._table
        cdef CompoundLimit retired
        cdef int64_t* scratch = <int64_t*>calloc(program.words, sizeof(int64_t))
        cdef int64_t* stamps = <int64_t*>calloc(program.count, sizeof(int64_t))
        cdef int64_t* old_slots = NULL
        fresh.slots = NULL
        if not keep:
            fresh.words = program.words
            fresh.stride = program.words + 1
            fresh.live = 0
            fresh.inserts_since_rebuild = 0
            if table_allocate(&fresh, MIN_CAPACITY) != 0:
                fresh.slots = NULL
        if scratch == NULL or stamps == NULL or (not keep and fresh.slots == NULL):
            free(scratch)
            free(stamps)
            free(fresh.slots)
            raise MemoryError()
        self._enter()
        if judged is not self._specs:
            self._exit()
            free(scratch)
            free(stamps)
            free(fresh.slots)
            return False
        retired = self._program
        self._program = program[0]
        program[0] = retired
        scratch, self._scratch = self._scratch, scratch
        stamps, self._stamps = self._stamps, stamps
        if not keep:
            old_slots = self._table.slots
            fresh.evictions = self._table.evictions
            fresh.expired = self._table.expired
            self._table = fresh
            self._layout += 1
        self._specs = specs
        self._exit()
        free(scratch)
        free(stamps)
        free(old_slots)
        return True


_numpy = None
_ONE_COST = None
_NO_WAITS = None


cdef object _numpy_module():
    # numpy, imported on first use (it is an optional extra), with the
    # constant arrays decide_many reuses on every call.
    global _numpy, _ONE_COST, _NO_WAITS
    if _numpy is None:
        from ratefuse.engine._keyed_py import _numpy as import_numpy
        numpy = import_numpy()
        _ONE_COST = numpy.ones(1, dtype=numpy.int64)
        _ONE_COST.flags.writeable = False
        _NO_WAITS = numpy.empty(0, dtype=numpy.float64)
        _numpy = numpy
    return _numpy


def _costs(numpy, costs, Py_ssize_t count):
    # One cost for every key (an array of one), or one per key, validated.
    if costs is None:
        return _ONE_COST
    if isinstance(costs, numpy.ndarray) and costs.ndim == 0:
        costs = costs.item()  # a 0-d array is one cost, as in the reference
    if isinstance(costs, (int, numpy.integer)):
        return numpy.full(1, to_cost(costs), dtype=numpy.int64)
    if isinstance(costs, numpy.ndarray) and costs.dtype.kind in "iu":
        if costs.shape != (count,):
            raise ValueError(
                f"costs must have one cost per key: got shape {costs.shape} "
                f"for {count} keys"
            )
        if costs.dtype.kind == "i" and count and costs.min() < 0:
            raise ValueError(f"cost must be >= 0, got {costs.min()}")
        if costs.dtype.kind == "u" and count and costs.max() > (1 << 63) - 1:
            raise ValueError(f"cost must be in [0, 2**63), got {costs.max()}")
        return numpy.ascontiguousarray(costs, dtype=numpy.int64)
    listed = costs.tolist() if isinstance(costs, numpy.ndarray) else list(costs)
    if len(listed) != count:
        raise ValueError(
            f"costs must have one cost per key: got {len(listed)} for {count} keys"
        )
    units = numpy.empty(count, dtype=numpy.int64)
    for index in range(count):
        units[index] = to_cost(listed[index])
    return units
