# Sliding window counter, compiled. The spec is
# src/ratefuse/core/algorithms/_sliding_window_py.py: same decisions,
# products in 128 bits.
from libc.stdint cimport int64_t

from ratefuse.core._step cimport NEVER, CSpec, StepFunctions, StepResult
from ratefuse.core._step cimport admit, deny, reserve_now, current_window, int128


cdef void sliding_window_step(const CSpec* spec, int64_t* state, int64_t now,
                              int64_t cost, bint commit,
                              StepResult* out) noexcept nogil:
    cdef int64_t period = spec.period_ns
    cdef int64_t limit = spec.capacity
    cdef int64_t window = state[0]
    cdef int64_t cur = state[1]
    cdef int64_t prev = state[2]
    cdef int64_t start, elapsed
    cdef int128 weighted_prev, remaining
    if now // period > window:
        prev = cur if now // period == window + 1 else 0
        window = now // period
        cur = 0
    start = window * period
    elapsed = now - start if now > start else 0
    weighted_prev = <int128>prev * (period - elapsed)
    if cost > limit:
        deny(out, NEVER)
    elif weighted_prev + <int128>(cur + cost) * period <= <int128>limit * period:
        admit(out)
        if commit:
            cur += cost
    else:
        deny(out, retry_offset(period, limit, cur, prev, cost) + start - now)
    if commit:
        state[0] = window
        state[1] = cur
        state[2] = prev
    remaining = (
        <int128>limit * period - weighted_prev - <int128>cur * period
    ) // period
    out.remaining = <int64_t>remaining if remaining > 0 else 0
    if cur > 0:
        out.reset_after_ns = start + 2 * period - now
    elif prev > 0:
        out.reset_after_ns = start + period - now
    else:
        out.reset_after_ns = 0


cdef inline int64_t retry_offset(int64_t period, int64_t limit, int64_t cur,
                                 int64_t prev, int64_t cost) noexcept nogil:
    # Offset from the window start at which cost fits; see _retry_after in
    # the reference. Precondition: cost <= limit and it does not fit now.
    cdef int64_t room = limit - cur - cost
    cdef int64_t needed
    if room >= 0:
        needed = <int64_t>(period - <int128>room * period // prev)
        if needed < period:
            return needed
    if cur == 0:
        return period
    needed = <int64_t>(period - <int128>(limit - cost) * period // cur)
    return period + (needed if needed > 0 else 0)


cdef void sliding_window_reserve(const CSpec* spec, int64_t* state, int64_t now,
                                 int64_t cost, int64_t max_wait, bint commit,
                                 StepResult* out) noexcept nogil:
    # Stamp: the window it counted in.
    reserve_now(sliding_window_step, spec, state, now, cost, commit,
                current_window(spec, state, now), out)


cdef int64_t sliding_window_idle_at(const CSpec* spec,
                                    const int64_t* state) noexcept nogil:
    if state[1] > 0:
        return (state[0] + 2) * spec.period_ns
    return (state[0] + 1) * spec.period_ns if state[2] > 0 else 0


cdef void sliding_window_refund(const CSpec* spec, int64_t* state, int64_t now,
                                int64_t cost, int64_t stamp) noexcept nogil:
    cdef int64_t window = now // spec.period_ns
    if window > state[0]:  # roll the windows forward first (no decision)
        state[2] = state[1] if window == state[0] + 1 else 0
        state[0] = window
        state[1] = 0
    if state[0] == stamp:
        state[1] -= cost if cost < state[1] else state[1]
    elif state[0] == stamp + 1:
        state[2] -= cost if cost < state[2] else state[2]


STEP_FUNCTIONS = StepFunctions(
    b"sliding_window", sliding_window_step, sliding_window_idle_at,
    sliding_window_reserve, sliding_window_refund)
