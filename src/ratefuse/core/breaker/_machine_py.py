"""The breaker state machine, reference implementation (spec of the C one).

`Machine` is pure: every step takes the time as ``now`` (integer ns) or
UNKNOWN_NOW, never reads a clock, runs no callbacks and is not thread-safe
(the core serialises it). A step that needs the time and is given
UNKNOWN_NOW changes nothing and returns NEED_NOW. A step changes state at
most once and leaves the state it left in ``changed_from`` (-1: no change)
for the core to report to listeners.

The rules (Resilience4j's):

- CLOSED permits every call and records outcomes in the sliding window; once
  it holds ``minimum_calls`` and the failure rate or slow-call rate reaches
  its threshold, the breaker opens.
- OPEN rejects until ``wait_ns`` has passed since it opened; the first call
  after that enters HALF_OPEN and is its first probe.
- HALF_OPEN permits ``half_open_calls`` probes per round (a probe whose
  outcome is IGNORED gives its permit back). When all of them are recorded
  the round's rates decide: over a threshold re-opens with the wait grown by
  ``backoff_multiplier`` (capped at ``max_wait_ns``), otherwise the breaker
  closes with an empty window and the base wait. A round that outlives
  ``max_half_open_ns`` (if set) with no permit left fails at the next call.
- FORCED_OPEN rejects and DISABLED permits every call; neither records.
- Every state change starts a new generation; an outcome whose permit came
  from another generation is ignored.
"""

from __future__ import annotations

from ratefuse.core.breaker._window_py import SlidingWindow
from ratefuse.core.breaker.spec import (
    DONE,
    FAILURE,
    IGNORED,
    ILLEGAL,
    NEED_NOW,
    REJECTED,
    TRANSITION_MASKS,
    UNKNOWN_NOW,
    WAIT_FOREVER,
    BreakerSpec,
    State,
    exceeds,
    grow_wait,
)

CLOSED = int(State.CLOSED)
OPEN = int(State.OPEN)
HALF_OPEN = int(State.HALF_OPEN)
FORCED_OPEN = int(State.FORCED_OPEN)
DISABLED = int(State.DISABLED)


class Machine:
    """`Machine` is one breaker's state; see the module doc for the rules."""

    __slots__ = (
        "changed_from",
        "entered",
        "failures",
        "generation",
        "half_open_at_ns",
        "opened_at_ns",
        "permitted",
        "probe_calls",
        "probe_failures",
        "probe_slow",
        "probes_issued",
        "rejected",
        "rejected_total",
        "slow_calls",
        "spec",
        "state",
        "successes",
        "wait_ns",
        "window",
    )

    def __init__(self, spec: BreakerSpec) -> None:
        self.spec = spec
        self.window = SlidingWindow(
            spec.window_size, 0 if spec.count_window else spec.bucket_ns
        )
        self.state = CLOSED
        self.generation = 1
        self.changed_from = -1
        self.opened_at_ns = 0
        self.wait_ns = spec.wait_ns
        self.half_open_at_ns = 0
        self.probes_issued = 0
        self.probe_calls = 0
        self.probe_failures = 0
        self.probe_slow = 0
        self.rejected = 0
        # Counters since construction, never reset: calls permitted and
        # rejected, outcomes recorded, and state changes into each state.
        self.permitted = 0
        self.rejected_total = 0
        self.successes = 0
        self.failures = 0
        self.slow_calls = 0
        self.entered = [0, 0, 0, 0, 0]

    def acquire(self, now: int) -> int:
        """`acquire` returns the generation (>= 1) if a call may go ahead,
        REJECTED (counted in ``rejected``) if not, or NEED_NOW."""
        state = self.state
        if state in (CLOSED, DISABLED):
            self.permitted += 1
            return self.generation
        if state == OPEN:
            if now == UNKNOWN_NOW:
                return NEED_NOW
            if now - self.opened_at_ns >= self.wait_ns:
                self._enter(HALF_OPEN, now)
                self.probes_issued = 1
                self.permitted += 1
                return self.generation
        elif state == HALF_OPEN:
            spec = self.spec
            if self.probes_issued < spec.half_open_calls:
                self.probes_issued += 1
                self.permitted += 1
                return self.generation
            if spec.max_half_open_ns:
                if now == UNKNOWN_NOW:
                    return NEED_NOW
                if now - self.half_open_at_ns >= spec.max_half_open_ns:
                    self._reopen(now)
        self.rejected += 1
        self.rejected_total += 1
        return REJECTED

    def record(self, generation: int, outcome: int, duration_ns: int, now: int) -> int:
        """`record` records the outcome of a call permitted in ``generation``
        that took ``duration_ns``; returns DONE or NEED_NOW."""
        if generation != self.generation:
            return DONE
        state = self.state
        if state not in (CLOSED, HALF_OPEN):
            return DONE
        spec = self.spec
        failed = outcome == FAILURE
        slow = spec.slow_call_ns > 0 and duration_ns > spec.slow_call_ns
        if state == HALF_OPEN:
            return self._record_probe(outcome, failed, slow, now)
        if outcome == IGNORED:
            return DONE
        window = self.window
        if not spec.count_window:
            if now == UNKNOWN_NOW:
                return NEED_NOW
        elif now == UNKNOWN_NOW:
            # Only opening needs the time: look ahead before changing anything.
            calls, failures, slow_calls = window.totals_after(failed, slow)
            if exceeds(spec, calls, failures, slow_calls, spec.minimum_calls):
                return NEED_NOW
        window.record(failed, slow, now)
        self._tally(failed, slow)
        if exceeds(
            spec, window.calls, window.failures, window.slow, spec.minimum_calls
        ):
            self._enter(OPEN, now)
        return DONE

    def _record_probe(self, outcome: int, failed: bool, slow: bool, now: int) -> int:
        if outcome == IGNORED:
            if self.probes_issued > 0:
                self.probes_issued -= 1
            return DONE
        spec = self.spec
        calls = self.probe_calls + 1
        failures = self.probe_failures + failed
        slow_calls = self.probe_slow + slow
        complete = calls >= spec.half_open_calls
        reopen = complete and exceeds(spec, calls, failures, slow_calls, calls)
        if reopen and now == UNKNOWN_NOW:
            return NEED_NOW
        self.probe_calls, self.probe_failures, self.probe_slow = (
            calls,
            failures,
            slow_calls,
        )
        self._tally(failed, slow)
        if reopen:
            self._reopen(now)
        elif complete:
            self._enter(CLOSED, now)
        return DONE

    def transition(self, target: int, now: int) -> int:
        """`transition` enters ``target`` by hand; returns DONE, ILLEGAL (and
        changes nothing) or NEED_NOW."""
        if not TRANSITION_MASKS[self.state] >> target & 1:
            return ILLEGAL
        if now == UNKNOWN_NOW and target in (OPEN, HALF_OPEN):
            return NEED_NOW
        self._enter(target, now)
        return DONE

    def reset(self) -> None:
        """`reset` closes the breaker as if new (base wait, empty window, no
        rejections) in a new generation."""
        self._enter(CLOSED, UNKNOWN_NOW)
        self.rejected = 0

    def retry_after_ns(self, now: int) -> int:
        """`retry_after_ns` is how long a rejected call should wait: the rest
        of the OPEN wait, WAIT_FOREVER when FORCED_OPEN, else 0; or NEED_NOW."""
        state = self.state
        if state == FORCED_OPEN:
            return WAIT_FOREVER
        if state != OPEN:
            return 0
        if now == UNKNOWN_NOW:
            return NEED_NOW
        left = self.opened_at_ns + self.wait_ns - now
        return left if left > 0 else 0

    def advance(self, now: int) -> int:
        """`advance` evicts what a CLOSED time-based window has left behind
        at ``now``, for reading; returns DONE or NEED_NOW."""
        if self.spec.count_window or self.state != CLOSED:
            return DONE
        if now == UNKNOWN_NOW:
            return NEED_NOW
        self.window.advance(now)
        return DONE

    def respec(self, spec: BreakerSpec) -> None:
        """`respec` makes ``spec`` the rules from the next step on, keeping
        the state, generation and counters. The window keeps its outcomes
        if its shape (type, size, bucket) is unchanged, else starts empty.
        A wait not grown by backoff becomes the new wait_duration; a grown
        one is capped by the new max_wait_duration."""
        old = self.spec
        if (old.count_window, old.window_size, old.bucket_ns) != (
            spec.count_window,
            spec.window_size,
            spec.bucket_ns,
        ):
            self.window = SlidingWindow(
                spec.window_size, 0 if spec.count_window else spec.bucket_ns
            )
        if self.wait_ns == old.wait_ns:
            self.wait_ns = spec.wait_ns
        else:
            self.wait_ns = min(self.wait_ns, spec.max_wait_ns)
        self.spec = spec

    def _tally(self, failed: bool, slow: bool) -> None:
        # Counts an outcome the machine recorded.
        if failed:
            self.failures += 1
        else:
            self.successes += 1
        if slow:
            self.slow_calls += 1

    def _reopen(self, now: int) -> None:
        # A failed probe round: open again, for longer.
        self.wait_ns = grow_wait(self.spec, self.wait_ns)
        self._enter(OPEN, now)

    def _enter(self, target: int, now: int) -> None:
        # Precondition: ``now`` is known if target is OPEN or HALF_OPEN.
        self.changed_from = self.state
        self.state = target
        self.generation += 1
        self.entered[target] += 1
        if target == CLOSED:
            self.window.clear()
            self.wait_ns = self.spec.wait_ns
        elif target == OPEN:
            self.opened_at_ns = now
        elif target == HALF_OPEN:
            self.half_open_at_ns = now
            self.probes_issued = 0
            self.probe_calls = self.probe_failures = self.probe_slow = 0
