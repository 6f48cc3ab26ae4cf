# The C-level contract between the limiter engine and its algorithm cores:
# a core is a step function over a LimitSpec and a slice of int64 state words.
# Mirrors src/ratefuse/_spec.py and src/ratefuse/_verdict.py.
from libc.stdint cimport int64_t

cdef extern from *:
    # Products such as limit * period can exceed int64; gcc and clang have
    # a native 128-bit integer on every 64-bit target we build for.
    ctypedef long long int128 "__int128"

cdef enum:
    NEVER = -1

cdef struct Verdict:
    bint allowed
    int64_t remaining
    int64_t retry_after_ns
    int64_t reset_after_ns

ctypedef struct CSpec
ctypedef void (*StepFn)(const CSpec* spec, int64_t* state, int64_t now,
                        int64_t cost, bint commit, Verdict* out) noexcept nogil

ctypedef struct CSpec:
    int64_t capacity
    int64_t period_ns
    int64_t interval_ns
    int64_t state_offset
    StepFn step
