# The keyed limiter engine, compiled. The specs are
# src/ratefuse/engine/_keyed_py.py and _verbs_py.py: same names, signatures,
# errors and decisions, evictions included. The verbs are Verbs'
# (_verbs_c.pyx); the key fingerprints are in core/_keys.pxd, the table in
# core/_keytable.pxd and the batch loop of decide_many in _keyed_batch.pxd.
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
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from ratefuse.core._args cimport resolve_now, to_cost
from ratefuse.core._decision_c cimport make_reservation
from ratefuse.core._compound_c cimport (
    CompoundLimit,
    compound_free,
    compound_init,
    compound_refund,
)
from ratefuse.core._keys cimport key_fingerprint
from ratefuse.core._keytable cimport (
    MIN_CAPACITY,
    Table,
    max_capacity_for,
    prefetch,
    slot_state,
    table_allocate,
    table_decide,
    table_find,
    table_remove,
    table_reserve,
)
from ratefuse.core._step cimport StepResult
from ratefuse.engine._keyed_batch cimport decide_batch
from ratefuse.engine._verbs_c cimport Verbs, acquire_at, decision_at

from functools import partial

from ratefuse.core._decision_c import Decision
from ratefuse.core.keys import (
    DEFAULT_MAX_KEYS,
    PROCESS_SECRET,
    check_max_keys,
    split_secret,
)
from ratefuse.core.respec import keeps_state
from ratefuse.engine.batch import batch_costs, batch_keys, import_numpy, one_cost

__all__ = ["Decision", "KeyedLimiterCore"]

cdef enum:
    # Stamps of a reservation of up to this many limits are copied on the
    # stack; more go to malloc'd memory.
    STAMPS_ON_STACK = 8

cdef extern from "<sched.h>":
    int sched_yield() noexcept nogil


cdef class KeyedLimiterCore(Verbs):
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
    cdef uint64_t _k0
    cdef uint64_t _k1
    cdef uint64_t _next_ticket
    cdef uint64_t _now_serving
    cdef tuple _specs
    # The reset epoch: counts the reconfigures that started the table anew.
    cdef int64_t _epoch

    def __cinit__(self, *args, **kwargs):
        memset(&self._program, 0, sizeof(CompoundLimit))
        memset(&self._table, 0, sizeof(Table))
        self._scratch = NULL
        self._stamps = NULL

    def __init__(self, specs, max_keys=DEFAULT_MAX_KEYS, clock=None, secret=None, *,
                 max_wait=None, sleep=None, async_sleep=None):
        if self._scratch != NULL:
            raise TypeError("KeyedLimiterCore.__init__ may be called only once")
        specs = tuple(specs)
        max_keys = check_max_keys(max_keys)
        self._k0, self._k1 = split_secret(PROCESS_SECRET if secret is None else secret)
        compound_init(&self._program, specs)
        self._init_waits(clock, max_wait, sleep, async_sleep)
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

    def __dealloc__(self):
        compound_free(&self._program)
        free(self._scratch)
        free(self._stamps)
        free(self._table.slots)

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

    def try_acquire(self, key, cost=1, now=None):
        """`try_acquire` consumes ``cost`` units of ``key``'s quota if every
        limit admits them and reports whether it did."""
        cdef StepResult verdict
        cdef uint64_t fingerprint = key_fingerprint(self._k0, self._k1, key)
        # The key's slot is likely a cache miss in a large table: start the
        # load now so it overlaps reading the clock.
        prefetch(slot_state(&self._table, <Py_ssize_t>(fingerprint & self._table.mask)))
        cdef int64_t units = to_cost(cost)
        self._step(fingerprint, units, resolve_now(self._clock, now), &verdict)
        return verdict.allowed

    def decide(self, key, cost=1, now=None):
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        cdef uint64_t fingerprint = key_fingerprint(self._k0, self._k1, key)
        prefetch(slot_state(&self._table, <Py_ssize_t>(fingerprint & self._table.mask)))
        return decision_at(self, fingerprint, cost, now)

    def reserve(self, key, cost=1, max_wait=None, now=None):
        """`reserve` sets ``cost`` units of ``key``'s quota aside if they can
        be used within ``max_wait`` seconds (see LimiterCore.reserve)."""
        return self._reservation(key_fingerprint(self._k0, self._k1, key), cost,
                                 max_wait, now)

    def acquire(self, key, cost=1, timeout=None):
        """`acquire` takes ``cost`` units of ``key``'s quota, sleeping until
        they are admitted (see LimiterCore.acquire)."""
        return acquire_at(self, key_fingerprint(self._k0, self._k1, key), key,
                          True, cost, timeout)

    def acquire_async(self, key, cost=1, timeout=None):
        """`acquire_async` is `acquire` for asyncio: ``await`` it."""
        return self._acquire_async(key_fingerprint(self._k0, self._k1, key), key,
                                   True, cost, timeout)

    def reset(self, key):
        """`reset` forgets ``key``: its next decision is as if new."""
        self._forget(key_fingerprint(self._k0, self._k1, key))

    cdef int64_t _step(self, uint64_t where, int64_t cost, int64_t now,
                       StepResult* out) except -1:
        cdef Py_ssize_t binding
        self._enter()
        binding = table_decide(&self._table, &self._program, self._scratch,
                               where, now, cost, out)
        self._outcome_counts[out.allowed != 0] += 1
        self._exit()
        if binding < 0:
            raise MemoryError("the key table could not grow")
        return self._program.specs[binding].capacity

    cdef int _forget(self, uint64_t where) except -1:
        cdef Py_ssize_t slot
        self._enter()
        slot = table_find(&self._table, where)
        if slot >= 0:
            table_remove(&self._table, slot)
        self._exit()
        return 0

    cdef object _reserve(self, uint64_t where, int64_t units, int64_t bound,
                         int64_t now, bint none_if_now):
        # No Python object is made while the table is ours: an allocation may
        # run the garbage collector, hence a finalizer (or, through it, a
        # signal handler) that decides on this limiter, and it would wait
        # for the turn this thread holds, for ever. The stamps are copied to
        # C memory in the turn and become a tuple after it.
        cdef StepResult verdict
        cdef Py_ssize_t binding, count = 0, index
        cdef int64_t capacity = 0, epoch
        cdef int64_t few[STAMPS_ON_STACK]
        cdef int64_t* stamps = few
        cdef bint wanted
        self._enter()
        binding = table_reserve(&self._table, &self._program, self._scratch,
                                where, now, units, bound, &verdict, self._stamps)
        self._outcome_counts[verdict.allowed != 0] += 1
        # What the reservation needs from the program, read while no
        # reconfigure can swap it.
        epoch = self._epoch
        if binding >= 0:
            capacity = self._program.specs[binding].capacity
        wanted = not (none_if_now and verdict.allowed
                      and verdict.retry_after_ns == 0)
        if wanted and binding >= 0:
            count = self._program.count
            if count > STAMPS_ON_STACK:
                stamps = <int64_t*>malloc(count * sizeof(int64_t))
            if stamps != NULL:
                memcpy(stamps, self._stamps, count * sizeof(int64_t))
        self._exit()
        if binding < 0:
            raise MemoryError("the key table could not grow")
        if not wanted:
            return None
        if stamps == NULL:
            raise MemoryError()
        try:
            stamp_tuple = tuple([stamps[index] for index in range(count)])
        finally:
            if stamps != few:
                free(stamps)
        return make_reservation(
            &verdict, capacity,
            partial(self._refund, where, units, stamp_tuple, epoch),
        )

    def _refund(self, uint64_t fingerprint, int64_t cost, tuple stamps,
                int64_t epoch, now):
        cdef int64_t at = resolve_now(self._clock, now)
        cdef Py_ssize_t index, slot, count = len(stamps)
        cdef int64_t few[STAMPS_ON_STACK]
        cdef int64_t* words = few
        # The stamps go to C memory before the turn (see _reserve: nothing
        # made or converted while the table is ours).
        if count > STAMPS_ON_STACK:
            words = <int64_t*>malloc(count * sizeof(int64_t))
            if words == NULL:
                raise MemoryError()
        try:
            for index in range(count):
                words[index] = stamps[index]
            self._enter()
            # An epoch unchanged means the same layout, hence `count` stamps.
            if epoch == self._epoch:
                slot = table_find(&self._table, fingerprint)
                if slot >= 0:  # an evicted or dropped key has nothing to refund
                    compound_refund(&self._program, slot_state(&self._table, slot),
                                    at, cost, words)
            self._exit()
        finally:
            if words != few:
                free(words)

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
            key_list = batch_keys(numpy, keys)
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
        cdef bint want_waits = retry_after
        cdef const int64_t* id_words = &ids[0] if ids is not None and count else NULL
        cdef const uint64_t* fingerprint_words = (
            &fingerprints[0] if fingerprints is not None and count else NULL
        )
        cdef unsigned char* allowed_words = &allowed[0] if count else NULL
        cdef double* wait_words = &waits[0] if want_waits and count else NULL
        cdef const int64_t* unit_words = &units[0] if units.shape[0] else NULL
        cdef Py_ssize_t decided
        cdef int64_t admitted = 0
        self._enter()
        with nogil:
            decided = decide_batch(
                &self._table, &self._program, self._scratch, self._k0, self._k1,
                id_words, fingerprint_words, count, unit_words,
                units.shape[0] == count, at, allowed_words, wait_words, &admitted,
            )
            self._outcome_counts[1] += admitted
            self._outcome_counts[0] += decided - admitted
        self._exit()
        if decided < count:
            raise MemoryError("the key table could not grow")
        allowed_array = allowed_bytes.view(numpy.bool_)
        return (allowed_array, waits_array) if retry_after else allowed_array

    def counters(self):
        """`counters` snapshots the decisions counted since construction, one
        per key of decide_many (see ratefuse.core.counters.LimiterCounters)."""
        return Verbs.counters(self)

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
            self._epoch += 1
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
        numpy = import_numpy()
        _ONE_COST = numpy.ones(1, dtype=numpy.int64)
        _ONE_COST.flags.writeable = False
        _NO_WAITS = numpy.empty(0, dtype=numpy.float64)
        _numpy = numpy
    return _numpy


def _costs(numpy, costs, Py_ssize_t count):
    # One cost for every key (an array of one), or one per key, validated
    # as the reference does (ratefuse/engine/batch.py); an integer array
    # is checked whole, without a Python int per key.
    cost = one_cost(numpy, costs)
    if cost is not None:
        return _ONE_COST if cost == 1 else numpy.full(1, cost, dtype=numpy.int64)
    if (isinstance(costs, numpy.ndarray) and costs.dtype.kind in "iu"
            and costs.shape == (count,)):
        if costs.dtype.kind == "i" and count and costs.min() < 0:
            raise ValueError(f"cost must be >= 0, got {costs.min()}")
        if costs.dtype.kind == "u" and count and costs.max() > (1 << 63) - 1:
            raise ValueError(f"cost must be in [0, 2**63), got {costs.max()}")
        return numpy.ascontiguousarray(costs, dtype=numpy.int64)
    return numpy.array(batch_costs(numpy, costs, count), dtype=numpy.int64)
