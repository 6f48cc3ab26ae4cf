# The common unary call of a GuardedAioChannel, compiled. The spec is
# src/ratefuse/grpc/_unary_py.py: same names, decisions and outcomes.
# Compiled because this is all a CLOSED breaker adds to a grpc.aio unary
# call: here taking the permit, wrapping the call, awaiting and freeing it
# run no Python frame, and the compiled breaker's steps are its C ones.
cimport cython
from libc.stdint cimport int64_t

from ratefuse.core.breaker._machine_c cimport (
    IGNORED,
    REJECTED,
    SUCCESS,
    UNKNOWN_NOW,
)
from ratefuse.engine._breaker_c cimport BreakerCore, Permit

import grpc

from ratefuse.grpc.call_aio import RefusedCall

cdef object AioRpcError = grpc.aio.AioRpcError
cdef object OK = grpc.StatusCode.OK
cdef int64_t UNTIMED = -1


@cython.final
@cython.freelist(16)
cdef class GuardedUnaryCall:
    """`GuardedUnaryCall` is a real grpc.aio call with one response (its
    methods are the call's) under a breaker's ``permit``: awaiting it
    records the outcome, by the status (`ratefuse.grpc.guard.Guard.record`)
    or, cancelled, as none. A call dropped without being awaited gives its
    permit back with no outcome."""

    cdef object _call
    cdef object _guard
    cdef object _breaker
    cdef object _permit
    cdef int64_t _start_ns

    def __init__(self, call, guard, breaker, permit, int64_t start_ns):
        self._call = call
        self._guard = guard
        self._breaker = breaker
        self._permit = permit
        self._start_ns = start_ns

    def __getattr__(self, name):
        return getattr(self._call, name)

    def __await__(self):
        try:
            response = yield from self._call.__await__()
        except AioRpcError as error:
            self._record(error.code(), error.details())
            raise
        except BaseException:
            self._release()  # cancelled: no outcome
            raise
        self._record(OK, None)
        return response

    cdef int _record(self, code, details) except -1:
        permit = self._permit
        if permit is None:  # awaited before
            return 0
        self._permit = None
        if code is not OK or self._start_ns != UNTIMED:
            self._guard.record(self._breaker, permit, self._start_ns, code,
                               details)
        elif type(permit) is Permit:
            # Permit.on_success(0.0), without the method call.
            (<Permit>permit)._core.record_c(
                (<Permit>permit).generation, SUCCESS, 0, UNKNOWN_NOW)
        else:
            permit.on_success(0.0)
        return 0

    cdef int _release(self) except -1:
        permit = self._permit
        if permit is not None:
            self._permit = None
            permit.release()
        return 0

    def __dealloc__(self):
        if self._permit is not None:  # never awaited: no outcome
            self._release()


@cython.final
cdef class UnaryMultiCallable:
    """`UnaryMultiCallable` is the multicallable of a method with one
    response guarded by ``breaker`` alone (see the reference module):
    ``general`` (the channel's GuardedMultiCallable) takes the calls a
    timed breaker guards."""

    cdef object _general
    cdef object _real
    cdef object _guard
    cdef BreakerCore _breaker

    def __init__(self, general, real, guard, BreakerCore breaker not None):
        self._general = general
        self._real = real
        self._guard = guard
        self._breaker = breaker

    def __call__(self, *request, **options):
        cdef BreakerCore breaker = self._breaker
        if breaker._timed:
            return self._general(*request, **options)
        # The real call starts now (grpc.aio sends it at once), so this is
        # as late as the permit can be taken.
        cdef int64_t now = UNKNOWN_NOW
        cdef int64_t generation = breaker.acquire_c(&now)
        if generation == REJECTED:
            return RefusedCall(self._guard.rejected(breaker.open_error_c(now)))
        try:
            call = self._real(*request, **options)
        except BaseException:
            breaker.record_c(generation, IGNORED, 0, UNKNOWN_NOW)
            raise
        cdef GuardedUnaryCall guarded = GuardedUnaryCall.__new__(GuardedUnaryCall)
        guarded._call = call
        guarded._guard = self._guard
        guarded._breaker = breaker
        guarded._permit = breaker._permit_of(generation)
        guarded._start_ns = UNTIMED
        return guarded


def unary_multicallable(general, real, guard):
    """`unary_multicallable` is the multicallable of a method with one
    response: a `UnaryMultiCallable` where the reference module says, else
    ``general``."""
    breaker = guard.breaker
    if (guard.breaker_is_fixed and guard.limiter is None
            and isinstance(breaker, BreakerCore)):
        return UnaryMultiCallable(general, real, guard, breaker)
    return general
