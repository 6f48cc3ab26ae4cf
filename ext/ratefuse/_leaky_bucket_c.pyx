# Leaky bucket as a meter, compiled. The spec is
# src/ratefuse/_leaky_bucket_py.py: same decisions.
from libc.stdint cimport int64_t

from ratefuse._step cimport NEVER, CSpec, Verdict


cdef void leaky_bucket_step(const CSpec* spec, int64_t* state, int64_t now,
                            int64_t cost, bint commit, Verdict* out) noexcept nogil:
    cdef int64_t interval = spec.interval_ns
    cdef int64_t tau = interval * spec.capacity
    cdef int64_t level = state[0]
    cdef int64_t last = state[1]
    cdef int64_t poured
    if now > last:
        level = level - (now - last) if level > now - last else 0
        last = now
    if cost > spec.capacity:
        out.allowed = False
        out.retry_after_ns = NEVER
    else:
        poured = level + cost * interval
        out.allowed = poured <= tau
        out.retry_after_ns = 0 if out.allowed else poured - tau
        if out.allowed and commit:
            level = poured
    if commit:
        state[0] = level
        state[1] = last
    out.remaining = (tau - level) // interval
    out.reset_after_ns = level
