"""Local answers of a Redis-backed limiter: the deny cache and quota leases.

`LocalAnswers` is what the sync and asyncio limiters share: the lease table
(the compiled core, :mod:`ratefuse.core._lease_py` is its spec), the lease
script's packer, and what to do with the fleet's replies. No I/O here: the
limiters send the calls, this module plans them and absorbs the replies.

Deny cache (exact for gcra and fixed_window): after the fleet denied cost c
with retry_after r, costs >= c of that key are denied locally until
``sent + r``, where ``sent`` is the local monotonic time taken before the
request went out. Both algorithms deny a cost until at least r after the
script ran (time and other admissions only push that later), and the
script ran after ``sent``, so the cache never denies what the fleet would
admit. sliding_window and sliding_log are refused: their retry_after is not
such a bound. Redis time and the local clock are assumed to run at the same
rate; a ``reset`` by another process is not seen until the entry expires.
A cached denial means what the fleet's denial meant: its reset_after is
the time left until ``sent`` + the reset_after the fleet reported (the
quota whole again, a lower bound: the script ran after ``sent``, and other
admissions only push it later), not its retry_after, so that a response
header built from it (``RateLimit: t=``) says the same whichever answered.
A leased admission reports the reset_after of the last lease's reply the
same way (it used to report 0: "whole now").

Leases: see :mod:`._lease_config`. When a lease comes back short (the
bucket held fewer than k units) the key's gate closes for costs beyond the
balance until the bucket could give a full lease again (the script's
``want_after``): a starved process then answers locally instead of asking
Redis for a unit at a time. That denial is approximate (the fleet might
admit a unit sooner); the bound and the utilisation are what lease mode
promises.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, NamedTuple, TypeVar

from ratefuse.core import implementation as _impl
from ratefuse.core.algorithms import REGISTRY
from ratefuse.core.lease_answers import DEFAULT_MAX_KEYS, DENIED, HIT, LOW
from ratefuse.engine.log_events import LEASE_LOGGER, LogEvent, emit, key_field
from ratefuse.engine.subject import Decision
from ratefuse.redis._binding import Binding
from ratefuse.redis._codec import Packer, RawReply
from ratefuse.redis._exchange import Call, single_call
from ratefuse.redis._lease_config import LeaseConfig
from ratefuse.redis._policy import LimiterStats
from ratefuse.redis._schema import Subject
from ratefuse.redis._scripts import lease_script

DENY_CACHE_ALGORITHMS: Final = REGISTRY.named(
    lambda algorithm: algorithm.deny_cache_exact
)
_core = _impl.load("core._lease")
_logger: Final = logging.getLogger(LEASE_LOGGER)
# The lease and deny-cache table's default bound (the lease table's own).
DEFAULT_CACHE_MAX_KEYS: Final = DEFAULT_MAX_KEYS

Clock = Callable[[], int]


class Ask(NamedTuple):
    """`Ask` is what the fleet must answer for a decision the table could
    not: an exact decision of ``cost`` (``units`` 0) or a lease of
    ``units``; ``sent`` is the local time taken before sending it."""

    key: Subject
    cost: int
    units: int
    sent: int


MissHandler = Callable[[Subject, int], bool]
_Result = TypeVar("_Result")
LowHandler = Callable[[Subject], None]


def check_deny_cache(deny_cache: bool | None, algorithm: str) -> bool:
    """`check_deny_cache` reads ``deny_cache=``: None is on where the cache
    is exact (gcra, fixed_window); True elsewhere is a ValueError."""
    if deny_cache is None:
        return algorithm in DENY_CACHE_ALGORITHMS
    if not isinstance(deny_cache, bool):
        raise ValueError(f"deny_cache must be True, False or None, got {deny_cache!r}")
    if deny_cache and algorithm not in DENY_CACHE_ALGORITHMS:
        raise ValueError(
            f"deny_cache=True needs algorithm gcra or fixed_window (where it is "
            f"exact), got algorithm={algorithm!r}"
        )
    return deny_cache


def check_clock(clock: Clock | None) -> Clock | None:
    """`check_clock` returns ``clock`` (None: the monotonic clock) or raises
    TypeError when it is not callable."""
    if clock is not None and not callable(clock):
        raise TypeError(f"clock must be a callable returning ns, got {clock!r}")
    return clock


def weakly(
    owner: object, method: Callable[..., _Result], default: _Result
) -> Callable[..., _Result]:
    """`weakly` is ``method`` of ``owner`` without a strong reference to
    ``owner`` (``default`` once it is gone): the lease table and the refill
    thread call back into the limiter, and a cycle would keep a dropped
    limiter (and its sockets) alive until the cycle collector runs, which
    then finalizes the sockets unclosed."""
    ref = weakref.ref(owner)
    name = method.__name__

    def call(*args: Any) -> _Result:
        target = ref()
        if target is None:
            return default
        return getattr(target, name)(*args)  # type: ignore[no-any-return]

    return call


class LocalAnswers:
    """`LocalAnswers` answers from the lease table and absorbs the fleet's
    replies into it, for one limiter (see the module docstring).

    ``lease`` None: deny cache only. Counts lease grants and units
    granted. Thread-safe.
    """

    def __init__(
        self,
        binding: Binding,
        lease: LeaseConfig | None,
        max_keys: int,
        clock: Clock | None,
        on_miss: MissHandler | None,
        on_low: LowHandler | None,
    ) -> None:
        self.lease = lease
        self.clock: Clock = time.monotonic_ns if clock is None else clock
        self._capacity = min(binding.capacities)
        self.table = _core.LeaseTable(max_keys, on_miss, on_low, clock, self._capacity)
        self._binding = binding
        self._on_low = on_low
        self._limit = binding.capacities[0]
        self._packer = (
            None
            if lease is None
            else Packer(lease_script(binding.specs[0].algorithm), binding.wire_limits)
        )
        self._lock = threading.Lock()
        # Per key, the local time at which the fleet's last denial said the
        # quota is whole again (see `denied`), at most max_keys of them.
        self._resets: dict[Subject, int] = {}
        self._max_resets = max_keys
        self._grants = 0
        self._units_granted = 0
        self._refill_failures = 0

    # --- one decision, sans I/O: begin, send the Ask, finish -----------------

    def begin(self, key: Subject, cost: int, now: int) -> Decision | Ask:
        """`begin` answers ``cost`` (validated) for ``key`` locally, or says
        what to ask the fleet: a lease in lease mode, else the decision
        (``sent`` is ``now``: taken before the request is sent)."""
        if self.lease is None:
            if self.table.take(key, cost, now) == DENIED:
                # A cost above a capacity is never admitted: its retry_after
                # is inf (acquire raises at once), not what is left of a
                # gate that a smaller cost closed.
                return self.never(cost, key, now) or self.denied(key, now)
            return Ask(key, cost, 0, now)
        local = self.never(cost, key, now) or self.local(key, cost, now)
        if local is not None:
            return local
        if cost == 0:
            # A question consumes nothing, so it leases nothing: the exact
            # script answers it (the middleware asks cost 0 of every limit
            # after a denial, and would otherwise drain the fleet's bucket).
            return Ask(key, 0, 0, now)
        return Ask(key, cost, self.lease_size(key, cost, now), self.clock())

    def refill(self, key: Subject) -> Ask | None:
        """`refill` is the lease that refills ``key`` in the background, or
        None when nothing was spent since the key's last grant: the request
        is stale (a lease the caller took on a miss landed after the
        balance ran low and before the refill ran, as it does when the
        spending thread holds the GIL) or came from questions alone. Such a
        refill would ask for ``min_units`` (no demand measured), a Redis
        call for a unit or two; the key's refill is no longer pending, and
        its next low balance asks again with its demand measured."""
        now = self.clock()
        spent, _elapsed = self.table.demand(key, now)
        if spent <= 0:
            self.table.refill_failed(key, now)
            return None
        return Ask(key, 0, self.lease_size(key, 0, now), now)

    def finish(self, ask: Ask, reply: RawReply) -> Decision:
        """`finish` absorbs the lease the fleet granted for ``ask`` and
        decides its cost from the refilled table."""
        self.absorb(ask.key, ask.units, reply, ask.sent)
        later = self.clock()
        return self.local(ask.key, ask.cost, later) or self.denied(ask.key, later)

    # --- answering locally ----------------------------------------------------

    def local(self, key: Subject, cost: int, now: int) -> Decision | None:
        """`local` answers ``cost`` (validated) for ``key`` from the table,
        or None when the fleet must be asked."""
        result = self.table.take(key, cost, now)
        if result in (HIT, LOW):
            if result == LOW and self._on_low is not None:
                self._on_low(key)
            # reset_after: the fleet's, as of the last lease (see denied).
            balance = self.table.balance(key, now)
            return Decision(True, balance, 0.0, self.reset_after(key, now), self._limit)
        if result == DENIED:
            return self.denied(key, now)
        return None

    def denied(self, key: Subject, now: int) -> Decision:
        """`denied` is the Decision of a local denial: retry_after is what is
        left of the gate, reset_after what is left until the quota is whole
        by the fleet's last answer (at least retry_after), remaining 0:
        lower bounds, with the meaning of the fleet's own fields."""
        wait = self.table.retry_after(key, now) / 1e9
        return Decision(
            False, 0, wait, max(wait, self.reset_after(key, now)), self._limit
        )

    def never(
        self, cost: int, key: Subject | None = None, now: int = 0
    ) -> Decision | None:
        """`never` is the denial of a cost above a capacity (None if not);
        its reset_after is as in `denied` (0 without ``key``)."""
        if cost <= self._capacity:
            return None
        reset = 0.0 if key is None else self.reset_after(key, now)
        return Decision(False, 0, float("inf"), reset, self._capacity)

    def reset_after(self, key: Subject, now: int) -> float:
        """`reset_after` is the seconds left at ``now`` until the quota of
        ``key`` is whole by the fleet's last denial (0: none remembered)."""
        at = self._resets.get(key)
        return 0.0 if at is None or at <= now else (at - now) / 1e9

    def forget(self, key: Subject) -> None:
        """`forget` drops what is remembered of ``key`` (its `reset`)."""
        self.table.reset(key)
        with self._lock:
            self._resets.pop(key, None)

    def _remember_reset(self, key: Subject, at: int) -> None:
        # The oldest entry goes beyond max_keys (as the table's); a key
        # without one reports its reset_after as its retry_after.
        with self._lock:
            resets = self._resets
            resets.pop(key, None)
            resets[key] = at
            if len(resets) > self._max_resets:
                del resets[next(iter(resets))]

    # --- the deny cache -------------------------------------------------------

    def remember(self, key: Subject, cost: int, reply: RawReply, sent: int) -> None:
        """`remember` caches the fleet's denial of ``cost`` (a reply of the
        exact script) until ``sent`` + its retry_after."""
        if reply[0] != 1 and reply[2] > 0:
            self._remember_reset(key, sent + reply[3] * 1000)
            self.table.deny(key, cost, sent + reply[2] * 1000, self.clock())
        elif reply[0] != 1 and cost <= self._capacity:
            # The script denies only with a wait: nothing to cache, and a
            # sign that the script and this client disagree.
            self._anomaly(
                LogEvent.DENY_CACHE_ANOMALY, "denial_without_wait", key, reply
            )

    # --- leases ---------------------------------------------------------------

    def lease_size(self, key: Subject, cost: int, now: int) -> int:
        """`lease_size` is k for ``key``: adapted to its demand, at least
        ``cost``."""
        assert self.lease is not None
        spent, elapsed = self.table.demand(key, now)
        return max(self.lease.size(spent, elapsed), cost)

    def lease_call(self, key: Subject, units: int, cluster: bool) -> Call:
        """`lease_call` is the script call taking at most ``units`` for
        ``key``."""
        assert self._packer is not None
        return single_call(
            self._packer, self._binding.schema.key(key), units, None, cluster
        )

    @property
    def packer(self) -> Packer:
        """`packer` packs lease calls (lease mode only)."""
        assert self._packer is not None
        return self._packer

    def absorb(self, key: Subject, units: int, reply: RawReply, sent: int) -> None:
        """`absorb` adds the lease the script granted (asked: ``units``, sent
        at local time ``sent``) and, when it came back short, closes the
        key's gate beyond the balance until a full lease could be taken."""
        assert self.lease is not None
        granted, _remaining, want_after_us, reset_us, _binding = reply
        if granted > units:
            self._anomaly(LogEvent.LEASE_ANOMALY, "over_grant", key, reply, units)
        # Never more than was asked: the lease script takes at most that,
        # and the table must not hold what the fleet did not count.
        granted = min(granted, units)
        now = self.clock()
        table = self.table
        table.grant(
            key,
            granted,
            sent + self.lease.lifetime_ns,
            self.lease.low_water_units(units),
            now,
        )
        self._remember_reset(key, sent + reset_us * 1000)
        if granted < units:
            until = sent + want_after_us * 1000
            table.deny(key, 1, until, now)
            table.refill_failed(key, until)
        with self._lock:
            if granted > 0:
                self._grants += 1
                self._units_granted += granted

    def _anomaly(
        self,
        event: LogEvent,
        anomaly: str,
        key: Subject,
        reply: RawReply,
        units: int | None = None,
    ) -> None:
        # A reply this client did not expect: logged (it is corrected, as
        # the callers say, so the decision stays within the fleet's bound).
        emit(
            _logger,
            logging.WARNING,
            event,
            "limiter %r: %s (%s), reply %r",
            self._binding.schema.name,
            event.value,
            anomaly,
            list(reply),
            limiter=self._binding.schema.name,
            anomaly=anomaly,
            reply=list(reply),
            units_asked=units,
            **key_field(key),
        )

    def refill_failed(self, key: Subject) -> None:
        """`refill_failed` backs ``key``'s refills off after a failure."""
        assert self.lease is not None
        backoff = round(self.lease.refill_backoff * 1e9)
        self.table.refill_failed(key, self.clock() + backoff)
        with self._lock:
            self._refill_failures += 1

    def add_counts(self, stats: LimiterStats) -> LimiterStats:
        """`add_counts` is ``stats`` (the policy's) with the table's
        decisions and the deny cache's and leases' counters added."""
        table = self.table.stats()
        hits, denials = table["hits"], table["denials"]
        leasing = self.lease is not None
        with self._lock:
            grants, units = self._grants, self._units_granted
            failures = self._refill_failures
        return dataclasses.replace(
            stats,
            decisions=stats.decisions + hits + denials,
            deny_cache_hits=0 if leasing else denials,
            lease_hits=hits if leasing else 0,
            lease_denials=denials if leasing else 0,
            lease_grants=grants,
            lease_units_granted=units,
            lease_units_expired=table["units_expired"],
            lease_refill_failures=failures,
            cache_evictions=table["evictions"],
        )


class Refiller:
    """`Refiller` runs background refills on one daemon thread, started at
    the first request: ``refill(key)`` must not raise. `close` stops and
    joins it. Thread-safe."""

    def __init__(self, refill: Callable[[Subject], None], name: str) -> None:
        self._refill = refill
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Subject] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def request(self, key: Subject) -> None:
        """`request` queues a refill of ``key`` (ignored once closed)."""
        if self._thread is None:
            with self._lock:
                if self._closed:
                    return
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name=self._name, daemon=True
                    )
                    self._thread.start()
        self._queue.put((key,))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._refill(item[0])

    def stop(self) -> threading.Thread | None:
        """`stop` tells the thread to end after the refills queued before
        it, without waiting, and returns it (None if never started)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
        return thread

    def close(self, timeout: float = 5.0) -> None:
        """`close` stops the thread and waits for it to end."""
        thread = self.stop()
        if thread is not None:
            thread.join(timeout)
