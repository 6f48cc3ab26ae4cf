# The breaker's sliding window in C; the spec is
# src/ratefuse/core/breaker/_window_py.py.
from libc.stdint cimport int64_t, uint8_t


cdef struct Window:
    int64_t size
    int64_t bucket_ns       # 0: count-based
    int64_t calls
    int64_t failures
    int64_t slow
    # Count-based: ring of flags, next slot, slots used.
    uint8_t* flags
    int64_t head
    int64_t filled
    # Time-based: bucket e lives in slot e % size; head_epoch is the newest.
    int64_t* bucket_calls
    int64_t* bucket_failures
    int64_t* bucket_slow
    int64_t head_epoch


cdef int window_init(Window* window, int64_t size, int64_t bucket_ns) except -1
cdef void window_free(Window* window) noexcept
cdef void window_clear(Window* window) noexcept nogil
cdef void window_totals_after(const Window* window, bint failed, bint slow,
                              int64_t* calls, int64_t* failures,
                              int64_t* slow_calls) noexcept nogil
cdef void window_record(Window* window, bint failed, bint slow,
                        int64_t now) noexcept nogil
cdef void window_advance(Window* window, int64_t now) noexcept nogil
