# The breaker core's C-level interface (its steps, for its Permit and its
# GuardedFunction). The spec is src/ratefuse/engine/_breaker_py.py.
cimport cython
from libc.stdint cimport int64_t

from ratefuse.core.breaker._machine_c cimport Machine


cdef class Permit


cdef class BreakerCore:
    cdef Machine machine
    cdef bint _ready
    cdef bint _timed
    cdef bint _delivering
    cdef str _name
    cdef object _config
    cdef object _spec
    cdef object _fallback
    cdef object _clock
    cdef tuple _record_exceptions
    cdef tuple _ignore_exceptions
    cdef object _exception_predicate
    cdef object _result_predicate
    cdef list _listeners
    cdef object _events
    cdef Permit _permit

    @cython.final
    cdef Permit _permit_of(self, int64_t generation)

    # Final: called directly (and inlined), not through the vtable.
    @cython.final
    cdef int64_t _read_clock(self) except -2

    @cython.final
    cdef int _check_ready(self) except -1

    @cython.final
    cdef int64_t acquire_c(self, int64_t* now) except -2

    @cython.final
    cdef int record_c(self, int64_t generation, int outcome,
                      int64_t duration_ns, int64_t now) except -1

    @cython.final
    cdef int _take_change_or_release(self, int64_t result,
                                     int64_t now) except -1

    @cython.final
    cdef int64_t _clock_or_release(self, int64_t generation) except -2

    @cython.final
    cdef int64_t start_c(self, int64_t generation) except -2

    @cython.final
    cdef int finish_c(self, int64_t generation, int outcome,
                      int64_t start_ns) except -1

    @cython.final
    cdef int64_t _retry_after_ns(self, int64_t now) except -3

    @cython.final
    cdef object open_error_c(self, int64_t now)

    cdef int _adopt(self, config, spec) except -1

    cdef int _take_change(self) except -1

    cdef int _deliver(self) except -1

    cdef int classify_exception_c(self, exc) except -1

    cdef int classify_result_c(self, result) except -1

    cdef int record_exception_c(self, int64_t generation, exc,
                                int64_t start_ns) except -1

    @cython.final
    cdef int record_result_c(self, int64_t generation, result,
                             int64_t start_ns) except -1


cdef class Permit:
    cdef BreakerCore _core
    cdef readonly int64_t generation

    cdef int _classified(self, bint is_result, value, int64_t duration_ns,
                         int64_t now) except -1
