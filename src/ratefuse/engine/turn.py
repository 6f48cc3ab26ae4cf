"""`Turn`: the reference cores' lock, safe against their own thread.

A finalizer (run by the garbage collector on any allocation) or a signal
handler (run between any two bytecodes of the main thread) may decide on
the very limiter whose lock its thread holds. With a plain lock that call
waits for its own thread for ever, and every other thread with it; with a
re-entrant lock it would decide on a state the interrupted decision has
half written. `Turn` refuses instead: `enter` tells the nested call that
it interrupted its own thread's turn, so the core answers it without
touching the state (a denial that says it cannot be decided there, or work
deferred to the end of the interrupted turn with `defer`).

The compiled cores need none of this: they run no Python code while they
hold a limiter's state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from ratefuse.core.spec import NEVER
from ratefuse.core.step_result import StepResult

# The answer to a decision that interrupted its own thread's turn on the
# same limiter: denied, retry_after inf (it cannot be decided there, and
# waiting would wait for the decision it interrupted), nothing consumed.
NESTED: Final = StepResult(False, 0, NEVER, 0)


class Turn:
    """`Turn` is a lock held by one thread at a time that never makes its
    holder's thread wait for itself. Thread-safe."""

    __slots__ = ("_deferred", "_depth", "_lock")

    def __init__(self) -> None:
        # Re-entrant only so that a nested call can look: `_depth`, read and
        # written only while the lock is held, says whether the turn is
        # already taken by an interrupted call of this thread.
        self._lock = threading.RLock()
        self._depth = 0
        self._deferred: list[Callable[[], None]] = []

    def enter(self) -> bool:
        """`enter` takes the turn, waiting for other threads, and reports
        True; False, at once and without the turn, when this thread already
        holds it (the caller interrupted its own thread's turn). A call
        interrupted before it has marked the turn taken, or after it has
        marked it free, has not touched the state, so the nested call may
        take it then."""
        self._lock.acquire()
        if self._depth:
            self._lock.release()
            return False
        self._depth = 1
        return True

    def exit(self) -> None:
        """`exit` runs the work deferred during the turn, then gives it up.
        Precondition: `enter` returned True on this thread."""
        try:
            while True:
                while self._deferred:
                    self._deferred.pop(0)()
                self._depth = 0
                # A nested call that deferred its work after the loop and
                # before the turn was marked free: run it too. One that comes
                # after this check finds the turn free and takes it itself.
                if not self._deferred:
                    break
                self._depth = 1
        finally:
            self._depth = 0
            self._lock.release()

    def run_or_defer(self, work: Callable[[], None]) -> None:
        """`run_or_defer` runs ``work`` in a turn of its own, or, when this
        thread's turn was interrupted, at the end of that turn (a refund or
        a reset needs no answer, so it need not be refused)."""
        if not self.enter():
            self._deferred.append(work)
            return
        try:
            work()
        finally:
            self.exit()
