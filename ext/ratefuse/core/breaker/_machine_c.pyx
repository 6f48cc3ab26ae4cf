# The breaker state machine, compiled. The spec is
# src/ratefuse/core/breaker/_machine_py.py: same steps, same results, same state.
# Every step is pure C without the GIL requirement, so under the GIL it is
# atomic.
from libc.stdint cimport int64_t
from libc.string cimport memset

from ratefuse.core.breaker._window_c cimport (
    window_advance,
    window_clear,
    window_free,
    window_init,
    window_record,
    window_totals_after,
)

from ratefuse.core.breaker.spec import RATE_SCALE as _RATE_SCALE
from ratefuse.core.breaker.spec import TRANSITION_MASKS as _TRANSITION_MASKS

cdef extern from *:
    # calls * ppm can exceed int64 for huge time windows; gcc and clang have
    # a native 128-bit integer on every 64-bit target we build for.
    ctypedef long long int128 "__int128"

cdef int64_t RATE_SCALE = _RATE_SCALE
cdef int TRANSITION_MASKS[5]
for _index, _mask in enumerate(_TRANSITION_MASKS):
    TRANSITION_MASKS[_index] = _mask


cdef int load_spec(Spec* target, object spec) except -1:
    # Lowers a BreakerSpec into its C struct.
    target.count_window = spec.count_window
    target.window_size = spec.window_size
    target.bucket_ns = spec.bucket_ns
    target.minimum_calls = spec.minimum_calls
    target.failure_rate_ppm = spec.failure_rate_ppm
    target.slow_call_rate_ppm = spec.slow_call_rate_ppm
    target.slow_call_ns = spec.slow_call_ns
    target.wait_ns = spec.wait_ns
    target.max_wait_ns = spec.max_wait_ns
    target.backoff_multiplier = spec.backoff_multiplier
    target.half_open_calls = spec.half_open_calls
    target.max_half_open_ns = spec.max_half_open_ns
    return 0


cdef int machine_respec(Machine* machine, object spec) except -1:
    # See Machine.respec in the spec. Lowers first, then changes the machine
    # with C statements only, so a step never sees half a spec.
    cdef Spec lowered
    cdef Window fresh
    load_spec(&lowered, spec)
    cdef bint reshape = (
        lowered.count_window != machine.spec.count_window
        or lowered.window_size != machine.spec.window_size
        or lowered.bucket_ns != machine.spec.bucket_ns
    )
    if reshape:
        try:
            window_init(&fresh, lowered.window_size,
                        0 if lowered.count_window else lowered.bucket_ns)
        except MemoryError:
            window_free(&fresh)
            raise
        window_free(&machine.window)
        machine.window = fresh
    if machine.wait_ns == machine.spec.wait_ns:
        machine.wait_ns = lowered.wait_ns
    elif machine.wait_ns > lowered.max_wait_ns:
        machine.wait_ns = lowered.max_wait_ns
    machine.spec = lowered
    return 0


cdef inline void tally(Machine* machine, bint failed, bint slow) noexcept nogil:
    # Counts an outcome the machine recorded.
    if failed:
        machine.failures += 1
    else:
        machine.successes += 1
    machine.slow_calls += slow


cdef int machine_init(Machine* machine, object spec) except -1:
    # Precondition: the struct holds no memory yet; spec is a BreakerSpec.
    load_spec(&machine.spec, spec)
    window_init(&machine.window, machine.spec.window_size,
                0 if machine.spec.count_window else machine.spec.bucket_ns)
    machine.state = CLOSED
    machine.changed_from = -1
    machine.changed_via = -1
    machine.shown = SHOWN_WINDOW
    machine.generation = 1
    machine.opened_at_ns = 0
    machine.wait_ns = 0     # not opened since CLOSED or DISABLED
    machine.half_open_at_ns = 0
    machine.probes_issued = 0
    machine.probe_calls = machine.probe_failures = machine.probe_slow = 0
    machine.rejected = 0
    machine.permitted = machine.rejected_total = 0
    machine.successes = machine.failures = machine.slow_calls = 0
    memset(machine.entered, 0, sizeof(machine.entered))
    return 0


cdef void machine_free(Machine* machine) noexcept:
    window_free(&machine.window)


cdef inline bint exceeds(const Spec* spec, int64_t calls, int64_t failures,
                         int64_t slow, int64_t minimum) noexcept nogil:
    # See exceeds() in _breaker_spec.py.
    if calls < minimum or calls == 0:
        return False
    if <int128>failures * RATE_SCALE >= <int128>spec.failure_rate_ppm * calls:
        return True
    return (spec.slow_call_ns > 0
            and <int128>slow * RATE_SCALE >= <int128>spec.slow_call_rate_ppm * calls)


cdef inline int64_t grow_wait(const Spec* spec, int64_t wait_ns) noexcept nogil:
    # See grow_wait() in _breaker_spec.py.
    cdef double grown = <double>wait_ns * spec.backoff_multiplier
    if grown >= <double>spec.max_wait_ns:
        return spec.max_wait_ns
    return <int64_t>grown


cdef inline int64_t next_wait(const Spec* spec, int64_t wait_ns) noexcept nogil:
    # See next_wait() in spec.py.
    return spec.wait_ns if wait_ns == 0 else grow_wait(spec, wait_ns)


cdef void enter(Machine* machine, int target, int64_t now) noexcept nogil:
    # Precondition: `now` is known if target is OPEN or HALF_OPEN. A second
    # change in one step keeps the first one's origin.
    cdef int source = machine.state
    if machine.changed_from < 0:
        machine.changed_from = source
    else:
        machine.changed_via = source
    machine.state = target
    machine.generation += 1
    if target != source:
        machine.entered[target] += 1
    if target != OPEN:
        machine.rejected = 0
    if target == CLOSED or target == DISABLED:
        machine.wait_ns = 0
    elif target == OPEN or target == FORCED_OPEN:
        machine.wait_ns = next_wait(&machine.spec, machine.wait_ns)
    if target == CLOSED:
        window_clear(&machine.window)
        machine.shown = SHOWN_WINDOW
    elif target == OPEN:
        machine.opened_at_ns = now
        if source == HALF_OPEN:
            machine.shown = SHOWN_PROBES
        elif source == CLOSED:
            machine.shown = SHOWN_WINDOW
        elif source != OPEN:
            machine.shown = SHOWN_NOTHING
    elif target == HALF_OPEN:
        machine.half_open_at_ns = now
        machine.probes_issued = 0
        machine.probe_calls = machine.probe_failures = machine.probe_slow = 0
        machine.shown = SHOWN_PROBES
    else:
        machine.shown = SHOWN_NOTHING


cdef inline void expire_round(Machine* machine) noexcept nogil:
    # A probe round past its deadline: OPEN from the deadline on.
    enter(machine, OPEN,
          machine.half_open_at_ns + machine.spec.max_half_open_ns)


cdef int64_t machine_acquire(Machine* machine, int64_t now) noexcept nogil:
    cdef int state = machine.state
    if state == CLOSED or state == DISABLED:
        machine.permitted += 1
        return machine.generation
    if state == OPEN:
        if now == UNKNOWN_NOW:
            return NEED_NOW
        if now - machine.opened_at_ns >= machine.wait_ns:
            enter(machine, HALF_OPEN, now)
            machine.probes_issued = 1
            machine.permitted += 1
            return machine.generation
    elif state == HALF_OPEN:
        if machine.spec.max_half_open_ns:
            if now == UNKNOWN_NOW:
                return NEED_NOW
            if now - machine.half_open_at_ns >= machine.spec.max_half_open_ns:
                expire_round(machine)
                if now - machine.opened_at_ns >= machine.wait_ns:
                    enter(machine, HALF_OPEN, now)
                    machine.probes_issued = 1
                    machine.permitted += 1
                    return machine.generation
                machine.rejected += 1
                machine.rejected_total += 1
                return REJECTED
        if machine.probes_issued < machine.spec.half_open_calls:
            machine.probes_issued += 1
            machine.permitted += 1
            return machine.generation
    machine.rejected += 1
    machine.rejected_total += 1
    return REJECTED


cdef int record_probe(Machine* machine, int outcome, bint failed, bint slow,
                      int64_t now) noexcept nogil:
    if outcome == IGNORED:
        # Giving a permit back needs no time.
        if machine.probes_issued > 0:
            machine.probes_issued -= 1
        return DONE
    if machine.spec.max_half_open_ns:
        if now == UNKNOWN_NOW:
            return NEED_NOW
        if now - machine.half_open_at_ns >= machine.spec.max_half_open_ns:
            expire_round(machine)
            return DONE
    cdef int64_t calls = machine.probe_calls + 1
    cdef int64_t failures = machine.probe_failures + failed
    cdef int64_t slow_calls = machine.probe_slow + slow
    cdef int64_t deciding = machine.spec.half_open_calls
    if machine.spec.minimum_calls < deciding:
        deciding = machine.spec.minimum_calls
    cdef bint complete = calls >= deciding
    cdef bint again = complete and exceeds(&machine.spec, calls, failures,
                                           slow_calls, calls)
    if again and now == UNKNOWN_NOW:
        return NEED_NOW
    machine.probe_calls = calls
    machine.probe_failures = failures
    machine.probe_slow = slow_calls
    tally(machine, failed, slow)
    if again:
        enter(machine, OPEN, now)
    elif complete:
        enter(machine, CLOSED, now)
    return DONE


cdef int machine_record(Machine* machine, int64_t generation, int outcome,
                        int64_t duration_ns, int64_t now) noexcept nogil:
    if generation != machine.generation:
        return DONE
    cdef int state = machine.state
    if state != CLOSED and state != HALF_OPEN:
        return DONE
    cdef Spec* spec = &machine.spec
    cdef bint failed = outcome == FAILURE
    cdef bint slow = spec.slow_call_ns > 0 and duration_ns > spec.slow_call_ns
    if state == HALF_OPEN:
        return record_probe(machine, outcome, failed, slow, now)
    if outcome == IGNORED:
        return DONE
    cdef Window* window = &machine.window
    cdef int64_t calls, failures, slow_calls
    if not spec.count_window:
        if now == UNKNOWN_NOW:
            return NEED_NOW
    elif now == UNKNOWN_NOW:
        # Only opening needs the time: look ahead before changing anything.
        window_totals_after(window, failed, slow, &calls, &failures, &slow_calls)
        if exceeds(spec, calls, failures, slow_calls, spec.minimum_calls):
            return NEED_NOW
        # The totals looked at are the totals recorded: no need to look again.
        window_record(window, failed, slow, now)
        tally(machine, failed, slow)
        return DONE
    window_record(window, failed, slow, now)
    tally(machine, failed, slow)
    if exceeds(spec, window.calls, window.failures, window.slow,
               spec.minimum_calls):
        enter(machine, OPEN, now)
    return DONE


cdef int machine_transition(Machine* machine, int target,
                            int64_t now) noexcept nogil:
    if target < CLOSED or target > DISABLED:
        return ILLEGAL
    if not (TRANSITION_MASKS[machine.state] >> target) & 1:
        return ILLEGAL
    if now == UNKNOWN_NOW and (target == OPEN or target == HALF_OPEN):
        return NEED_NOW
    enter(machine, target, now)
    return DONE


cdef void machine_reset(Machine* machine) noexcept nogil:
    enter(machine, CLOSED, UNKNOWN_NOW)


cdef int64_t machine_retry_after_ns(const Machine* machine,
                                    int64_t now) noexcept nogil:
    cdef int state = machine.state
    if state == FORCED_OPEN:
        return WAIT_FOREVER
    if state != OPEN:
        return 0
    if now == UNKNOWN_NOW:
        return NEED_NOW
    cdef int64_t left = machine.opened_at_ns + machine.wait_ns - now
    return left if left > 0 else 0


cdef int machine_advance(Machine* machine, int64_t now) noexcept nogil:
    if machine.spec.count_window or machine.state != CLOSED:
        return DONE
    if now == UNKNOWN_NOW:
        return NEED_NOW
    window_advance(&machine.window, now)
    return DONE
