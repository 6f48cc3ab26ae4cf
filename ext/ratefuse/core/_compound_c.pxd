from libc.stdint cimport int64_t

from ratefuse.core._step cimport CSpec, Verdict

# The limits of one subject over a run of `words` state words; see
# src/ratefuse/core/_compound_py.py.
cdef struct Program:
    CSpec* specs
    Verdict* verdicts
    Py_ssize_t count
    Py_ssize_t words


cdef int program_init(Program* program, tuple specs) except -1
cdef void program_free(Program* program) noexcept
cdef Py_ssize_t program_decide(Program* program, int64_t* state, int64_t now,
                               int64_t cost, Verdict* out) noexcept nogil
cdef int64_t program_idle_at(const Program* program,
                             const int64_t* state) noexcept nogil
cdef Py_ssize_t program_reserve(Program* program, int64_t* state, int64_t now,
                                int64_t cost, int64_t max_wait, Verdict* out,
                                int64_t* stamps) noexcept nogil
cdef void program_refund(Program* program, int64_t* state, int64_t now,
                         int64_t cost, const int64_t* stamps) noexcept nogil
