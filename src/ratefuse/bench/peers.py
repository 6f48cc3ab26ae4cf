"""The peer libraries, driven through the same loops as ratefuse.

Each peer scenario carries the group and name of the ratefuse scenario it
competes with (``try_acquire``/``gcra``, ...), so the report can print a
speed-up per pair. Peers' keyed tables are timed in a group of their own
(100k keys each held beside ratefuse's would slow it through the allocator
and the caches) and compared with ratefuse's ``keyed try_acquire`` of as
many live keys; ratefuse times its keyed table with gcra, so a peer's keyed
row (whatever its algorithm, named in its label) is compared with that.
A peer that is not installed is named and skipped, never an error: ``pip
install 'ratefuse[peers]'`` installs them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from typing import Any

from ratefuse.bench.scenarios import Loop, Scenario, calls, noop, rejections
from ratefuse.bench.scenarios_keyed import KEYED_GROUP, live_keys_name

# The rates ratefuse's own scenarios use (ratefuse.bench.scenarios): one every
# limiter keeps admitting during a run, and for the logs, whose memory grows
# with the limit, 100,000 per second.
FAST_LIMIT = 1_000_000_000
LOG_LIMIT = 100_000
KEYED_KEYS = 100_000


@dataclass(frozen=True)
class Peer:
    """`Peer` is an installable library: its distribution and module names."""

    distribution: str
    module: str

    def version(self) -> str | None:
        """`version` is the installed version, or None if not installed."""
        try:
            importlib.import_module(self.module)
            return importlib.metadata.version(self.distribution)
        except (ImportError, importlib.metadata.PackageNotFoundError):
            return None


PEERS = (
    Peer("limits", "limits"),
    Peer("pyrate-limiter", "pyrate_limiter"),
    Peer("throttled-py", "throttled"),
    Peer("token-bucket", "token_bucket"),
    Peer("pybreaker", "pybreaker"),
    Peer("circuitbreaker", "circuitbreaker"),
)


def _keyed_calls(function: Callable[[str], object], keys: list[str], n: int) -> None:
    count = len(keys)
    index = 0
    for _ in repeat(None, n):
        function(keys[index])
        index = index + 1 if index + 1 < count else 0


def keys_for(count: int) -> list[str]:
    """`keys_for` is ``count`` distinct user-like keys."""
    return [f"user:{index}" for index in range(count)]


# ---- limiter factories: a callable deciding one unit for a key ----


def limits_hit(strategy: str, limit: int, period_s: int) -> Callable[[str], bool]:
    """`limits_hit` is limits' ``hit`` with MemoryStorage and ``strategy``."""
    from limits import RateLimitItemPerSecond, storage, strategies

    limiter_class = {
        "fixed_window": strategies.FixedWindowRateLimiter,
        "moving_window": strategies.MovingWindowRateLimiter,
        "sliding_window": strategies.SlidingWindowCounterRateLimiter,
    }[strategy]
    memory = storage.MemoryStorage()
    # MemoryStorage expires keys from a timer thread every 10 ms that holds
    # the GIL while it walks every key: left running it would slow every
    # other contender of an interleaved run. Expiry is not needed here.
    memory.timer.cancel()
    limiter = limiter_class(memory)
    item = RateLimitItemPerSecond(limit, period_s)
    return lambda key: limiter.hit(item, key)


def pyrate_try(limit: int, period_s: int) -> Callable[[str], bool]:
    """`pyrate_try` is pyrate-limiter's non-blocking ``try_acquire``."""
    from pyrate_limiter import Duration, Limiter, Rate

    limiter = Limiter(Rate(limit, Duration.SECOND * period_s))
    return lambda key: bool(limiter.try_acquire(key, blocking=False))


def throttled_limit(algorithm: str, limit: int) -> Callable[[str], bool]:
    """`throttled_limit` is throttled-py's ``limit`` with MemoryStore."""
    from throttled import MemoryStore, Throttled, rate_limiter

    throttle = Throttled(
        quota=rate_limiter.per_sec(limit, burst=limit),
        store=MemoryStore(),
        using=algorithm,
    )
    return lambda key: not throttle.limit(key).limited


def token_bucket_consume(limit: int) -> Callable[[str], bool]:
    """`token_bucket_consume` is token-bucket's ``consume``."""
    import token_bucket

    limiter = token_bucket.Limiter(limit, limit, token_bucket.MemoryStorage())
    return lambda key: bool(limiter.consume(key))


# (ratefuse name, peer, label, factory(limit, period_s) -> decide(key))
LIMITER_PEERS: tuple[
    tuple[str, Peer, str, Callable[[int, int], Callable[[str], bool]]], ...
] = (
    (
        "gcra",
        PEERS[3],
        "token-bucket",
        lambda limit, period: token_bucket_consume(limit),
    ),
    (
        "gcra",
        PEERS[2],
        "throttled-py gcra",
        lambda limit, period: throttled_limit("gcra", limit),
    ),
    ("fixed_window", PEERS[0], "limits fixed", partial(limits_hit, "fixed_window")),
    (
        "fixed_window",
        PEERS[2],
        "throttled-py fixed",
        lambda limit, period: throttled_limit("fixed_window", limit),
    ),
    (
        "sliding_window",
        PEERS[0],
        "limits sliding",
        partial(limits_hit, "sliding_window"),
    ),
    ("sliding_log", PEERS[0], "limits moving", partial(limits_hit, "moving_window")),
    ("sliding_log", PEERS[1], "pyrate-limiter", pyrate_try),
)


def limiter_peer_scenarios(
    keyed_keys: int = KEYED_KEYS,
) -> tuple[list[Scenario], list[str]]:
    """`limiter_peer_scenarios` is every installed peer on one key and on
    ``keyed_keys`` keys; also returns the names of the peers not installed."""
    scenarios: list[Scenario] = []
    missing: list[str] = []
    for name, peer, label, factory in LIMITER_PEERS:
        version = peer.version()
        if version is None:
            missing.append(peer.distribution)
            continue
        tag = f"{label} {version}"

        limit = LOG_LIMIT if name == "sliding_log" else FAST_LIMIT

        def single(factory: Any = factory, limit: int = limit) -> Loop:
            decide = factory(limit, 1)
            return partial(calls, partial(decide, "subject"))

        def keyed(factory: Any = factory, limit: int = limit) -> Loop:
            decide = factory(limit, 1)
            keys = keys_for(keyed_keys)
            for key in keys:
                decide(key)
            return partial(_keyed_calls, decide, keys)

        scenarios.append(Scenario("try_acquire", name, tag, single))
        if peer.module != "pyrate_limiter":  # one bucket per key: no keyed mode
            versus = (KEYED_GROUP, live_keys_name(keyed_keys))
            scenarios.append(
                Scenario(f"{KEYED_GROUP}, peers", versus[1], tag, keyed, 1, versus)
            )
    return scenarios, sorted(set(missing))


def breaker_peer_scenarios() -> tuple[list[Scenario], list[str]]:
    """`breaker_peer_scenarios` is pybreaker and circuitbreaker around the
    no-op: closed (a call) and open (a rejection raising their error)."""
    scenarios: list[Scenario] = []
    missing: list[str] = []
    for peer, loops in ((PEERS[4], _pybreaker_loops), (PEERS[5], _circuit_loops)):
        version = peer.version()
        if version is None:
            missing.append(peer.distribution)
            continue
        tag = f"{peer.distribution} {version}"
        closed, opened = loops()
        scenarios.append(Scenario("breaker closed", "decorator", tag, closed))
        scenarios.append(Scenario("breaker open", "decorator", tag, opened))
    return scenarios, missing


BreakerLoops = tuple[Callable[[], Loop], Callable[[], Loop]]


def _pybreaker_loops() -> BreakerLoops:
    # pybreaker's closed and open loops (it is installed).
    import pybreaker

    def closed() -> Loop:
        breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600)
        return partial(calls, partial(breaker.call, noop))

    def opened() -> Loop:
        breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600)
        breaker.open()
        return partial(
            rejections, partial(breaker.call, noop), pybreaker.CircuitBreakerError
        )

    return closed, opened


def _circuit_loops() -> BreakerLoops:
    # circuitbreaker's closed and open loops (it is installed).
    import circuitbreaker

    def closed() -> Loop:
        breaker = circuitbreaker.CircuitBreaker(
            failure_threshold=5, recovery_timeout=3600
        )
        return partial(calls, breaker(noop))

    def opened() -> Loop:
        breaker = circuitbreaker.CircuitBreaker(
            failure_threshold=1, recovery_timeout=3600
        )
        guarded = breaker(_fail)
        with contextlib.suppress(RuntimeError):
            guarded()  # one failure opens it
        return partial(rejections, guarded, circuitbreaker.CircuitBreakerError)

    return closed, opened


def _fail() -> None:
    raise RuntimeError("upstream down")
