# The breaker's sync decorator, compiled. The spec is GuardedFunction in
# src/ratefuse/engine/_breaker_call_py.py: same behaviour, same clock calls.
cimport cython
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t

from ratefuse.engine._breaker_c cimport BreakerCore
from ratefuse.core.breaker._machine_c cimport REJECTED, UNKNOWN_NOW

import types

from ratefuse.core.errors import CircuitOpenError

cdef extern from *:
    """
    /* Lets instances of `type` be called through the vectorcall protocol,
       with the function pointer stored `offset` bytes into each instance:
       the guarded call then receives its arguments as the caller's array,
       with no tuple or dict built, like a plain Python function. */
    static void ratefuse_enable_vectorcall(PyTypeObject *type,
                                           Py_ssize_t offset) {
        type->tp_vectorcall_offset = offset;
        type->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
    }
    """
    ctypedef PyObject* (*vectorcallfunc)(PyObject*, PyObject* const*, size_t,
                                         PyObject*)
    void ratefuse_enable_vectorcall(PyTypeObject* type, Py_ssize_t offset)
    object PyObject_Vectorcall(object, PyObject* const*, size_t, PyObject*)
    object PyVectorcall_Call(object, object, object)
    void PyErr_SetObject(object, object)


@cython.final
cdef class GuardedFunction:
    """`GuardedFunction` calls ``function`` through ``core``: rejected calls
    return ``fallback(*args, **kwargs)`` if a fallback is given, else raise
    CircuitOpenError; permitted ones are timed if the breaker is `timed`
    and their outcome recorded. Binds like a function when used as a method;
    `BreakerCore.guarded` also copies the function's name and doc onto it.
    Thread-safe.
    """

    cdef vectorcallfunc _vectorcall
    cdef BreakerCore _core
    cdef object _function
    cdef object _fallback
    cdef dict __dict__
    cdef object __weakref__

    def __init__(self, BreakerCore core not None, function, fallback=None):
        self._core = core
        self._function = function
        self._fallback = fallback
        self._vectorcall = <vectorcallfunc>guarded_vectorcall

    @property
    def breaker(self):
        """`breaker` is the breaker guarding the function."""
        return self._core

    def __call__(self, *args, **kwargs):
        # Reached only through PyObject_Call (a tuple and a dict); every other
        # call goes straight to guarded_vectorcall.
        return PyVectorcall_Call(self, args, kwargs)

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __reduce__(self):
        # Pickled by reference, like the function it replaces (guarded()
        # copied that function's name onto it).
        return self.__qualname__

    def __repr__(self):
        return f"<GuardedFunction {self._function!r} by {self._core._name!r}>"


cdef PyObject* guarded_vectorcall(GuardedFunction self, PyObject* const* args,
                                  size_t nargsf, PyObject* kwnames) except NULL:
    # The decorator's hot path. A rejection sets CircuitOpenError and returns
    # NULL itself, so no C traceback entry is built for it.
    cdef BreakerCore core = self._core
    cdef int64_t now = UNKNOWN_NOW
    cdef int64_t generation = core._acquire_c(&now)
    cdef object result
    if generation == REJECTED:
        if self._fallback is not None:
            result = PyObject_Vectorcall(self._fallback, args, nargsf, kwnames)
            Py_INCREF(result)
            return <PyObject*>result
        PyErr_SetObject(CircuitOpenError, core._open_error_c(now))
        return NULL
    cdef int64_t start_ns = core._start_c()
    try:
        result = PyObject_Vectorcall(self._function, args, nargsf, kwnames)
    except BaseException as exc:
        core._guard_exception_c(generation, exc, start_ns)
        raise
    core._guard_result_c(generation, result, start_ns)
    Py_INCREF(result)
    return <PyObject*>result


cdef Py_ssize_t vectorcall_offset(GuardedFunction probe):
    return <Py_ssize_t>(<char*>&probe._vectorcall - <char*><void*>probe)


ratefuse_enable_vectorcall(<PyTypeObject*>GuardedFunction,
                           vectorcall_offset(GuardedFunction.__new__(GuardedFunction)))
