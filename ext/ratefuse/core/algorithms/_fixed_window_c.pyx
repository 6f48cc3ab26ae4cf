# Fixed window counter, compiled. The spec is
# src/ratefuse/core/algorithms/_fixed_window_py.py: same decisions.
from libc.stdint cimport int64_t

from ratefuse.core._step cimport NEVER, CSpec, StepFunctions, StepResult
from ratefuse.core._step cimport admit, deny, reserve_now, current_window


cdef void fixed_window_step(const CSpec* spec, int64_t* state, int64_t now,
                            int64_t cost, bint commit, StepResult* out) noexcept nogil:
    cdef int64_t period = spec.period_ns
    cdef int64_t limit = spec.capacity
    cdef int64_t window = state[0]
    cdef int64_t count = state[1]
    cdef int64_t window_end
    # now >= 0 and period > 0, so C division is floor division here.
    if now // period > window:
        window = now // period
        count = 0
    window_end = (window + 1) * period - now
    if cost > limit:
        deny(out, NEVER)
    elif count + cost <= limit:
        admit(out)
        if commit:
            count += cost
    else:
        deny(out, window_end)
    if commit:
        state[0] = window
        state[1] = count
    out.remaining = limit - count
    out.reset_after_ns = window_end if count > 0 else 0


cdef void fixed_window_reserve(const CSpec* spec, int64_t* state, int64_t now,
                               int64_t cost, int64_t max_wait, bint commit,
                               StepResult* out) noexcept nogil:
    # Stamp: the window it counted in.
    reserve_now(fixed_window_step, spec, state, now, cost, commit,
                current_window(spec, state, now), out)


cdef int64_t fixed_window_idle_at(const CSpec* spec,
                                  const int64_t* state) noexcept nogil:
    return (state[0] + 1) * spec.period_ns if state[1] > 0 else 0


cdef void fixed_window_refund(const CSpec* spec, int64_t* state, int64_t now,
                              int64_t cost, int64_t stamp) noexcept nogil:
    if now // spec.period_ns <= stamp and stamp == state[0]:
        state[1] -= cost if cost < state[1] else state[1]


STEP_FUNCTIONS = StepFunctions(
    b"fixed_window", fixed_window_step, fixed_window_idle_at,
    fixed_window_reserve, fixed_window_refund)
