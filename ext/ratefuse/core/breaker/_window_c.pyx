# The breaker's sliding window, compiled. The spec is
# src/ratefuse/core/breaker/_window_py.py: same totals after every step.
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memset

cdef enum:
    FAILED_FLAG = 1
    SLOW_FLAG = 2
    EMPTY_EPOCH = -1


cdef int window_init(Window* window, int64_t size, int64_t bucket_ns) except -1:
    # Precondition: size >= 1, and the struct holds no memory yet.
    memset(window, 0, sizeof(Window))
    window.size = size
    window.bucket_ns = bucket_ns
    window.head_epoch = EMPTY_EPOCH
    if bucket_ns == 0:
        window.flags = <uint8_t*>PyMem_Malloc(<size_t>size)
        if window.flags == NULL:
            raise MemoryError()
        memset(window.flags, 0, <size_t>size)
        return 0
    window.bucket_calls = <int64_t*>PyMem_Malloc(<size_t>size * sizeof(int64_t))
    window.bucket_failures = <int64_t*>PyMem_Malloc(<size_t>size * sizeof(int64_t))
    window.bucket_slow = <int64_t*>PyMem_Malloc(<size_t>size * sizeof(int64_t))
    if (window.bucket_calls == NULL or window.bucket_failures == NULL
            or window.bucket_slow == NULL):
        raise MemoryError()
    window_clear(window)
    return 0


cdef void window_free(Window* window) noexcept:
    PyMem_Free(window.flags)
    PyMem_Free(window.bucket_calls)
    PyMem_Free(window.bucket_failures)
    PyMem_Free(window.bucket_slow)
    window.flags = NULL
    window.bucket_calls = window.bucket_failures = window.bucket_slow = NULL


cdef void window_clear(Window* window) noexcept nogil:
    window.calls = window.failures = window.slow = 0
    window.head = window.filled = 0
    window.head_epoch = EMPTY_EPOCH
    if window.bucket_ns == 0:
        memset(window.flags, 0, <size_t>window.size)
    else:
        memset(window.bucket_calls, 0, <size_t>window.size * sizeof(int64_t))
        memset(window.bucket_failures, 0, <size_t>window.size * sizeof(int64_t))
        memset(window.bucket_slow, 0, <size_t>window.size * sizeof(int64_t))


cdef void window_totals_after(const Window* window, bint failed, bint slow,
                              int64_t* calls, int64_t* failures,
                              int64_t* slow_calls) noexcept nogil:
    # Count-based only: the totals one more call would leave.
    cdef uint8_t evicted
    calls[0] = window.calls + 1
    failures[0] = window.failures + failed
    slow_calls[0] = window.slow + slow
    if window.filled == window.size:
        evicted = window.flags[window.head]
        calls[0] -= 1
        failures[0] -= evicted & FAILED_FLAG
        slow_calls[0] -= (evicted & SLOW_FLAG) >> 1


cdef void window_record(Window* window, bint failed, bint slow,
                        int64_t now) noexcept nogil:
    cdef uint8_t evicted
    cdef int64_t slot
    if window.bucket_ns != 0:
        window_advance(window, now)
        slot = window.head_epoch % window.size
        window.bucket_calls[slot] += 1
        window.bucket_failures[slot] += failed
        window.bucket_slow[slot] += slow
    else:
        if window.filled == window.size:
            evicted = window.flags[window.head]
            window.calls -= 1
            window.failures -= evicted & FAILED_FLAG
            window.slow -= (evicted & SLOW_FLAG) >> 1
        else:
            window.filled += 1
        window.flags[window.head] = ((FAILED_FLAG if failed else 0)
                                     | (SLOW_FLAG if slow else 0))
        window.head += 1
        if window.head == window.size:
            window.head = 0
    window.calls += 1
    window.failures += failed
    window.slow += slow


cdef void window_advance(Window* window, int64_t now) noexcept nogil:
    # Evicts the buckets `now` has left behind; see the reference.
    if window.bucket_ns == 0:
        return
    cdef int64_t epoch = now // window.bucket_ns
    if epoch <= window.head_epoch:
        return
    cdef int64_t stale = window.head_epoch + 1, slot
    if stale < epoch - window.size + 1:
        stale = epoch - window.size + 1
    while stale <= epoch:
        slot = stale % window.size
        window.calls -= window.bucket_calls[slot]
        window.failures -= window.bucket_failures[slot]
        window.slow -= window.bucket_slow[slot]
        window.bucket_calls[slot] = 0
        window.bucket_failures[slot] = 0
        window.bucket_slow[slot] = 0
        stale += 1
    window.head_epoch = epoch
