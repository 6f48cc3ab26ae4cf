# The limits of one subject decided together, compiled. The spec is
# src/ratefuse/core/_compound_py.py: same decisions, all-or-nothing.
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t

from ratefuse.core._step cimport NEVER, CSpec, StepFunctions, StepResult
from ratefuse.core.algorithms cimport (
    _fixed_window_c,
    _gcra_c,
    _leaky_bucket_c,
    _sliding_log_c,
    _sliding_window_c,
)

from ratefuse.core.algorithms import REGISTRY
from ratefuse.core.spec_check import check_specs

# The compiled cores by Algorithm.id: one row per record of REGISTRY
# (src/ratefuse/core/algorithms/__init__.py), checked at import.
cdef StepFunctions COMPILED[5]
COMPILED[0] = _gcra_c.STEP_FUNCTIONS
COMPILED[1] = _leaky_bucket_c.STEP_FUNCTIONS
COMPILED[2] = _fixed_window_c.STEP_FUNCTIONS
COMPILED[3] = _sliding_window_c.STEP_FUNCTIONS
COMPILED[4] = _sliding_log_c.STEP_FUNCTIONS

if len(REGISTRY) != 5 or any(
    COMPILED[record.id].name.decode() != record.name for record in REGISTRY
):
    raise ImportError("the compiled table in _compound_c.pyx does not follow "
                      "ratefuse.core.algorithms.REGISTRY")


cdef int bind(CSpec* spec, object limit, int64_t state_offset) except -1:
    # Fills `spec` from the LimitSpec `limit`, its functions from the table.
    cdef Py_ssize_t algorithm_id = REGISTRY.by_name(limit.algorithm).id
    cdef const StepFunctions* functions = &COMPILED[algorithm_id]
    spec[0] = CSpec(limit.capacity, limit.period_ns, limit.interval_ns, state_offset,
                    functions.step, functions.idle_at, functions.reserve,
                    functions.refund)
    return 0


cdef int compound_init(CompoundLimit* limit, tuple specs) except -1:
    # Precondition: limit is zeroed; on error the caller frees it. Raises
    # ValueError for a bad spec (see check_specs) before touching `limit`.
    check_specs(specs)
    cdef Py_ssize_t count = len(specs), index, words = 0
    limit.specs = <CSpec*>PyMem_Malloc(count * sizeof(CSpec))
    limit.results = <StepResult*>PyMem_Malloc(count * sizeof(StepResult))
    if limit.specs == NULL or limit.results == NULL:
        raise MemoryError()
    for index in range(count):
        bind(&limit.specs[index], specs[index], words)
        words += REGISTRY.state_words(specs[index])
    limit.count = count
    limit.words = words
    return 0


cdef void compound_free(CompoundLimit* limit) noexcept:
    PyMem_Free(limit.specs)
    PyMem_Free(limit.results)
    limit.specs = NULL
    limit.results = NULL


cdef inline bint later(int64_t retry, int64_t than) noexcept nogil:
    # Orders retry delays with NEVER as the latest.
    if than == NEVER:
        return False
    return retry == NEVER or retry > than


cdef bint step_all(CompoundLimit* limit, int64_t* state, int64_t now, int64_t cost,
                   bint commit) noexcept nogil:
    cdef Py_ssize_t index
    cdef bint allowed = True
    cdef CSpec* spec
    for index in range(limit.count):
        spec = &limit.specs[index]
        spec.step(spec, state + spec.state_offset, now, cost, commit,
                  &limit.results[index])
        allowed = allowed and limit.results[index].allowed
    return allowed


cdef Py_ssize_t combine(CompoundLimit* limit, bint allowed,
                        StepResult* out) noexcept nogil:
    # See combine() in the reference for the rule.
    cdef Py_ssize_t index, binding = 0
    cdef StepResult* result
    cdef StepResult* best
    out.allowed = allowed
    out.remaining = limit.results[0].remaining
    out.retry_after_ns = 0
    out.reset_after_ns = 0
    for index in range(limit.count):
        result = &limit.results[index]
        best = &limit.results[binding]
        if allowed:
            if result.remaining < best.remaining:
                binding = index
        elif not result.allowed and (
            best.allowed or later(result.retry_after_ns, best.retry_after_ns)
        ):
            binding = index
        if result.remaining < out.remaining:
            out.remaining = result.remaining
        if later(result.retry_after_ns, out.retry_after_ns):
            out.retry_after_ns = result.retry_after_ns
        if result.reset_after_ns > out.reset_after_ns:
            out.reset_after_ns = result.reset_after_ns
    return binding


cdef Py_ssize_t compound_decide(CompoundLimit* limit, int64_t* state, int64_t now,
                                int64_t cost, StepResult* out) noexcept nogil:
    # Decides and commits all-or-nothing; returns the binding spec index.
    # Not reentrant: the caller serialises decisions on one limit.
    if limit.count == 1:
        limit.specs.step(limit.specs, state, now, cost, True, out)
        return 0
    cdef bint allowed = step_all(limit, state, now, cost, False)
    if allowed:
        step_all(limit, state, now, cost, True)
    return combine(limit, allowed, out)


cdef int64_t compound_idle_at(const CompoundLimit* limit,
                              const int64_t* state) noexcept nogil:
    cdef Py_ssize_t index
    cdef int64_t idle, latest = 0
    cdef const CSpec* spec
    for index in range(limit.count):
        spec = &limit.specs[index]
        idle = spec.idle_at(spec, state + spec.state_offset)
        if idle > latest:
            latest = idle
    return latest


cdef bint reserve_all(CompoundLimit* limit, int64_t* state, int64_t now, int64_t cost,
                      int64_t max_wait, bint commit) noexcept nogil:
    cdef Py_ssize_t index
    cdef bint allowed = True
    cdef CSpec* spec
    for index in range(limit.count):
        spec = &limit.specs[index]
        spec.reserve(spec, state + spec.state_offset, now, cost, max_wait, commit,
                     &limit.results[index])
        allowed = allowed and limit.results[index].allowed
    return allowed


cdef Py_ssize_t compound_reserve(CompoundLimit* limit, int64_t* state, int64_t now,
                                 int64_t cost, int64_t max_wait, StepResult* out,
                                 int64_t* stamps) noexcept nogil:
    # Reserves all-or-nothing; fills stamps[count]; returns the binding index.
    cdef Py_ssize_t index
    cdef bint allowed = reserve_all(limit, state, now, cost, max_wait, False)
    if allowed:
        reserve_all(limit, state, now, cost, max_wait, True)
    for index in range(limit.count):
        stamps[index] = limit.results[index].stamp
    return combine(limit, allowed, out)


cdef void compound_refund(CompoundLimit* limit, int64_t* state, int64_t now,
                          int64_t cost, const int64_t* stamps) noexcept nogil:
    cdef Py_ssize_t index
    cdef CSpec* spec
    for index in range(limit.count):
        spec = &limit.specs[index]
        spec.refund(spec, state + spec.state_offset, now, cost, stamps[index])
