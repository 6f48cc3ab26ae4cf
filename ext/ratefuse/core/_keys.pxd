# Key fingerprints, compiled, inlined into every keyed engine (the in-memory
# table's _keyed_c and the shared-memory table's _shm_c). The spec is
# src/ratefuse/core/_keys_py.py: the same bytes and the same SipHash-1-3.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_Check
from cpython.unicode cimport PyUnicode_Check
from libc.stdint cimport int64_t, uint64_t

cdef extern from "ratefuse_siphash.h":
    uint64_t ratefuse_siphash13(uint64_t k0, uint64_t k1, const void* data,
                                size_t length) noexcept nogil

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define RATEFUSE_TO_LE64(value) __builtin_bswap64(value)
    #else
    #define RATEFUSE_TO_LE64(value) (value)
    #endif
    """
    uint64_t to_le64 "RATEFUSE_TO_LE64"(uint64_t value) noexcept nogil

cdef enum:
    TAG_STR = 1
    TAG_BYTES = 2
    TAG_INT = 3
    TAG_BIG_INT = 4


cdef inline uint64_t nonzero(uint64_t value) noexcept nogil:
    return value if value != 0 else 1


cdef inline uint64_t hash_bytes(uint64_t k0, uint64_t k1, uint64_t tag,
                                const char* data, Py_ssize_t size) noexcept nogil:
    # The key's type is folded into the secret: k0 ^ tag * golden ratio.
    return nonzero(ratefuse_siphash13(k0 ^ (tag * 0x9E3779B97F4A7C15ULL), k1, data,
                                      size))


cdef inline uint64_t int_fingerprint(uint64_t k0, uint64_t k1,
                                     int64_t key) noexcept nogil:
    # An int key in int64 range: its 8 bytes, little-endian on every host.
    cdef uint64_t little = to_le64(<uint64_t>key)
    return hash_bytes(k0, k1, TAG_INT, <const char*>&little, 8)


cdef inline uint64_t key_fingerprint(uint64_t k0, uint64_t k1, object key) except 0:
    cdef const char* data
    cdef Py_ssize_t size
    cdef int overflow = 0
    cdef long long value
    if PyUnicode_Check(key):
        try:
            data = PyUnicode_AsUTF8AndSize(key, &size)
        except UnicodeEncodeError:  # lone surrogates: still a distinct key
            encoded = key.encode("utf-8", "surrogatepass")
            data, size = PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded)
        return hash_bytes(k0, k1, TAG_STR, data, size)
    if PyBytes_Check(key):
        return hash_bytes(k0, k1, TAG_BYTES, PyBytes_AS_STRING(key),
                          PyBytes_GET_SIZE(key))
    if PyLong_Check(key):
        value = PyLong_AsLongLongAndOverflow(key, &overflow)
        if not overflow:
            return int_fingerprint(k0, k1, value)
        # Beyond int64: two's complement, little-endian, as few bytes as
        # hold the sign (linear in the size; decimal text is quadratic
        # and Python refuses it above 4,300 digits).
        key = int(key)
        encoded = key.to_bytes(key.bit_length() // 8 + 1, "little", signed=True)
        return hash_bytes(k0, k1, TAG_BIG_INT, PyBytes_AS_STRING(encoded),
                          PyBytes_GET_SIZE(encoded))
    raise TypeError(f"key must be str, bytes or int, got {type(key).__name__}")
