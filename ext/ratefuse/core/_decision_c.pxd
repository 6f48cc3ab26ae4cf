from libc.stdint cimport int64_t

from ratefuse.core._step cimport StepResult


cdef class Decision:
    cdef readonly bint allowed
    cdef readonly int64_t remaining
    cdef readonly double retry_after
    cdef readonly double reset_after
    cdef readonly int64_t limit


cdef Decision make_decision(const StepResult* verdict, int64_t limit)
cdef object make_reservation(const StepResult* verdict, int64_t limit, object refund)
