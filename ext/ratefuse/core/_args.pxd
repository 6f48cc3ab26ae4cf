# Validation of per-call arguments, inlined into the compiled engines; the
# Python checks raise the same errors (src/ratefuse/core/args.py).
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_Check
from cpython.number cimport PyNumber_Index
from libc.stdint cimport int64_t

from ratefuse.core._clock cimport monotonic_ns

cdef extern from *:
    """
    #define RATEFUSE_MAX_NOW_NS (((long long)1) << 62)
    #define RATEFUSE_MAX_DURATION_NS (((long long)1) << 61)
    """
    # The bounds of ratefuse/core/spec.py (MAX_NOW_NS) and
    # ratefuse/core/breaker/spec.py (MAX_DURATION_NS).
    const long long MAX_NOW_NS "RATEFUSE_MAX_NOW_NS"
    const long long MAX_DURATION_NS "RATEFUSE_MAX_DURATION_NS"


cdef inline int64_t refuse_cost(object cost) except -1:
    # The failure path of to_cost: ratefuse/core/args.py raises.
    from ratefuse.core.args import check_cost
    return check_cost(cost)


cdef inline int64_t to_cost(object cost) except -1:
    # An int in [0, 2**63), else ValueError naming it (DESIGN section 7);
    # floats are refused, not truncated. Every refusal is the Python
    # check's, so that both twins say the same.
    cdef int overflow = 0
    cdef long long value
    if cost is 1:  # the default: CPython shares one object for the int 1
        return 1
    if not PyLong_Check(cost):
        try:
            cost = PyNumber_Index(cost)
        except TypeError:
            return refuse_cost(cost)
    value = PyLong_AsLongLongAndOverflow(cost, &overflow)
    if overflow or value < 0:
        return refuse_cost(cost)
    return value


cdef inline int64_t check_now(object now) except -1:
    # An int in [0, 2**62] nanoseconds, else ValueError naming it (the
    # limiters' and the breakers' one check); refusals as to_cost's.
    cdef int overflow = 0
    cdef long long value
    if PyLong_Check(now):
        value = PyLong_AsLongLongAndOverflow(now, &overflow)
        if not overflow and 0 <= value <= MAX_NOW_NS:
            return value
    from ratefuse.core.args import check_now as checked_now
    return checked_now(now)


cdef inline int64_t resolve_now(object clock, object now) except -1:
    # The time of a decision: explicit `now`, else the clock (None: the
    # monotonic clock, read in C).
    if now is None:
        if clock is None:
            return monotonic_ns()
        now = clock()
    return check_now(now)


cdef inline int64_t duration_to_ns(double duration) except -1:
    # A call's duration in seconds as integer ns, as duration_to_ns() in
    # ratefuse/core/breaker/spec.py: truncated, saturated, ValueError if
    # negative or NaN.
    if not duration >= 0.0:
        raise ValueError(f"duration must be >= 0 seconds, got {duration!r}")
    cdef double scaled = duration * 1e9
    if scaled >= <double>MAX_DURATION_NS:
        return MAX_DURATION_NS
    return <int64_t>scaled
