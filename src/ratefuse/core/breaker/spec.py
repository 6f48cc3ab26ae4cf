"""The breaker's shared vocabulary: states, outcomes, transitions, `BreakerSpec`.

Both breaker cores (compiled ``_breaker_c`` and reference ``_breaker_py``)
decide with these integers; the public :mod:`ratefuse.breaker` builds a
`BreakerSpec` from a validated config, so a spec reaching a core is known to
be valid.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from ratefuse.core.errors import RatefuseError


class State(enum.IntEnum):
    """`State` is a circuit breaker's state.

    CLOSED lets calls through and records their outcomes; OPEN rejects them
    until its wait is over; HALF_OPEN lets a bounded round of probes through
    whose outcomes close or re-open the breaker. FORCED_OPEN (rejects
    everything) and DISABLED (lets everything through, records nothing) are
    manual overrides that only a manual transition leaves.
    """

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2
    FORCED_OPEN = 3
    DISABLED = 4


# Listener is called as listener(breaker, old_state, new_state).
Listener = Callable[[Any, State, State], object]

# LEGAL_TRANSITIONS maps each state to the states a transition may enter from
# it, as in Resilience4j. Every state may re-enter itself, which restarts it
# (a new generation; CLOSED forgets its window, OPEN restarts its wait,
# HALF_OPEN starts a new probe round). The one illegal move is CLOSED to
# HALF_OPEN: a probe round makes sense only after an open period.
LEGAL_TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.CLOSED: frozenset(
        {State.CLOSED, State.OPEN, State.FORCED_OPEN, State.DISABLED}
    ),
    State.OPEN: frozenset(State),
    State.HALF_OPEN: frozenset(State),
    State.FORCED_OPEN: frozenset(State),
    State.DISABLED: frozenset(State),
}

# TRANSITION_MASKS[from] has bit ``to`` set iff from -> to is legal; the
# compiled core copies it into C at import.
TRANSITION_MASKS: Final[tuple[int, ...]] = tuple(
    sum(1 << target for target in LEGAL_TRANSITIONS[source]) for source in State
)


class Outcome(enum.IntEnum):
    """`Outcome` is how a permitted call ended. SUCCESS and FAILURE are
    recorded; IGNORED gives a half-open probe permit back and records
    nothing."""

    SUCCESS = 0
    FAILURE = 1
    IGNORED = 2


SUCCESS: Final = Outcome.SUCCESS
FAILURE: Final = Outcome.FAILURE
IGNORED: Final = Outcome.IGNORED


class MachineStep(enum.IntEnum):
    """`MachineStep` is what a machine step reports besides a value: DONE;
    NEED_NOW, when the step needs the time and was given UNKNOWN_NOW (it
    changed nothing: the caller reads its clock and repeats the step, which
    keeps the steps pure and lets the common paths, a CLOSED breaker with a
    count window and no slow-call threshold, run without reading any
    clock); ILLEGAL, a manual transition the table forbids (nothing
    changed)."""

    DONE = 0
    NEED_NOW = -2
    ILLEGAL = -3


DONE: Final = MachineStep.DONE
NEED_NOW: Final = MachineStep.NEED_NOW
ILLEGAL: Final = MachineStep.ILLEGAL

# UNKNOWN_NOW is a `now` argument the caller has not read yet (times are
# >= 0).
UNKNOWN_NOW: Final = -1

# REJECTED is what acquire returns instead of a generation (generations
# start at 1).
REJECTED: Final = 0

# WAIT_FOREVER is the retry_after_ns of a breaker that no wait will let
# through (FORCED_OPEN); distinct from every other sentinel.
WAIT_FOREVER: Final = -4


class Shown(enum.IntEnum):
    """`Shown` is the tally a breaker's metrics show, per state as in
    Resilience4j, where every state owns its metrics: the sliding WINDOW
    (CLOSED, and OPEN entered from CLOSED), the PROBES of the last round
    (HALF_OPEN, and OPEN after a failed or expired round), or NOTHING
    (FORCED_OPEN, DISABLED, and OPEN entered from them)."""

    WINDOW = 0
    PROBES = 1
    NOTHING = 2


# Bounds that keep the integer arithmetic inside int64 in the compiled core
# (times are bounded by _spec.MAX_NOW_NS, as for the limiters):
# a time plus a duration, or their difference, never overflows.
MAX_DURATION_NS: Final = 1 << 61
MAX_WINDOW_SIZE: Final = 1 << 24
MAX_HALF_OPEN_CALLS: Final = 1 << 24
# Rates are compared as exact integers in parts per million of calls.
RATE_SCALE: Final = 1_000_000


class BreakerSpec(NamedTuple):
    """`BreakerSpec` is a breaker config lowered to the integers the cores use.

    ``count_window``: True for a count-based window of ``window_size`` calls,
    False for a time-based one of ``window_size`` buckets of ``bucket_ns``.
    Rates are in parts per million; ``slow_call_ns`` 0 turns slow-call
    tracking off; ``max_half_open_ns`` 0 lets a probe round last forever.
    """

    count_window: bool
    window_size: int
    bucket_ns: int
    minimum_calls: int
    failure_rate_ppm: int
    slow_call_rate_ppm: int
    slow_call_ns: int
    wait_ns: int
    max_wait_ns: int
    backoff_multiplier: float
    half_open_calls: int
    max_half_open_ns: int


class IllegalTransitionError(RatefuseError):
    """`IllegalTransitionError` reports a manual transition the table forbids.

    ``source`` and ``target`` are the :class:`State` values involved.
    """

    def __init__(self, source: State, target: State) -> None:
        self.source = source
        self.target = target
        super().__init__(
            f"illegal circuit breaker transition {source.name} -> {target.name}"
        )


def exceeds(
    spec: BreakerSpec, calls: int, failures: int, slow: int, minimum: int
) -> bool:
    """`exceeds` reports whether a tally reaches a threshold.

    A tally of fewer than ``minimum`` calls never does. The failure rate (or
    the slow-call rate, when slow calls are tracked) reaches its threshold
    when ``count / calls >= ppm / 1e6``, compared exactly in integers.
    """
    if calls < minimum or calls == 0:
        return False
    if failures * RATE_SCALE >= spec.failure_rate_ppm * calls:
        return True
    return (
        spec.slow_call_ns > 0 and slow * RATE_SCALE >= spec.slow_call_rate_ppm * calls
    )


def grow_wait(spec: BreakerSpec, wait_ns: int) -> int:
    """`grow_wait` is the next open wait after a failed probe round.

    Computed like C does it (multiply as doubles, truncate) so that both
    cores agree, and capped at ``max_wait_ns``.
    """
    grown = float(wait_ns) * spec.backoff_multiplier
    if grown >= float(spec.max_wait_ns):
        return spec.max_wait_ns
    return int(grown)


def next_wait(spec: BreakerSpec, wait_ns: int) -> int:
    """`next_wait` is the wait of an OPEN (or FORCED_OPEN) entered after a
    wait of ``wait_ns``: the base wait when the breaker has not opened since
    it was CLOSED or DISABLED (``wait_ns`` 0), else the wait grown once.
    This is Resilience4j's attempt counting: every entry into OPEN or
    FORCED_OPEN is one more attempt, HALF_OPEN keeps the count, CLOSED and
    DISABLED reset it."""
    return spec.wait_ns if wait_ns == 0 else grow_wait(spec, wait_ns)


def duration_to_ns(duration: float) -> int:
    """`duration_to_ns` converts a call duration in seconds to integer ns.

    Truncates like a C cast; durations beyond ``MAX_DURATION_NS`` saturate.
    Raises ValueError for a negative or NaN duration.
    """
    # What the compiled twin's C double argument accepts: a float, or any
    # object with __float__ or __index__ (numpy scalars), never a str.
    if not isinstance(duration, float):
        kind = type(duration)
        if not hasattr(kind, "__float__") and not hasattr(kind, "__index__"):
            raise TypeError(f"duration must be seconds as a float, got {duration!r}")
        duration = (
            float(duration)
            if hasattr(kind, "__float__")
            else float(operator.index(duration))
        )
    if not duration >= 0.0:
        raise ValueError(f"duration must be >= 0 seconds, got {duration!r}")
    scaled = duration * 1e9
    if scaled >= float(MAX_DURATION_NS):
        return MAX_DURATION_NS
    return int(scaled)


def ns_to_seconds(ns: int) -> float:
    """`ns_to_seconds` converts like C: round to double, then divide;
    WAIT_FOREVER is ``inf``."""
    return float("inf") if ns == WAIT_FOREVER else float(ns) / 1e9
