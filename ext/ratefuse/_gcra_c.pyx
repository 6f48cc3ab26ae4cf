# GCRA, compiled. The spec is src/ratefuse/_gcra_py.py: same decisions.
from libc.stdint cimport int64_t

from ratefuse._step cimport NEVER, CSpec, Verdict


cdef void gcra_step(const CSpec* spec, int64_t* state, int64_t now,
                    int64_t cost, bint commit, Verdict* out) noexcept nogil:
    cdef int64_t interval = spec.interval_ns
    cdef int64_t tau = interval * spec.capacity
    cdef int64_t tat = state[0]
    cdef int64_t start = tat if tat > now else now
    cdef int64_t new_tat
    if cost > spec.capacity:
        out.allowed = False
        out.retry_after_ns = NEVER
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
    # The backlog exceeds tau only if time stepped back; nothing is left then.
    if out.reset_after_ns <= tau:
        out.remaining = (tau - out.reset_after_ns) // interval
    else:
        out.remaining = 0
