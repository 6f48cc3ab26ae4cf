# GCRA, compiled. The spec is src/ratefuse/core/algorithms/_gcra_py.py: same decisions.
from libc.stdint cimport int64_t

from ratefuse.core._step cimport NEVER, CSpec, StepFunctions, StepResult
from ratefuse.core._step cimport deny, remaining_below


cdef void gcra_step(const CSpec* spec, int64_t* state, int64_t now,
                    int64_t cost, bint commit, StepResult* out) noexcept nogil:
    cdef int64_t interval = spec.interval_ns
    cdef int64_t tau = interval * spec.capacity
    cdef int64_t tat = state[0]
    cdef int64_t start = tat if tat > now else now
    cdef int64_t new_tat
    if cost > spec.capacity:
        deny(out, NEVER)
    else:
        new_tat = start + cost * interval
        out.allowed = new_tat - now <= tau
        if out.allowed:
            out.retry_after_ns = 0
            if commit:
                state[0] = new_tat
                start = new_tat
        else:
            out.retry_after_ns = new_tat - tau - now
    out.reset_after_ns = start - now
    out.remaining = remaining_below(tau, start - now, interval)


cdef int64_t gcra_idle_at(const CSpec* spec,
                          const int64_t* state) noexcept nogil:
    return state[0]


cdef void gcra_reserve(const CSpec* spec, int64_t* state, int64_t now,
                       int64_t cost, int64_t max_wait, bint commit,
                       StepResult* out) noexcept nogil:
    cdef int64_t interval = spec.interval_ns
    cdef int64_t tau = interval * spec.capacity
    cdef int64_t tat = state[0]
    cdef int64_t start = tat if tat > now else now
    cdef int64_t new_tat, delay, end
    out.stamp = 0
    if cost > spec.capacity:
        deny(out, NEVER)
        out.reset_after_ns = start - now
        out.remaining = remaining_below(tau, start - now, interval)
        return
    new_tat = start + cost * interval
    delay = new_tat - tau - now if new_tat - tau > now else 0
    out.allowed = delay <= max_wait
    if out.allowed and commit:
        state[0] = new_tat
    end = new_tat if out.allowed else start
    out.retry_after_ns = delay
    out.reset_after_ns = end - now
    out.remaining = remaining_below(tau, end - now, interval)
    out.stamp = new_tat


cdef void gcra_refund(const CSpec* spec, int64_t* state, int64_t now,
                      int64_t cost, int64_t stamp) noexcept nogil:
    cdef int64_t refund = cost * spec.interval_ns
    if stamp - now < refund:
        refund = stamp - now
    if refund > 0:
        state[0] -= refund


STEP_FUNCTIONS = StepFunctions(
    b"gcra", gcra_step, gcra_idle_at,
    gcra_reserve, gcra_refund)
