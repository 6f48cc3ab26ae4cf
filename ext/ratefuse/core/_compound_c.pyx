# The limits of one subject decided together, compiled. The spec is
# src/ratefuse/core/_compound_py.py: same decisions, all-or-nothing.
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t

from ratefuse.core.algorithms cimport (
    _fixed_window_c as fixed,
    _gcra_c as gcra,
    _leaky_bucket_c as leaky,
    _sliding_log_c as log,
    _sliding_window_c as sliding,
)
from ratefuse.core._step cimport NEVER, CSpec, StepResult

from ratefuse.core.spec import state_words


cdef int bind_algorithm(CSpec* spec, str algorithm) except -1:
    if algorithm == "gcra":
        spec.step, spec.idle_at = gcra.gcra_step, gcra.gcra_idle_at
        spec.reserve, spec.refund = gcra.gcra_reserve, gcra.gcra_refund
    elif algorithm == "leaky_bucket":
        spec.step, spec.idle_at = leaky.leaky_bucket_step, leaky.leaky_bucket_idle_at
        spec.reserve = leaky.leaky_bucket_reserve
        spec.refund = leaky.leaky_bucket_refund
    elif algorithm == "fixed_window":
        spec.step, spec.idle_at = fixed.fixed_window_step, fixed.fixed_window_idle_at
        spec.reserve = fixed.fixed_window_reserve
        spec.refund = fixed.fixed_window_refund
    elif algorithm == "sliding_window":
        spec.step = sliding.sliding_window_step
        spec.idle_at = sliding.sliding_window_idle_at
        spec.reserve = sliding.sliding_window_reserve
        spec.refund = sliding.sliding_window_refund
    elif algorithm == "sliding_log":
        spec.step, spec.idle_at = log.sliding_log_step, log.sliding_log_idle_at
        spec.reserve, spec.refund = log.sliding_log_reserve, log.sliding_log_refund
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    return 0


cdef int compound_init(CompoundLimit* program, tuple specs) except -1:
    # Precondition: program is zeroed; on error the caller frees it.
    if not specs:
        raise ValueError("a limiter needs at least one limit, got none")
    cdef Py_ssize_t count = len(specs), index, words = 0
    program.specs = <CSpec*>PyMem_Malloc(count * sizeof(CSpec))
    program.verdicts = <StepResult*>PyMem_Malloc(count * sizeof(StepResult))
    if program.specs == NULL or program.verdicts == NULL:
        raise MemoryError()
    for index in range(count):
        spec = specs[index]
        bind_algorithm(&program.specs[index], spec.algorithm)
        program.specs[index].capacity = spec.capacity
        program.specs[index].period_ns = spec.period_ns
        program.specs[index].interval_ns = spec.interval_ns
        program.specs[index].state_offset = words
        words += state_words(spec)
    program.count = count
    program.words = words
    return 0


cdef void compound_free(CompoundLimit* program) noexcept:
    PyMem_Free(program.specs)
    PyMem_Free(program.verdicts)
    program.specs = NULL
    program.verdicts = NULL


cdef inline bint later(int64_t retry, int64_t than) noexcept nogil:
    # Orders retry delays with NEVER as the latest.
    if than == NEVER:
        return False
    return retry == NEVER or retry > than


cdef bint step_all(CompoundLimit* program, int64_t* state, int64_t now, int64_t cost,
                   bint commit) noexcept nogil:
    cdef Py_ssize_t index
    cdef bint allowed = True
    cdef CSpec* spec
    for index in range(program.count):
        spec = &program.specs[index]
        spec.step(spec, state + spec.state_offset, now, cost, commit,
                  &program.verdicts[index])
        allowed = allowed and program.verdicts[index].allowed
    return allowed


cdef Py_ssize_t combine(CompoundLimit* program, bint allowed, StepResult* out) noexcept nogil:
    # See combine() in the reference for the rule.
    cdef Py_ssize_t index, binding = 0
    cdef StepResult* verdict
    cdef StepResult* best
    out.allowed = allowed
    out.remaining = program.verdicts[0].remaining
    out.retry_after_ns = 0
    out.reset_after_ns = 0
    for index in range(program.count):
        verdict = &program.verdicts[index]
        best = &program.verdicts[binding]
        if allowed:
            if verdict.remaining < best.remaining:
                binding = index
        elif not verdict.allowed and (
            best.allowed or later(verdict.retry_after_ns, best.retry_after_ns)
        ):
            binding = index
        if verdict.remaining < out.remaining:
            out.remaining = verdict.remaining
        if later(verdict.retry_after_ns, out.retry_after_ns):
            out.retry_after_ns = verdict.retry_after_ns
        if verdict.reset_after_ns > out.reset_after_ns:
            out.reset_after_ns = verdict.reset_after_ns
    return binding


cdef Py_ssize_t compound_decide(CompoundLimit* program, int64_t* state, int64_t now,
                               int64_t cost, StepResult* out) noexcept nogil:
    # Decides and commits all-or-nothing; returns the binding spec index.
    # Not reentrant: the caller serialises decisions on one program.
    if program.count == 1:
        program.specs.step(program.specs, state, now, cost, True, out)
        return 0
    cdef bint allowed = step_all(program, state, now, cost, False)
    if allowed:
        step_all(program, state, now, cost, True)
    return combine(program, allowed, out)


cdef int64_t compound_idle_at(const CompoundLimit* program,
                             const int64_t* state) noexcept nogil:
    cdef Py_ssize_t index
    cdef int64_t idle, latest = 0
    cdef const CSpec* spec
    for index in range(program.count):
        spec = &program.specs[index]
        idle = spec.idle_at(spec, state + spec.state_offset)
        if idle > latest:
            latest = idle
    return latest


cdef bint reserve_all(CompoundLimit* program, int64_t* state, int64_t now, int64_t cost,
                      int64_t max_wait, bint commit) noexcept nogil:
    cdef Py_ssize_t index
    cdef bint allowed = True
    cdef CSpec* spec
    for index in range(program.count):
        spec = &program.specs[index]
        spec.reserve(spec, state + spec.state_offset, now, cost, max_wait, commit,
                     &program.verdicts[index])
        allowed = allowed and program.verdicts[index].allowed
    return allowed


cdef Py_ssize_t compound_reserve(CompoundLimit* program, int64_t* state, int64_t now,
                                int64_t cost, int64_t max_wait, StepResult* out,
                                int64_t* stamps) noexcept nogil:
    # Reserves all-or-nothing; fills stamps[count]; returns the binding index.
    cdef Py_ssize_t index
    cdef bint allowed = reserve_all(program, state, now, cost, max_wait, False)
    if allowed:
        reserve_all(program, state, now, cost, max_wait, True)
    for index in range(program.count):
        stamps[index] = program.verdicts[index].stamp
    return combine(program, allowed, out)


cdef void compound_refund(CompoundLimit* program, int64_t* state, int64_t now,
                         int64_t cost, const int64_t* stamps) noexcept nogil:
    cdef Py_ssize_t index
    cdef CSpec* spec
    for index in range(program.count):
        spec = &program.specs[index]
        spec.refund(spec, state + spec.state_offset, now, cost, stamps[index])
