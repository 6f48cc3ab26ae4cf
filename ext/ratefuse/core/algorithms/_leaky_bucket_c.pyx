# Leaky bucket as a meter, compiled. The spec is
# src/ratefuse/core/algorithms/_leaky_bucket_py.py: same decisions.
from libc.stdint cimport int64_t

from ratefuse.core._step cimport NEVER, CSpec, StepFunctions, StepResult
from ratefuse.core._step cimport deny, remaining_below


cdef inline void drain(const int64_t* state, int64_t now, int64_t* level,
                       int64_t* last) noexcept nogil:
    # The level and last drain time at `now`: a time earlier than the last
    # drain drains nothing.
    level[0] = state[0]
    last[0] = state[1]
    if now > last[0]:
        level[0] = level[0] - (now - last[0]) if level[0] > now - last[0] else 0
        last[0] = now


cdef inline void settle(int64_t* state, bint commit, int64_t level, int64_t last,
                        int64_t tau, int64_t interval, StepResult* out) noexcept nogil:
    # Keeps the level and drain time if `commit`; reports what they leave.
    if commit:
        state[0] = level
        state[1] = last
    out.remaining = remaining_below(tau, level, interval)
    out.reset_after_ns = level


cdef void leaky_bucket_step(const CSpec* spec, int64_t* state, int64_t now,
                            int64_t cost, bint commit, StepResult* out) noexcept nogil:
    cdef int64_t interval = spec.interval_ns
    cdef int64_t tau = interval * spec.capacity
    cdef int64_t level, last, poured
    drain(state, now, &level, &last)
    if cost > spec.capacity:
        deny(out, NEVER)
    else:
        poured = level + cost * interval
        out.allowed = poured <= tau
        out.retry_after_ns = 0 if out.allowed else poured - tau
        if out.allowed and commit:
            level = poured
    settle(state, commit, level, last, tau, interval, out)


cdef int64_t leaky_bucket_idle_at(const CSpec* spec,
                                  const int64_t* state) noexcept nogil:
    return state[1] + state[0]


cdef void leaky_bucket_reserve(const CSpec* spec, int64_t* state, int64_t now,
                               int64_t cost, int64_t max_wait, bint commit,
                               StepResult* out) noexcept nogil:
    cdef int64_t interval = spec.interval_ns
    cdef int64_t tau = interval * spec.capacity
    cdef int64_t level, last, poured, delay
    drain(state, now, &level, &last)
    out.stamp = 0
    if cost > spec.capacity:
        deny(out, NEVER)
    else:
        poured = level + cost * interval
        delay = poured - tau if poured > tau else 0
        out.allowed = delay <= max_wait
        out.retry_after_ns = delay
        out.stamp = last + poured
        if out.allowed:
            level = poured
    settle(state, commit, level, last, tau, interval, out)


cdef void leaky_bucket_refund(const CSpec* spec, int64_t* state, int64_t now,
                              int64_t cost, int64_t stamp) noexcept nogil:
    cdef int64_t level, last
    cdef int64_t refund = cost * spec.interval_ns
    drain(state, now, &level, &last)
    if stamp - now < refund:
        refund = stamp - now
    if level < refund:
        refund = level
    if refund > 0:
        state[0] = level - refund
        state[1] = last


STEP_FUNCTIONS = StepFunctions(
    b"leaky_bucket", leaky_bucket_step, leaky_bucket_idle_at,
    leaky_bucket_reserve, leaky_bucket_refund)
