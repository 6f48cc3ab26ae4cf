# cython: language_level=3
"""`KeyMaker`, compiled: the reference is src/ratefuse/redis/_keys_py.py
(its docstring says what it does); the same keys, and the same cache
entries, for every subject.

BLAKE2b is ratefuse_blake2b.h's (hashlib's own is reached only through
Python objects, a copy, an update and a hexdigest per key: most of a
batch's client CPU). An ASCII str is hashed from its own buffer, an int
of 64 bits from its two's complement written here; any other str, bytes
or int as the reference encodes it.
"""

from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem, PyDict_Size
from cpython.list cimport PyList_Append
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_AsEncodedString
from libc.stdint cimport uint64_t
from libc.string cimport memcpy


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    const char *PyUnicode_AsUTF8AndSize(object, Py_ssize_t *) except NULL


cdef extern from "ratefuse_blake2b.h":
    ctypedef struct ratefuse_blake2b:
        pass
    void ratefuse_b2_init(
        ratefuse_blake2b *s, size_t outlen, const unsigned char *person
    )
    void ratefuse_b2_update(
        ratefuse_blake2b *s, const unsigned char *data, size_t length
    )
    void ratefuse_b2_final_hex(ratefuse_blake2b *s, char *hex)


cdef enum:
    # As the reference's constants.
    TAG_BYTES = 16
    CACHE_SUBJECT_BYTES = 256


cdef class KeyMaker:
    """`KeyMaker`: see src/ratefuse/redis/_keys_py.py."""

    cdef ratefuse_blake2b _str
    cdef ratefuse_blake2b _bytes
    cdef ratefuse_blake2b _int
    cdef bytes _head
    cdef bytes _tail
    cdef Py_ssize_t _entries

    def __init__(
        self, bytes person, bytes framed, bytes head, bytes tail, Py_ssize_t entries
    ):
        cdef unsigned char padded[16]
        cdef Py_ssize_t index
        if len(person) > 16:
            raise ValueError(f"person must be at most 16 bytes, got {len(person)}")
        for index in range(16):
            padded[index] = person[index] if index < len(person) else 0
        ratefuse_b2_init(&self._str, TAG_BYTES, padded)
        ratefuse_b2_update(
            &self._str, <const unsigned char *>PyBytes_AS_STRING(framed), len(framed)
        )
        self._bytes = self._str
        self._int = self._str
        ratefuse_b2_update(&self._str, <const unsigned char *>b"s", 1)
        ratefuse_b2_update(&self._bytes, <const unsigned char *>b"b", 1)
        ratefuse_b2_update(&self._int, <const unsigned char *>b"i", 1)
        self._head = head
        self._tail = tail
        self._entries = entries

    cdef bytes _key(self, ratefuse_blake2b *base, const char *data, Py_ssize_t size):
        # The key whose tag hashes ``data`` after ``base``.
        cdef ratefuse_blake2b state = base[0]
        cdef Py_ssize_t head = PyBytes_GET_SIZE(self._head)
        cdef Py_ssize_t tail = PyBytes_GET_SIZE(self._tail)
        cdef bytes key = PyBytes_FromStringAndSize(NULL, head + 2 * TAG_BYTES + tail)
        cdef char *out = PyBytes_AS_STRING(key)
        ratefuse_b2_update(&state, <const unsigned char *>data, size)
        memcpy(out, PyBytes_AS_STRING(self._head), head)
        ratefuse_b2_final_hex(&state, out + head)
        memcpy(out + head + 2 * TAG_BYTES, PyBytes_AS_STRING(self._tail), tail)
        return key

    cdef bytes _int_key(self, object subject, bint *cacheable):
        # The key of an int subject: two's complement, big-endian, in the
        # fewest bytes that hold its sign bit (as subject_bytes).
        cdef int overflow = 0
        cdef long long value = PyLong_AsLongLongAndOverflow(subject, &overflow)
        cdef uint64_t bits, magnitude
        cdef unsigned char encoded[9]
        cdef Py_ssize_t size, index
        cdef bytes wide
        if overflow:
            size = subject.bit_length()
            cacheable[0] = size <= 64
            wide = subject.to_bytes(size // 8 + 1, "big", signed=True)
            return self._key(&self._int, PyBytes_AS_STRING(wide), len(wide))
        bits = <uint64_t>value
        magnitude = (<uint64_t>0 - bits) if value < 0 else bits
        size = 0
        while magnitude:
            size += 1
            magnitude >>= 1
        size = size // 8 + 1
        for index in range(size):
            if index < 8:
                encoded[size - 1 - index] = <unsigned char>(bits >> (8 * index))
            else:
                encoded[size - 1 - index] = 0xFF if value < 0 else 0
        cacheable[0] = True
        return self._key(&self._int, <const char *>encoded, size)

    def keys(self, subjects, dict cache, fallback):
        """`keys`: see src/ratefuse/redis/_keys_py.py."""
        cdef list keys = []
        cdef PyObject *found
        cdef Py_ssize_t size
        cdef const char *data
        cdef bytes encoded, key
        cdef bint cacheable
        for subject in subjects:
            kind = type(subject)
            if kind is str or kind is bytes or kind is int:
                found = PyDict_GetItem(cache, subject)
                if found is not NULL:
                    PyList_Append(keys, <object>found)
                    continue
                if kind is str:
                    if PyUnicode_IS_ASCII(subject):
                        data = PyUnicode_AsUTF8AndSize(subject, &size)
                        key = self._key(&self._str, data, size)
                    else:
                        encoded = PyUnicode_AsEncodedString(
                            subject, "utf-8", "surrogatepass"
                        )
                        key = self._key(
                            &self._str, PyBytes_AS_STRING(encoded), len(encoded)
                        )
                    cacheable = len(subject) <= CACHE_SUBJECT_BYTES
                elif kind is bytes:
                    key = self._key(
                        &self._bytes, PyBytes_AS_STRING(subject), len(subject)
                    )
                    cacheable = len(subject) <= CACHE_SUBJECT_BYTES
                else:
                    key = self._int_key(subject, &cacheable)
                if cacheable:
                    if PyDict_Size(cache) >= self._entries:
                        cache.clear()
                    PyDict_SetItem(cache, subject, key)
            else:
                key = fallback(subject)
            PyList_Append(keys, key)
        return keys
