from libc.stdint cimport int64_t

from ratefuse.core._step cimport CSpec, StepResult

cdef void fixed_window_step(const CSpec* spec, int64_t* state, int64_t now,
                            int64_t cost, bint commit, StepResult* out) noexcept nogil
cdef int64_t fixed_window_idle_at(const CSpec* spec,
                                  const int64_t* state) noexcept nogil
cdef void fixed_window_reserve(const CSpec* spec, int64_t* state, int64_t now,
                               int64_t cost, int64_t max_wait, bint commit,
                               StepResult* out) noexcept nogil
cdef void fixed_window_refund(const CSpec* spec, int64_t* state, int64_t now,
                              int64_t cost, int64_t stamp) noexcept nogil
