from libc.stdint cimport int64_t

from ratefuse.core._step cimport CSpec, StepResult

# The limits of one subject over a run of `words` state words, decided
# all-or-nothing; see src/ratefuse/core/_compound_py.py.
cdef struct CompoundLimit:
    CSpec* specs
    StepResult* results
    Py_ssize_t count
    Py_ssize_t words


cdef int compound_init(CompoundLimit* limit, tuple specs) except -1
cdef void compound_free(CompoundLimit* limit) noexcept
cdef Py_ssize_t compound_decide(CompoundLimit* limit, int64_t* state, int64_t now,
                                int64_t cost, StepResult* out) noexcept nogil
cdef int64_t compound_idle_at(const CompoundLimit* limit,
                              const int64_t* state) noexcept nogil
cdef Py_ssize_t compound_reserve(CompoundLimit* limit, int64_t* state, int64_t now,
                                 int64_t cost, int64_t max_wait, StepResult* out,
                                 int64_t* stamps) noexcept nogil
cdef void compound_refund(CompoundLimit* limit, int64_t* state, int64_t now,
                          int64_t cost, const int64_t* stamps) noexcept nogil
