# The C-level contract between the limiter engine and its algorithm cores:
# a core is a step function over a LimitSpec and a slice of int64 state words.
# Mirrors src/ratefuse/core/spec.py and src/ratefuse/core/verdict.py.
from libc.stdint cimport int64_t

cdef extern from *:
    # Products such as limit * period can exceed int64; gcc and clang have
    # a native 128-bit integer on every 64-bit target we build for.
    ctypedef long long int128 "__int128"

cdef enum:
    NEVER = -1

cdef struct StepResult:
    bint allowed
    int64_t remaining
    int64_t retry_after_ns
    int64_t reset_after_ns
    int64_t stamp

ctypedef struct CSpec
ctypedef void (*StepFn)(const CSpec* spec, int64_t* state, int64_t now,
                        int64_t cost, bint commit, StepResult* out) noexcept nogil

# The first time at which the state is as if new (nothing admitted), so
# that a key table may drop it without changing any decision.
ctypedef int64_t (*IdleFn)(const CSpec* spec, const int64_t* state) noexcept nogil

# Reserves `cost` to be used up to `max_wait` ns from now (the meters
# schedule ahead; the windows admit now or not at all); out.stamp identifies
# the reservation for a refund.
ctypedef void (*ReserveFn)(const CSpec* spec, int64_t* state, int64_t now,
                           int64_t cost, int64_t max_wait, bint commit,
                           StepResult* out) noexcept nogil
# Gives back what is left of a reservation of `cost` with `stamp` at `now`.
ctypedef void (*RefundFn)(const CSpec* spec, int64_t* state, int64_t now,
                          int64_t cost, int64_t stamp) noexcept nogil

ctypedef struct CSpec:
    int64_t capacity
    int64_t period_ns
    int64_t interval_ns
    int64_t state_offset
    StepFn step
    IdleFn idle_at
    ReserveFn reserve
    RefundFn refund
