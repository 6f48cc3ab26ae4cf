"""`AdaptiveThrottle`: client-side adaptive throttling (Google SRE book,
chapter 21).

A client that keeps sending to an upstream which refuses most of its
requests only adds to the upstream's load. An adaptive throttle counts,
over a sliding window, the requests the client made and those the upstream
accepted, and refuses new requests locally with probability
``max(0, (requests - K * accepts) / (requests + 1))``: nothing while the
upstream accepts more than ``1/K`` of them, then in proportion as the
accept ratio falls, well before a breaker's failure rate would trip it, and
never entirely (a trickle keeps measuring the upstream)::

    throttle = AdaptiveThrottle(ThrottleConfig(k=2.0, window=120.0))
    if throttle.admit():
        ...send, then throttle.record(accepted=...)

`ThrottledBreaker` puts a throttle in front of a breaker, with every form
of the breaker (decorator, ``call``, ``guard``); the httpx transports take
``throttle=`` too (:mod:`ratefuse.web.client`).
"""

from __future__ import annotations

import math
import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ratefuse.core.args import shown
from ratefuse.core.errors import CircuitOpenError
from ratefuse.core.throttle import DRAW_RANGE, ThrottleCore

DEFAULT_K: Final = 2.0
DEFAULT_WINDOW: Final = 120.0
DEFAULT_BUCKETS: Final = 120
MAX_K: Final = 1000.0
MAX_BUCKETS: Final = 100_000

Clock = Callable[[], int]
Random = Callable[[], float]
# One Prometheus sample as `metric_samples` methods give them to
# ratefuse.metrics: (family, help, gauge, labels, value).
MetricSample = tuple[str, str, bool, dict[str, str], float]


@dataclass(frozen=True)
class ThrottleConfig:
    """`ThrottleConfig` configures an `AdaptiveThrottle`.

    ``k`` (1.0 to 1000, kept to thousandths): the throttle refuses nothing
    while the upstream accepts at least ``1/k`` of the requests; 2.0 (the
    SRE book's choice) lets twice the accepted load through, 1.1 is more
    aggressive. ``window`` (seconds > 0): how far back requests and accepts
    count. ``buckets`` (1 to 100000): the window's resolution; the window
    spans between ``(buckets - 1) / buckets`` and all of ``window``.
    """

    k: float = DEFAULT_K
    window: float = DEFAULT_WINDOW
    buckets: int = DEFAULT_BUCKETS

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, float)):
            raise ValueError(f"k must be a number, got {shown(self.k)}")
        if not 1.0 <= self.k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K:g}, got {self.k!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, (int, float)):
            raise ValueError(f"window must be seconds, got {shown(self.window)}")
        if not 0.0 < self.window < math.inf:
            raise ValueError(f"window must be finite and > 0, got {self.window!r}")
        if isinstance(self.buckets, bool) or not isinstance(self.buckets, int):
            raise ValueError(f"buckets must be an int, got {shown(self.buckets)}")
        if not 1 <= self.buckets <= MAX_BUCKETS:
            raise ValueError(
                f"buckets must be between 1 and {MAX_BUCKETS}, got {self.buckets}"
            )
        if self.bucket_ns < 1:
            raise ValueError(
                f"window / buckets must be at least 1 ns, got "
                f"window={self.window!r}, buckets={self.buckets}"
            )

    @property
    def k_milli(self) -> int:
        """`k_milli` is ``k`` in thousandths, as the core decides with it."""
        return round(self.k * 1000)

    @property
    def bucket_ns(self) -> int:
        """`bucket_ns` is the length of one bucket in integer ns."""
        return int(self.window * 1e9) // self.buckets


class ThrottledError(CircuitOpenError):
    """`ThrottledError` reports a request an `AdaptiveThrottle` refused
    locally; ``name`` names the throttle and ``retry_after`` is 0.0 (the
    next request may go: refusals are random). A CircuitOpenError, so
    that breaker forms and their fallbacks treat it as a rejection."""

    def __str__(self) -> str:
        return f"adaptive throttle {self.name!r} refused the request locally"


@dataclass(frozen=True)
class ThrottleStats:
    """`ThrottleStats` is what an `AdaptiveThrottle` saw.

    ``requests`` and ``accepts``: in the window now (refused requests
    count as requests); ``probability``: the chance that the next request
    is refused. Since construction: ``admitted`` (let go), ``rejected``
    (refused locally), ``accepted`` and ``refused`` (outcomes recorded:
    the upstream accepted the request, or did not).
    """

    requests: int
    accepts: int
    probability: float
    admitted: int
    rejected: int
    accepted: int
    refused: int


class AdaptiveThrottle:
    """`AdaptiveThrottle` refuses requests to one upstream locally as its
    accept ratio falls (see the module). ``config`` a `ThrottleConfig`;
    ``clock`` returns integer ns (None: ``time.monotonic_ns``); ``random``
    returns uniform floats in [0, 1) (None: ``random.random``; inject a
    seeded ``random.Random(...).random`` for repeatable tests). ``name``
    names it in errors and metrics. Thread-safe.
    """

    def __init__(
        self,
        config: ThrottleConfig | None = None,
        *,
        clock: Clock | None = None,
        random: Random | None = None,
        name: str = "throttle",
    ) -> None:
        config = ThrottleConfig() if config is None else config
        if not isinstance(config, ThrottleConfig):
            raise TypeError(f"config must be a ThrottleConfig, got {shown(config)}")
        for field, value in (("clock", clock), ("random", random)):
            if value is not None and not callable(value):
                raise TypeError(f"{field} must be callable or None, got {shown(value)}")
        self.config = config
        self.name = str(name)
        self._clock: Clock = time.monotonic_ns if clock is None else clock
        self._random: Random = _random.random if random is None else random
        self._core = ThrottleCore(config.buckets, config.bucket_ns, config.k_milli)

    def admit(self, now: int | None = None) -> bool:
        """`admit` reports whether a request may go to the upstream; a
        refusal counts as a request the upstream did not accept. Report
        the outcome of an admitted request with `record`."""
        draw = int(self._random() * DRAW_RANGE)
        return self._core.decide(self._clock() if now is None else now, draw)

    def admit_or_raise(self, now: int | None = None) -> None:
        """`admit_or_raise` is `admit` that raises ThrottledError instead
        of returning False."""
        if not self.admit(now):
            raise ThrottledError(self.name, 0.0)

    def record(self, accepted: bool, now: int | None = None) -> None:
        """`record` counts the outcome of an admitted request: ``accepted``
        when the upstream accepted it."""
        self._core.record(bool(accepted), self._clock() if now is None else now)

    def probability(self, now: int | None = None) -> float:
        """`probability` is the chance that a request is refused now."""
        requests, accepts = self._core.totals(self._clock() if now is None else now)
        return max(0.0, (requests - self.config.k_milli * accepts / 1000)) / (
            requests + 1
        )

    def stats(self, now: int | None = None) -> ThrottleStats:
        """`stats` is a snapshot of what the throttle saw (see
        `ThrottleStats`)."""
        now = self._clock() if now is None else now
        requests, accepts = self._core.totals(now)
        admitted, rejected, accepted, refused = self._core.counters()
        return ThrottleStats(
            requests,
            accepts,
            self.probability(now),
            admitted,
            rejected,
            accepted,
            refused,
        )

    def metric_samples(self) -> list[MetricSample]:
        """`metric_samples` are the throttle's Prometheus samples, read by
        :class:`ratefuse.metrics.RatefuseCollector`: (family, help, gauge,
        labels, value)."""
        stats = self.stats()
        calls = "throttle_requests"
        help_calls = "Requests of an adaptive throttle, by what became of them."
        return [
            (calls, help_calls, False, {"result": "admitted"}, stats.admitted),
            (calls, help_calls, False, {"result": "rejected"}, stats.rejected),
            (calls, help_calls, False, {"result": "accepted"}, stats.accepted),
            (calls, help_calls, False, {"result": "refused"}, stats.refused),
            (
                "throttle_reject_probability",
                "Chance that an adaptive throttle refuses the next request.",
                True,
                {},
                stats.probability,
            ),
        ]

    def reset(self) -> None:
        """`reset` forgets the window (the counters keep growing)."""
        self._core.clear()

    def __repr__(self) -> str:
        return (
            f"AdaptiveThrottle({self.name!r}, k={self.config.k}, "
            f"window={self.config.window})"
        )
