from libc.stdint cimport int64_t

from ratefuse._step cimport CSpec, Verdict

cdef void sliding_window_step(const CSpec* spec, int64_t* state, int64_t now,
                              int64_t cost, bint commit,
                              Verdict* out) noexcept nogil
