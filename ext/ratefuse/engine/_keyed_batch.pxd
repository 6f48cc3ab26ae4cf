# The batch path of the keyed engine (decide_many's loop), compiled and
# inlined into _keyed_c. The spec is KeyedLimiterCore.decide_many in
# src/ratefuse/engine/_keyed_py.py: consecutive decisions at one time.
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint64_t

from ratefuse.core._compound_c cimport CompoundLimit
from ratefuse.core._keys cimport int_fingerprint
from ratefuse.core._keytable cimport Table, prefetch, slot_state, table_decide
from ratefuse.core._step cimport NEVER, StepResult

cdef enum:
    PREFETCH_AHEAD = 16


cdef inline uint64_t upcoming_fingerprint(uint64_t k0, uint64_t k1,
                                          const int64_t* ids,
                                          const uint64_t* fingerprints,
                                          Py_ssize_t index) noexcept nogil:
    if ids != NULL:
        return int_fingerprint(k0, k1, ids[index])
    return fingerprints[index]


cdef inline Py_ssize_t decide_batch(Table* table, CompoundLimit* program,
                                    int64_t* scratch, uint64_t k0, uint64_t k1,
                                    const int64_t* ids,
                                    const uint64_t* fingerprints, Py_ssize_t count,
                                    const int64_t* units, bint per_key_costs,
                                    int64_t now, unsigned char* allowed,
                                    double* waits, int64_t* admitted) noexcept nogil:
    # Decides `count` keys given as `ids` (hashed here, ahead of use) or as
    # `fingerprints` (the other is NULL); `units` holds one cost per key or
    # one for all; `waits` may be NULL. Slots are prefetched PREFETCH_AHEAD
    # keys ahead so that cache misses on a large table overlap.
    # Precondition: the caller holds the table's turn. Returns the keys
    # decided (fewer than count if the table could not grow) and adds the
    # admitted ones to *admitted.
    cdef Py_ssize_t index, ahead
    cdef uint64_t upcoming[PREFETCH_AHEAD]
    cdef uint64_t fingerprint
    cdef StepResult verdict
    for index in range(count if count < PREFETCH_AHEAD else PREFETCH_AHEAD):
        upcoming[index] = upcoming_fingerprint(k0, k1, ids, fingerprints, index)
        prefetch(slot_state(table, <Py_ssize_t>(upcoming[index] & table.mask)))
    for index in range(count):
        fingerprint = upcoming[index % PREFETCH_AHEAD]
        ahead = index + PREFETCH_AHEAD
        if ahead < count:
            upcoming[ahead % PREFETCH_AHEAD] = upcoming_fingerprint(
                k0, k1, ids, fingerprints, ahead
            )
            prefetch(slot_state(
                table, <Py_ssize_t>(upcoming[ahead % PREFETCH_AHEAD] & table.mask)
            ))
        if table_decide(table, program, scratch, fingerprint, now,
                        units[index] if per_key_costs else units[0],
                        &verdict) < 0:
            return index
        allowed[index] = verdict.allowed
        admitted[0] += verdict.allowed != 0
        if waits != NULL:
            waits[index] = (
                INFINITY if verdict.retry_after_ns == NEVER
                else <double>verdict.retry_after_ns / 1e9
            )
    return count
