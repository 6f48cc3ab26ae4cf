"""What the sync and asyncio fleet breakers share: settings, the fleet
state as this process last saw it, and every decision that needs no I/O.

The subclasses (:class:`.fleet_breaker.FleetBreaker`,
:class:`._fleet_async.AsyncFleetBreaker`) only move the script's calls and
replies: each I/O step is a sans-I/O pair here, one method before the
call and one for its reply (or for a lost Redis).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

from ratefuse.breaker import BreakerMetrics, CircuitBreaker, Permit
from ratefuse.core.args import check_now
from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.core.breaker.fleet_recorder import FleetPermit, Gate, Recorder
from ratefuse.core.breaker.spec import (
    BreakerSpec,
    IllegalTransitionError,
    Listener,
    State,
)
from ratefuse.core.errors import CircuitOpenError
from ratefuse.core.span_hooks import ON_REJECTED, SPAN_HOOKS
from ratefuse.engine.log_events import REDIS_LOGGER, LogEvent, emit, log_transition
from ratefuse.redis._fleet_script import FleetReply, FleetScript
from ratefuse.redis._fleet_stats import (
    DEFAULT_FLEET_MAX_HALF_OPEN,
    MAX_BATCH_SIZE,
    MAX_FLEET_WINDOW_BUCKETS,
    MAX_FLEET_WINDOW_SIZE,
    FleetBreakerStats,
    FleetCounters,
    check_int,
    check_seconds,
)

CLOSED: Final = int(State.CLOSED)
OPEN: Final = int(State.OPEN)
HALF_OPEN: Final = int(State.HALF_OPEN)
FORCED_OPEN: Final = int(State.FORCED_OPEN)
DISABLED: Final = int(State.DISABLED)

logger = logging.getLogger("ratefuse.breaker")
_redis_logger = logging.getLogger(REDIS_LOGGER)

# The state type, by a name the class attribute `State` does not shadow.
_State = State


class RedisLost(Exception):
    """`RedisLost` is a script call that failed; the breaker falls back."""


class FleetBase:
    """`FleetBase` holds a fleet breaker's settings and view of the fleet;
    see :class:`.fleet_breaker.FleetBreaker` for the arguments. ``wake``
    asks the flusher to flush now."""

    State = State

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None,
        *,
        clock: Callable[[], int] | None,
        fallback: Callable[..., Any] | None,
        listeners: Iterable[Listener],
        prefix: str,
        namespace: str,
        batch_size: int,
        flush_interval: float,
        idle_ttl: float,
        max_pending: int,
        redis_clock: Callable[[], int] | None,
        wake: Callable[[], object],
    ) -> None:
        config = BreakerConfig() if config is None else config
        if not isinstance(config, BreakerConfig):
            raise TypeError(f"config must be a BreakerConfig, got {config!r}")
        if config.max_half_open_duration is None:
            config = dataclasses.replace(
                config, max_half_open_duration=DEFAULT_FLEET_MAX_HALF_OPEN
            )
        if config.window_type == "count":
            check_int("window_size", config.window_size, 1, MAX_FLEET_WINDOW_SIZE)
        else:
            check_int(
                "window_buckets", config.window_buckets, 1, MAX_FLEET_WINDOW_BUCKETS
            )
        batch_size = check_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
        max_pending = check_int("max_pending", max_pending, batch_size, 1 << 24)
        self._flush_interval = check_seconds(
            "flush_interval", flush_interval, 0.001, 60.0
        )
        idle = check_seconds("idle_ttl", idle_ttl, 1.0, 30 * 86400.0)
        for field, value in (("clock", clock), ("redis_clock", redis_clock)):
            if value is not None and not callable(value):
                raise TypeError(f"{field} must be callable or None, got {value!r}")
        self._local = CircuitBreaker(name, config, clock=clock, fallback=fallback)
        self._script = FleetScript(
            config, self._local.name, prefix, namespace, math.ceil(idle * 1000)
        )
        self._keys = list(self._script.keys)
        self._redis_clock = redis_clock
        spec = self._local.spec
        self._slow_call_ns = spec.slow_call_ns
        self._recorder = Recorder(max_pending, batch_size, spec.slow_call_ns, wake)
        self._counters = FleetCounters()
        # The fleet's transitions are logged (its local breaker's only matter
        # while it decides, and then they are relayed as the fleet's).
        self._listeners: list[Listener] = [log_transition, *listeners]
        self._events: deque[tuple[int, int]] = deque()
        self._delivering = False
        self._events_lock = threading.Lock()
        self._fallen_back = False
        self._state = CLOSED
        self._generation = 0
        self._permit = FleetPermit(self, self._recorder, 0)
        self._reply = FleetReply(0, CLOSED, 0, 0, 0, 0, 0, 0)
        self._open_until_ns = 0
        self._probe_pause_until_ns = 0
        self._pause_ns = max(1, round(self._flush_interval * 1e9))
        # The sync breaker answers try_acquire in CLOSED through a gate.
        self._gate: Gate | None = None
        self.closed = False
        self._local.remove_listener(log_transition)
        self._local.add_listener(self._relay)

    # --- properties --------------------------------------------------------

    @property
    def name(self) -> str:
        """`name` names the breaker in errors, logs and its Redis keys."""
        return self._local.name

    @property
    def fallback(self) -> Callable[..., Any] | None:
        """`fallback` answers rejected calls instead of CircuitOpenError."""
        return self._local.fallback

    def now_ns(self) -> int:
        """`now_ns` reads the breaker's local clock (its local breaker's)."""
        return self._local.now_ns()

    # --- listeners ---------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """`add_listener` calls ``listener(breaker, old, new)`` after every
        state change this process sees, outside any lock."""
        with self._events_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """`remove_listener` removes ``listener``; ValueError if absent."""
        with self._events_lock:
            self._listeners.remove(listener)

    def _relay(self, local: object, old: _State, new: _State) -> None:
        # The local breaker's changes matter only while it decides.
        if self._fallen_back:
            self._queue_event(int(old), int(new))
            self._deliver()

    def _queue_event(self, old: int, new: int) -> None:
        self._counters.add("transitions")
        with self._events_lock:
            if self._listeners:
                self._events.append((old, new))

    def _deliver(self) -> None:
        # Runs the listeners until no change is queued, one thread at a time
        # so that they see changes in order.
        with self._events_lock:
            if self._delivering or not self._events:
                return
            self._delivering = True
        while True:
            with self._events_lock:
                if not self._events:
                    self._delivering = False
                    return
                old, new = self._events.popleft()
                listeners = tuple(self._listeners)
            try:
                for listener in listeners:
                    try:
                        listener(self, State(old), State(new))
                    except Exception:
                        logger.exception(
                            "listener %r of fleet breaker %r failed",
                            listener,
                            self.name,
                        )
            except BaseException:
                # KeyboardInterrupt and the like propagate; the next change
                # resumes delivery (else no listener would run again).
                with self._events_lock:
                    self._delivering = False
                raise

    def _deliver_or_release(self, permit: FleetPermit | Permit | None) -> None:
        # Delivers the changes an acquire made; if a listener raises a
        # BaseException the caller never sees ``permit``, so it is given
        # back (a fleet-wide probe would otherwise stay out).
        try:
            self._deliver()
        except BaseException:
            if permit is not None:
                permit.release()
            raise

    # --- classification (the local breaker's rules) -------------------------

    def classify_exception(self, exc: BaseException) -> int:
        """`classify_exception` is the outcome of a call that raised ``exc``
        (SUCCESS, FAILURE or IGNORED), by the config's rules."""
        return self._local.classify_exception(exc)

    def classify_result(self, result: object) -> int:
        """`classify_result` is the outcome of a call that returned
        ``result``, by the config's result predicate."""
        return self._local.classify_result(result)

    @property
    def config(self) -> BreakerConfig:
        """`config` is the breaker's rules."""
        return self._local.config

    @property
    def spec(self) -> BreakerSpec:
        """`spec` is the lowered config."""
        return self._local.spec

    @property
    def clock(self) -> Callable[[], int] | None:
        """`clock` is the injected local clock, or None (monotonic)."""
        return self._local.clock

    @property
    def timed(self) -> bool:
        """`timed` is true when call durations matter (slow-call tracking)."""
        return self._slow_call_ns > 0

    @property
    def keys(self) -> tuple[bytes, bytes]:
        """`keys` are the breaker's Redis keys: its state hash and its
        window (one hashed tag, hence one cluster slot)."""
        return self._script.keys

    @property
    def fallen_back(self) -> bool:
        """`fallen_back` is true while Redis is lost and the local breaker
        decides."""
        return self._fallen_back

    @property
    def local(self) -> CircuitBreaker:
        """`local` is the local breaker that decides while Redis is lost."""
        return self._local

    @property
    def state(self) -> _State:
        """`state` is the fleet's state as of the last flush (the local
        breaker's while fallen back)."""
        if self._fallen_back:
            return self._local.state
        return State(self._state)

    @property
    def generation(self) -> int:
        """`generation` is the fleet's generation as of the last flush (the
        local breaker's while fallen back)."""
        if self._fallen_back:
            return self._local.generation
        return self._generation

    def stats(self) -> FleetBreakerStats:
        """`stats` snapshots the breaker's counters."""
        recorder = self._recorder
        return self._counters.snapshot(recorder.dropped + recorder.stale)

    # --- sans-I/O steps ----------------------------------------------------

    def _args(
        self, op: bytes, generation: int = 0, batch: bytes = b"", target: int = 0
    ) -> list[bytes | int]:
        # ARGV of one script call.
        now_us = None if self._redis_clock is None else self._redis_clock()
        return self._script.args(op, now_us, generation, batch, target)

    def _lost(self, exc: BaseException) -> RedisLost:
        # A failed script call, counted.
        self._counters.add("redis_errors")
        return RedisLost(str(exc))

    def _take_batch(self) -> tuple[int, bytes]:
        # What the next flush sends: nothing while fallen back (a poll).
        if self._fallen_back:
            return 0, b""
        return self._recorder.take()

    def _flushed(self, reply: FleetReply, batch: bytes) -> None:
        self._counters.add("flushes")
        self._counters.add("outcomes_flushed", len(batch))
        self._apply(reply)

    def _apply(self, reply: FleetReply) -> None:
        # Follows the fleet state of ``reply``. Precondition: the I/O lock.
        now = self.now_ns()
        old = self._local.state if self._fallen_back else self._state
        if self._fallen_back:
            self._fallen_back = False
            self._counters.add("recoveries")
            emit(
                _redis_logger,
                logging.WARNING,
                LogEvent.BACKEND_RECOVERED,
                "fleet breaker %r reaches Redis again",
                self.name,
                breaker=self.name,
                backend="redis",
            )
        self._reply = reply
        if reply.generation != self._generation:
            self._recorder.set_generation(reply.generation)
            self._permit = FleetPermit(self, self._recorder, reply.generation)
            self._generation = reply.generation
        self._open_until_ns = (
            now + reply.retry_after_us * 1000 if reply.state == OPEN else 0
        )
        # News from the fleet: a call may ask for a probe again at once.
        self._probe_pause_until_ns = 0
        self._state = reply.state
        self._update_gate()
        if old != reply.state:
            self._queue_event(old, reply.state)

    def _update_gate(self) -> None:
        # The gate answers with the permit only while the fleet permits
        # every call and this process follows it.
        gate = self._gate
        if gate is not None:
            following = not self._fallen_back and self._state in (CLOSED, DISABLED)
            gate.permit = self._permit if following else None

    def _fall_back(self, dropped: int) -> None:
        # Redis is lost: seed the local breaker with the fleet state and let
        # it decide. Precondition: the I/O lock.
        self._counters.add("outcomes_dropped", dropped)
        if self._fallen_back:
            return
        state = self._state
        local = self._local
        if self._gate is not None:
            self._gate.permit = None
        local.reset()
        if state in (OPEN, HALF_OPEN):
            local.transition_to(State.OPEN)
        elif state in (FORCED_OPEN, DISABLED):
            local.transition_to(State(state))
        self._counters.add("outcomes_dropped", len(self._recorder.take()[1]))
        self._fallen_back = True
        self._counters.add("fallbacks")
        emit(
            _redis_logger,
            logging.WARNING,
            LogEvent.BACKEND_FALLBACK,
            "fleet breaker %r lost Redis; the local breaker decides",
            self.name,
            breaker=self.name,
            backend="redis",
            policy="local_breaker",
        )
        if local.state != state:
            self._queue_event(state, local.state)

    def _blocked(self, now: int) -> bool:
        # True if a call at ``now`` is rejected without asking Redis.
        state = self._state
        if state == FORCED_OPEN:
            return True
        if state == OPEN and now < self._open_until_ns:
            return True
        return now < self._probe_pause_until_ns

    def _at(self, now: int | None) -> int:
        return self.now_ns() if now is None else check_now(now)

    def _rejected(self) -> None:
        self._counters.add("rejected_calls")

    def _before_probe_request(self, at: int) -> FleetPermit | Permit | bool | None:
        # Under the I/O lock, before asking Redis for a permit: the answer
        # if the state changed meanwhile, or True to ask.
        if self._fallen_back:
            return self._local.try_acquire(at)
        if self._state in (CLOSED, DISABLED):
            return self._permit
        if self._blocked(at):
            return None
        self._counters.add("probe_requests")
        return True

    def _probe_answer(self, reply: FleetReply, at: int) -> FleetPermit | None:
        # The permit of an ACQUIRE reply, if granted.
        self._apply(reply)
        if reply.granted > 0:
            if reply.state == HALF_OPEN:
                self._counters.add("probes_granted")
                return FleetPermit(self, self._recorder, reply.granted, True)
            return self._permit
        # Every probe of the round is out: ask again after a flush interval
        # (or the next flush) rather than on every call.
        self._probe_pause_until_ns = at + self._pause_ns
        return None

    def _transitioned(self, reply: FleetReply, target: _State) -> None:
        if reply.granted < 0:
            raise IllegalTransitionError(State(reply.state), target)
        self._apply(reply)

    # --- reading -----------------------------------------------------------

    def retry_after(self, now: int | None = None) -> float:
        """`retry_after` is the seconds a rejected call should wait: the rest
        of the OPEN wait (0.0 once over), ``inf`` if FORCED_OPEN, else 0.0."""
        if self._fallen_back:
            return self._local.retry_after(now)
        state = self._state
        if state == FORCED_OPEN:
            return math.inf
        if state != OPEN:
            return 0.0
        return max(self._open_until_ns - self._at(now), 0) / 1e9

    def open_error(self, now: int | None = None) -> CircuitOpenError:
        """`open_error` is the CircuitOpenError for a call rejected now."""
        error = CircuitOpenError(self.name, self.retry_after(now))
        hook = SPAN_HOOKS[ON_REJECTED]
        if hook is not None:
            hook(error)
        return error

    def metrics(self, now: int | None = None) -> BreakerMetrics:
        """`metrics` is the fleet's tally as of the last flush (flush first
        for a fresh one), or the local breaker's while fallen back;
        ``rejected_calls`` counts this process's rejections."""
        if self._fallen_back:
            return self._local.metrics(now)
        reply = self._reply
        calls = reply.calls
        return BreakerMetrics(
            state=State(reply.state),
            generation=reply.generation,
            calls=calls,
            failed_calls=reply.failures,
            slow_calls=reply.slow,
            failure_rate=100.0 * reply.failures / calls if calls else 0.0,
            slow_call_rate=100.0 * reply.slow / calls if calls else 0.0,
            rejected_calls=self.stats().rejected_calls,
            probes_issued=reply.probes_issued,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.state.name}>"
