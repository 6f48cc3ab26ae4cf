"""The breaker state machine, reference implementation (spec of the C one).

`Machine` is pure: every step takes the time as ``now`` (integer ns) or
UNKNOWN_NOW, never reads a clock, runs no callbacks and is not thread-safe
(the core serialises it). A step that needs the time and is given
UNKNOWN_NOW changes nothing and returns NEED_NOW. A step changes state at
most twice (an expired probe round re-opens, and a wait already over lets the
call in as the first probe of a new round): it leaves the state it left in
``changed_from`` (-1: no change) and the one it passed through in
``changed_via`` (-1: none) for the core to report to listeners.

The rules (Resilience4j's):

- CLOSED permits every call and records outcomes in the sliding window; once
  it holds ``minimum_calls`` and the failure rate or slow-call rate reaches
  its threshold, the breaker opens.
- OPEN rejects until ``wait_ns`` has passed since it opened; the first call
  after that enters HALF_OPEN and is its first probe.
- HALF_OPEN permits ``half_open_calls`` probes per round (a probe whose
  outcome is IGNORED gives its permit back). When min(``minimum_calls``,
  ``half_open_calls``) of them are recorded the round's rates decide: over a
  threshold re-opens, otherwise the breaker closes with an empty window. A
  round still undecided ``max_half_open_ns`` (if set) after it began
  re-opens at that deadline, applied by the next step that needs the time.
- FORCED_OPEN rejects and DISABLED permits every call; neither records.
- The wait: entering OPEN or FORCED_OPEN (for any cause, also by hand or
  again from OPEN) takes the base wait if the breaker has not opened since
  CLOSED or DISABLED, else grows it by ``backoff_multiplier`` (capped at
  ``max_wait_ns``); HALF_OPEN keeps it; CLOSED and DISABLED reset it.
- Each state starts its own ``rejected`` count and shows its own tally
  (``shown``, see Shown), except that OPEN continues its predecessor's.
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
    Shown,
    State,
    exceeds,
    next_wait,
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
        "changed_via",
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
        "shown",
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
        self.changed_via = -1
        self.shown = int(Shown.WINDOW)
        self.opened_at_ns = 0
        # 0: not opened since CLOSED or DISABLED (see next_wait).
        self.wait_ns = 0
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
            if spec.max_half_open_ns:
                if now == UNKNOWN_NOW:
                    return NEED_NOW
                if now - self.half_open_at_ns >= spec.max_half_open_ns:
                    self._expire_round()
                    if now - self.opened_at_ns >= self.wait_ns:
                        self._enter(HALF_OPEN, now)
                        self.probes_issued = 1
                        self.permitted += 1
                        return self.generation
                    self.rejected += 1
                    self.rejected_total += 1
                    return REJECTED
            if self.probes_issued < spec.half_open_calls:
                self.probes_issued += 1
                self.permitted += 1
                return self.generation
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
            # Giving a permit back needs no time, so it works while the
            # clock fails.
            if self.probes_issued > 0:
                self.probes_issued -= 1
            return DONE
        spec = self.spec
        if spec.max_half_open_ns:
            if now == UNKNOWN_NOW:
                return NEED_NOW
            if now - self.half_open_at_ns >= spec.max_half_open_ns:
                # Too late: the round is over, and this outcome with it.
                self._expire_round()
                return DONE
        calls = self.probe_calls + 1
        failures = self.probe_failures + failed
        slow_calls = self.probe_slow + slow
        # Resilience4j judges a round on min(minimum, permitted) outcomes.
        complete = calls >= min(spec.minimum_calls, spec.half_open_calls)
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
            self._enter(OPEN, now)
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
        at ``now``, for reading; returns DONE or NEED_NOW. Like `state`, it
        leaves a probe round past its deadline to the next step."""
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

    def _expire_round(self) -> None:
        # A probe round past its deadline: OPEN from the deadline on, as if
        # Resilience4j's timer had fired then.
        self._enter(OPEN, self.half_open_at_ns + self.spec.max_half_open_ns)

    def _enter(self, target: int, now: int) -> None:
        # Precondition: ``now`` is known if target is OPEN or HALF_OPEN.
        # A second change in one step keeps the first one's origin and
        # records the state passed through.
        source = self.state
        if self.changed_from < 0:
            self.changed_from = source
        else:
            self.changed_via = source
        self.state = target
        self.generation += 1
        if target != source:
            self.entered[target] += 1
        if target != OPEN:
            self.rejected = 0
        if target in (CLOSED, DISABLED):
            self.wait_ns = 0
        elif target in (OPEN, FORCED_OPEN):
            self.wait_ns = next_wait(self.spec, self.wait_ns)
        if target == CLOSED:
            self.window.clear()
            self.shown = Shown.WINDOW
        elif target == OPEN:
            self.opened_at_ns = now
            if source == HALF_OPEN:
                self.shown = Shown.PROBES
            elif source != OPEN:
                self.shown = Shown.WINDOW if source == CLOSED else Shown.NOTHING
        elif target == HALF_OPEN:
            self.half_open_at_ns = now
            self.probes_issued = 0
            self.probe_calls = self.probe_failures = self.probe_slow = 0
            self.shown = Shown.PROBES
        else:
            self.shown = Shown.NOTHING
