# Sliding log, compiled. The spec is
# src/ratefuse/core/algorithms/_sliding_log_py.py: same decisions. State
# words: head, count, total, then `limit` (time, cost) pairs.
from libc.stdint cimport int64_t

from ratefuse.core._step cimport NEVER, CSpec, StepFunctions, StepResult
from ratefuse.core._step cimport admit, deny, reserve_now

cdef enum:
    HEAD = 0
    COUNT = 1
    TOTAL = 2
    RING = 3


cdef void sliding_log_step(const CSpec* spec, int64_t* state, int64_t now,
                           int64_t cost, bint commit, StepResult* out) noexcept nogil:
    cdef int64_t period = spec.period_ns
    cdef int64_t limit = spec.capacity
    cdef int64_t head = state[HEAD]
    cdef int64_t count = state[COUNT]
    cdef int64_t total = state[TOTAL]
    cdef int64_t* ring = state + RING
    cdef int64_t newest, slot
    while count > 0 and ring[2 * head] + period <= now:
        total -= ring[2 * head + 1]
        head = (head + 1) % limit
        count -= 1
    newest = ring[2 * ((head + count - 1) % limit)] if count > 0 else now
    if cost > limit:
        deny(out, NEVER)
    elif total + cost <= limit:
        admit(out)
        if cost > 0 and commit:
            newest = newest if newest > now else now
            slot = 2 * ((head + count) % limit)
            ring[slot] = newest
            ring[slot + 1] = cost
            count += 1
            total += cost
    else:
        deny(out, expiry_freeing(ring, limit, head, total + cost - limit)
             + period - now)
    if commit:
        state[HEAD] = head
        state[COUNT] = count
        state[TOTAL] = total
    out.remaining = limit - total
    out.reset_after_ns = newest + period - now if count > 0 else 0


cdef inline int64_t expiry_freeing(const int64_t* ring, int64_t limit,
                                   int64_t head, int64_t excess) noexcept nogil:
    # The stamp of the entry whose expiry frees `excess` units.
    # Precondition: the live entries hold at least `excess`.
    cdef int64_t freed = 0
    while True:
        freed += ring[2 * head + 1]
        if freed >= excess:
            return ring[2 * head]
        head = (head + 1) % limit


cdef void sliding_log_reserve(const CSpec* spec, int64_t* state, int64_t now,
                              int64_t cost, int64_t max_wait, bint commit,
                              StepResult* out) noexcept nogil:
    # Stamp 0: the refund gives nothing back, so it needs none.
    reserve_now(sliding_log_step, spec, state, now, cost, commit, 0, out)


cdef int64_t sliding_log_idle_at(const CSpec* spec,
                                 const int64_t* state) noexcept nogil:
    cdef int64_t count = state[COUNT]
    if count == 0:
        return 0
    cdef int64_t newest_slot = (state[HEAD] + count - 1) % spec.capacity
    return state[RING + 2 * newest_slot] + spec.period_ns


cdef void sliding_log_refund(const CSpec* spec, int64_t* state, int64_t now,
                             int64_t cost, int64_t stamp) noexcept nogil:
    pass  # the log keeps the entry; see the reference


STEP_FUNCTIONS = StepFunctions(
    b"sliding_log", sliding_log_step, sliding_log_idle_at,
    sliding_log_reserve, sliding_log_refund)
