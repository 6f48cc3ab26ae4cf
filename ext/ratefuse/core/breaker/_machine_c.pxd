# The breaker state machine in C; the spec is src/ratefuse/core/breaker/_machine_py.py
# and the constants mirror src/ratefuse/core/breaker/spec.py.
from libc.stdint cimport int64_t

from ratefuse.core.breaker._window_c cimport Window


# One C enum per kind, as in spec.py (State, Outcome, MachineStep, and the
# sentinels of one step each).
cdef enum:
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2
    FORCED_OPEN = 3
    DISABLED = 4

cdef enum:
    SUCCESS = 0
    FAILURE = 1
    IGNORED = 2

cdef enum:
    DONE = 0
    NEED_NOW = -2
    ILLEGAL = -3

cdef enum:
    SHOWN_WINDOW = 0    # Shown in spec.py: the tally metrics show
    SHOWN_PROBES = 1
    SHOWN_NOTHING = 2

cdef enum:
    UNKNOWN_NOW = -1    # a now not read yet
    REJECTED = 0        # acquire: no generation
    WAIT_FOREVER = -4   # retry_after_ns of FORCED_OPEN


cdef struct Spec:
    bint count_window
    int64_t window_size
    int64_t bucket_ns
    int64_t minimum_calls
    int64_t failure_rate_ppm
    int64_t slow_call_rate_ppm
    int64_t slow_call_ns
    int64_t wait_ns
    int64_t max_wait_ns
    double backoff_multiplier
    int64_t half_open_calls
    int64_t max_half_open_ns


cdef struct Machine:
    Spec spec
    Window window
    int state
    int changed_from        # the state a step left, -1: none
    int changed_via         # the state a step passed through, -1: none
    int shown               # a SHOWN_* value
    int64_t generation
    int64_t opened_at_ns
    int64_t wait_ns
    int64_t half_open_at_ns
    int64_t probes_issued
    int64_t probe_calls
    int64_t probe_failures
    int64_t probe_slow
    int64_t rejected
    # Counters since init, never reset (see _breaker_machine_py.Machine).
    int64_t permitted
    int64_t rejected_total
    int64_t successes
    int64_t failures
    int64_t slow_calls
    int64_t entered[5]


cdef int machine_init(Machine* machine, object spec) except -1
cdef void machine_free(Machine* machine) noexcept
cdef int64_t machine_acquire(Machine* machine, int64_t now) noexcept nogil
cdef int machine_record(Machine* machine, int64_t generation, int outcome,
                        int64_t duration_ns, int64_t now) noexcept nogil
cdef int machine_transition(Machine* machine, int target,
                            int64_t now) noexcept nogil
cdef void machine_reset(Machine* machine) noexcept nogil
cdef int64_t machine_retry_after_ns(const Machine* machine,
                                    int64_t now) noexcept nogil
cdef int machine_advance(Machine* machine, int64_t now) noexcept nogil
cdef int machine_respec(Machine* machine, object spec) except -1
