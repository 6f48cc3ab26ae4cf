# Decision, compiled. The spec is src/ratefuse/core/_decision_py.py.
cimport cython
from libc.math cimport INFINITY
from libc.stdint cimport int64_t

from ratefuse.core._step cimport NEVER, StepResult

from ratefuse.engine.waiting import Reservation


@cython.final
@cython.freelist(64)
cdef class Decision:
    """`Decision` is the answer to one request for ``cost`` units.

    ``allowed``: the cost was admitted and consumed. ``remaining``: units
    that would be admitted right now after this decision. ``retry_after``:
    seconds until this cost could be admitted (0.0 if allowed, ``inf`` if it
    never can). ``reset_after``: seconds until the state is as if nothing had
    been admitted. ``limit``: the capacity of the limit that applied.
    Immutable; compares equal to a reference Decision with the same fields.
    """

    def __init__(self, bint allowed, int64_t remaining, double retry_after,
                 double reset_after, int64_t limit):
        self.allowed = allowed
        self.remaining = remaining
        self.retry_after = retry_after
        self.reset_after = reset_after
        self.limit = limit

    def astuple(self):
        """`astuple` returns the fields in declaration order."""
        return (self.allowed, self.remaining, self.retry_after,
                self.reset_after, self.limit)

    def __eq__(self, other):
        astuple = getattr(other, "astuple", None)
        if astuple is None or type(other).__name__ != "Decision":
            return NotImplemented
        return self.astuple() == astuple()

    def __hash__(self):
        return hash(self.astuple())

    def __reduce__(self):
        return (Decision, self.astuple())

    def __repr__(self):
        return (
            f"Decision(allowed={bool(self.allowed)}, remaining={self.remaining}, "
            f"retry_after={self.retry_after!r}, reset_after={self.reset_after!r}, "
            f"limit={self.limit})"
        )


cdef inline double ns_to_seconds(int64_t ns) noexcept nogil:
    return INFINITY if ns == NEVER else <double>ns / 1e9


cdef Decision make_decision(const StepResult* verdict, int64_t limit):
    cdef Decision decision = Decision.__new__(Decision)
    decision.allowed = verdict.allowed
    decision.remaining = verdict.remaining
    decision.retry_after = ns_to_seconds(verdict.retry_after_ns)
    decision.reset_after = ns_to_seconds(verdict.reset_after_ns)
    decision.limit = limit
    return decision


cdef object make_reservation(const StepResult* verdict, int64_t limit, object refund):
    # See reservation() in src/ratefuse/engine/_subject_py.py.
    cdef double delay = ns_to_seconds(verdict.retry_after_ns)
    cdef Decision decision = Decision.__new__(Decision)
    decision.allowed = verdict.allowed
    decision.remaining = verdict.remaining
    decision.retry_after = 0.0 if verdict.allowed else delay
    decision.reset_after = ns_to_seconds(verdict.reset_after_ns)
    decision.limit = limit
    return Reservation(verdict.allowed, delay, decision, refund)
