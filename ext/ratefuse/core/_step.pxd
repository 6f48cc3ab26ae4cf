# The C-level contract between the limiter engine and its algorithm cores:
# a core is four functions over a CSpec and a slice of int64 state words,
# exported by each ext/ratefuse/core/algorithms/_<name>_c module as its
# STEP_FUNCTIONS. Mirrors src/ratefuse/core/spec.py, step_result.py and
# algorithm.py (StepFunctions); the inline helpers at the end are the twins
# of src/ratefuse/core/algorithms/_shared_py.py.
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
# Decides `cost` at `now`, consuming it only if `commit`.
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

# One algorithm's compiled core; `name` is its record's name, checked
# against the registry when the compiled table is filled.
ctypedef struct StepFunctions:
    const char* name
    StepFn step
    IdleFn idle_at
    ReserveFn reserve
    RefundFn refund

# One limit as the compiled cores see it: its numbers, where its state
# starts in the subject's words, and its algorithm's functions (copied from
# its StepFunctions, so that a step is one indirect call).
ctypedef struct CSpec:
    int64_t capacity
    int64_t period_ns
    int64_t interval_ns
    int64_t state_offset
    StepFn step
    IdleFn idle_at
    ReserveFn reserve
    RefundFn refund


cdef inline int64_t remaining_below(int64_t tau, int64_t backlog,
                                    int64_t interval) noexcept nogil:
    # Units of `interval` ns between a meter's backlog and its tolerance
    # tau; none when the backlog exceeds tau (time stepped back, or a
    # reservation queued past it).
    return (tau - backlog) // interval if backlog <= tau else 0


cdef inline int64_t current_window(const CSpec* spec, const int64_t* state,
                                   int64_t now) noexcept nogil:
    # The window a cost at `now` counts in (state[0] holds the stored
    # one): the stored one if time stepped back. now >= 0 and period > 0,
    # so C division is floor division here.
    cdef int64_t window = now // spec.period_ns
    return window if window > state[0] else state[0]


cdef inline void reserve_now(StepFn step, const CSpec* spec, int64_t* state,
                             int64_t now, int64_t cost, bint commit,
                             int64_t stamp, StepResult* out) noexcept nogil:
    # The reserve of an algorithm that cannot schedule ahead (the windows):
    # it admits now or not at all; `stamp` identifies it for a refund.
    # Inline, so that `step` is a direct call.
    step(spec, state, now, cost, commit, out)
    out.stamp = stamp


cdef inline void admit(StepResult* out) noexcept nogil:
    out.allowed = True
    out.retry_after_ns = 0


cdef inline void deny(StepResult* out, int64_t retry_after_ns) noexcept nogil:
    # retry_after_ns is NEVER when the cost exceeds the capacity.
    out.allowed = False
    out.retry_after_ns = retry_after_ns
