"""What `RedisLimiter` and `AsyncRedisLimiter` share, without I/O.

`LimiterCore` is a Redis-backed limiter but for its round trips: the
arguments and their validation (one signature for both), the binding, the
failure policy, the local answers (deny cache and quota leases,
:mod:`._leasing`) and every step before and after a round trip. Each verb
of :mod:`.limiter` is then at most one backend call between two of these
steps.
"""

from __future__ import annotations

import dataclasses
import operator
import sys
import threading
from collections.abc import Sequence
from typing import Any, ClassVar, Final, Generic, TypeVar

from ratefuse.core.args import check_cost
from ratefuse.core.backend_defaults import PolicyName
from ratefuse.core.errors import BackendError, CircuitOpenError
from ratefuse.core.spec import NEVER
from ratefuse.engine.batch import (
    batch_costs,
    batch_keys,
    decision_arrays,
    import_numpy,
    one_cost,
)
from ratefuse.engine.subject import Decision
from ratefuse.rates import (
    DEFAULT_ALGORITHM,
    RateLike,
    build_specs,
    canonical_algorithm,
    to_rates,
)
from ratefuse.redis._backend_core import StoreCore
from ratefuse.redis._binding import Binding
from ratefuse.redis._codec import Packer, RawReply
from ratefuse.redis._exchange import Call
from ratefuse.redis._lease_config import LeaseConfig, to_lease_config
from ratefuse.redis._leasing import (
    DEFAULT_CACHE_MAX_KEYS,
    Ask,
    Clock,
    LocalAnswers,
    LowHandler,
    MissHandler,
    check_clock,
    check_deny_cache,
)
from ratefuse.redis._policy import (
    DEFAULT_LOCAL_MAX_KEYS,
    Fallback,
    LimiterStats,
    failure_policy,
)
from ratefuse.redis._schema import KeySchema, Subject

# A reply's allowed and retry_after_us, for the batch's arrays.
_ALLOWED: Final = operator.itemgetter(0)
_RETRY: Final = operator.itemgetter(2)
# What a round trip raises when Redis cannot decide: the policy answers.
FAILURES = (BackendError, CircuitOpenError)
PLAIN_KEYS = (str, bytes, int)

BackendT = TypeVar("BackendT")
ClientT = TypeVar("ClientT")
StoreT = TypeVar("StoreT", bound=StoreCore[Any])


class LimiterCore(Generic[BackendT, ClientT, StoreT]):
    """`LimiterCore` is a Redis-backed limiter without its round trips (see
    :class:`.limiter.RedisLimiter` for the arguments). A subclass names
    its backend class (`_backend_class`), gives the local answers their handlers
    (`_handlers`) and may release what a failed construction leaves behind
    (`_abandon`) and finish a complete one (`_started`)."""

    # The backend a limiter binds to (and opens on a plain client).
    _backend_class: ClassVar[type[Any]]

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        backend: BackendT | ClientT,
        name: str,
        on_backend_error: PolicyName | None = None,
        local_share: float | None = None,
        local_max_keys: int = DEFAULT_LOCAL_MAX_KEYS,
        deny_cache: bool | None = None,
        lease: LeaseConfig | bool | None = None,
        cache_max_keys: int = DEFAULT_CACHE_MAX_KEYS,
        clock: Clock | None = None,
    ) -> None:
        self.rates = to_rates(limits)
        self.algorithm = canonical_algorithm(algorithm)
        self.policy = failure_policy(on_backend_error, local_share, local_max_keys)
        specs = build_specs(self.rates, self.algorithm)
        # ``backend`` itself, or one opened on the client ``backend`` and
        # then owned by the limiter.
        opened: Any = backend
        self._owns_backend = not isinstance(backend, self._backend_class)
        if self._owns_backend:
            opened = self._backend_class(backend)
        self.backend: BackendT = opened
        self._store: StoreT = opened.bind(specs, name)
        self._binding: Binding = self._store.binding
        self._schema: KeySchema = self._binding.schema
        self._fallback = Fallback(
            self.policy, self.rates, self.algorithm, self._schema.name
        )
        self._answers: LocalAnswers | None = None
        self._commands = 0
        self._commands_lock = threading.Lock()
        on_miss, on_low = self._handlers(name)
        try:
            self._answers = self._local_answers(
                deny_cache, lease, cache_max_keys, clock, on_miss, on_low
            )
        except BaseException:
            self._abandon()
            raise
        self._started()

    def _handlers(self, name: str) -> tuple[MissHandler | None, LowHandler]:
        # What the lease table calls on a miss (None: the caller asks the
        # fleet itself) and when a lease runs low.
        raise NotImplementedError

    def _abandon(self) -> None:
        # Releases what `_handlers` started when construction fails after
        # it (by default nothing: an owned backend has no connection open).
        return

    def _started(self) -> None:
        # Construction is complete.
        return

    @property
    def name(self) -> str:
        """`name` names the shared quota: limiters with the same name (and
        prefix and namespace) share state."""
        return self._schema.name

    def stats(self) -> LimiterStats:
        """`stats` snapshots the decisions made, every fallback and the
        deny cache's and leases' counters."""
        stats = self._fallback.stats()
        with self._commands_lock:
            sent = stats.backend_decisions + self._commands
        stats = dataclasses.replace(stats, redis_commands=sent)
        answers = self._answers
        return stats if answers is None else answers.add_counts(stats)

    def __repr__(self) -> str:
        rates = "; ".join(str(rate) for rate in self.rates)
        return (
            f"{type(self).__name__}({rates!r}, algorithm={self.algorithm!r}, "
            f"name={self.name!r})"
        )

    def _local_answers(
        self,
        deny_cache: bool | None,
        lease: LeaseConfig | bool | None,
        cache_max_keys: int,
        clock: Clock | None,
        on_miss: MissHandler | None,
        on_low: LowHandler | None,
    ) -> LocalAnswers | None:
        # Validates the local-answer arguments; None when there are none.
        if (
            isinstance(cache_max_keys, bool)
            or not isinstance(cache_max_keys, int)
            or cache_max_keys < 1
        ):
            raise ValueError(
                f"cache_max_keys must be an int >= 1, got {cache_max_keys!r}"
            )
        config = to_lease_config(lease)
        caching = check_deny_cache(deny_cache, self.algorithm)
        check_clock(clock)
        if config is None and not caching:
            return None
        return LocalAnswers(
            self._binding,
            config,
            cache_max_keys,
            clock,
            on_miss,
            on_low if config is not None else None,
        )

    def _begin(self, key: Subject, cost: int) -> Decision | Ask:
        # The local answer to a decision, or what to ask the fleet: raises
        # TypeError for a bad key (from the schema) and ValueError for a
        # bad cost.
        answers = self._answers
        assert answers is not None
        if not isinstance(key, PLAIN_KEYS):
            self._schema.tag(key)
        return answers.begin(key, check_cost(cost), answers.clock())

    def _lease_call(self, ask: Ask, cluster: bool) -> tuple[Packer, Call]:
        # The lease script's call for ``ask`` (ask.units > 0).
        answers = self._answers
        assert answers is not None
        return answers.packer, answers.lease_call(ask.key, ask.units, cluster)

    def _conclude(self, ask: Ask, outcome: RawReply | BaseException) -> Decision:
        # The decision of ``ask`` once the fleet answered it, or failed to.
        answers = self._answers
        assert answers is not None
        if isinstance(outcome, BaseException) or not ask.units:
            return self._settle(ask.key, ask.cost, outcome, ask.sent)
        self._count(outcome)
        return answers.finish(ask, outcome)

    def _refilled(self, ask: Ask, outcome: RawReply | Exception) -> None:
        # A background refill's end: the fleet's reply absorbed, or the
        # failure counted and the key's refill no longer pending.
        answers = self._answers
        assert answers is not None
        self._count(outcome)
        if isinstance(outcome, Exception):
            answers.refill_failed(ask.key)
        else:
            answers.absorb(ask.key, ask.units, outcome, ask.sent)

    def _count(self, outcome: object) -> None:
        # Counts sends that Redis did not answer as a decision (leases, and
        # failures other than the breaker's rejection, which sends nothing);
        # the answered decisions are the policy's backend_decisions.
        if not isinstance(outcome, CircuitOpenError):
            with self._commands_lock:
                self._commands += 1

    def _settle(
        self,
        key: Subject,
        cost: int,
        outcome: RawReply | BaseException,
        sent: int | None = None,
    ) -> Decision:
        # ``sent``: the local time before sending, to cache a denial.
        if isinstance(outcome, BaseException):
            self._count(outcome)
            return self._fallback.decide(self._schema.tag(key), cost, outcome)
        if sent is not None and outcome[0] != 1 and self._answers is not None:
            self._answers.remember(key, cost, outcome, sent)
        self._fallback.answered()
        return self._binding.decision(outcome)

    @staticmethod
    def _batch(
        keys: Sequence[Subject], costs: Sequence[int] | int | None
    ) -> tuple[list[Subject], list[int] | None]:
        # A batch's keys and costs checked as the in-memory limiters check
        # them (the same errors, naming `keys` or `costs`), before any I/O.
        numpy = sys.modules.get("numpy")  # an array implies numpy is loaded
        listed = batch_keys(numpy, keys)
        if costs is None:
            return listed, None
        one = one_cost(numpy, costs)
        if one is not None:
            return listed, [one] * len(listed)
        return listed, batch_costs(numpy, costs, len(listed))

    @staticmethod
    def _array_batch(
        keys: Any, costs: Any, now: int | None
    ) -> tuple[Any, list[Subject], list[int] | None]:
        # The array form's arguments, checked before any I/O: numpy (as the
        # in-memory decide_many needs it), the batch, and ``now``, which a
        # limiter on Redis cannot honour (the server's clock decides).
        numpy = import_numpy()
        listed, checked = LimiterCore._batch(keys, costs)
        if now is not None:
            raise ValueError(
                "now does not apply to a limiter on Redis (times come from "
                f"the Redis server's clock): pass None, got {now!r}"
            )
        return numpy, listed, checked

    def _raw_arrays(
        self,
        numpy: Any,
        keys: Sequence[Subject],
        costs: Sequence[int] | None,
        outcomes: Sequence[Any],
        retry_after: bool,
    ) -> Any:
        # decide_many's arrays read straight from the replies, without a
        # Decision per key (building them was most of a batch's client
        # CPU after the keys' hashing); a batch with a failure goes through
        # Decisions and the policy instead. ``outcomes`` are replies
        # (RawReply) and failures (BaseException).
        count = len(outcomes)
        try:
            allowed = numpy.fromiter(map(_ALLOWED, outcomes), numpy.int64, count)
            waits = (
                numpy.fromiter(map(_RETRY, outcomes), numpy.float64, count)
                if retry_after
                else None
            )
        except TypeError:  # a failure is no reply tuple
            binding = self._binding
            decisions = self._settle_many(
                keys,
                costs,
                [
                    outcome
                    if isinstance(outcome, BaseException)
                    else binding.decision(outcome)
                    for outcome in outcomes
                ],
            )
            return decision_arrays(numpy, decisions, retry_after)
        self._fallback.answered(count)
        if waits is None:
            return allowed == 1
        never = waits == NEVER
        waits /= 1e6
        waits[never] = numpy.inf
        return allowed == 1, waits

    def _settle_many(
        self,
        keys: Sequence[Subject],
        costs: Sequence[int] | None,
        outcomes: Sequence[Decision | BaseException],
    ) -> list[Decision]:
        # Failures are the exception: find them in one pass, then replace
        # them by the policy's decisions, in order.
        failed = [
            index
            for index, outcome in enumerate(outcomes)
            if isinstance(outcome, BaseException)
        ]
        decisions: list[Any] = list(outcomes)
        for index in failed:
            error = decisions[index]
            self._count(error)
            cost = 1 if costs is None else check_cost(costs[index])
            tag = self._schema.tag(keys[index])
            decisions[index] = self._fallback.decide(tag, cost, error)
        self._fallback.answered(len(decisions) - len(failed))
        return decisions

    def _forget(self, key: Subject) -> None:
        # `reset` but for Redis: the local fallback's and table's state.
        self._fallback.reset(self._schema.tag(key))
        if self._answers is not None:
            self._answers.forget(key)
