# The key table, compiled, inlined into the keyed engine (_keyed_c). The spec
# is src/ratefuse/core/_keytable_py.py: an open-addressing table of fixed-size
# states keyed by fingerprints (_keys.pxd), linear probing, backward-shift
# deletion, bounded by max_keys with sampled eviction. Not thread-safe: the
# engine takes the table in turn.
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memset

from ratefuse.core._compound_c cimport (
    CompoundLimit,
    compound_decide,
    compound_idle_at,
    compound_reserve,
)
from ratefuse.core._step cimport StepResult

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
    """
    void prefetch "RATEFUSE_PREFETCH"(const void* address) noexcept nogil
    int64_t* allocate_slots "ratefuse_allocate_slots"(size_t words) noexcept nogil

cdef enum:
    EVICTION_SAMPLE = 16
    MIN_CAPACITY = 16

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


cdef inline Py_ssize_t max_capacity_for(Py_ssize_t max_keys) noexcept nogil:
    cdef Py_ssize_t capacity = MIN_CAPACITY
    while capacity * 3 < max_keys * 4:
        capacity *= 2
    return capacity


cdef inline uint64_t slot_fingerprint(const Table* table,
                                      Py_ssize_t slot) noexcept nogil:
    return <uint64_t>table.slots[slot * table.stride]


cdef inline int64_t* slot_state(const Table* table, Py_ssize_t slot) noexcept nogil:
    return table.slots + slot * table.stride + 1


cdef inline int table_allocate(Table* table, Py_ssize_t capacity) noexcept nogil:
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


cdef inline Py_ssize_t table_place(Table* table, uint64_t fingerprint,
                                   const int64_t* state) noexcept nogil:
    cdef Py_ssize_t slot = <Py_ssize_t>(fingerprint & table.mask)
    while slot_fingerprint(table, slot) != 0:
        slot = <Py_ssize_t>((slot + 1) & table.mask)
    table.slots[slot * table.stride] = <int64_t>fingerprint
    memcpy(slot_state(table, slot), state, table.words * sizeof(int64_t))
    table.live += 1
    return slot


cdef inline void table_remove(Table* table, Py_ssize_t slot) noexcept nogil:
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


cdef inline int table_rebuild(Table* table, Py_ssize_t capacity, int64_t now,
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


cdef inline void table_evict_sampled(Table* table, uint64_t fingerprint, int64_t now,
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


cdef inline Py_ssize_t table_insert(Table* table, uint64_t fingerprint,
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


cdef inline Py_ssize_t table_decide(Table* table, CompoundLimit* program,
                                    int64_t* scratch, uint64_t fingerprint,
                                    int64_t now, int64_t cost,
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


cdef inline Py_ssize_t table_reserve(Table* table, CompoundLimit* program,
                                     int64_t* scratch, uint64_t fingerprint,
                                     int64_t now, int64_t cost, int64_t max_wait,
                                     StepResult* out,
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
