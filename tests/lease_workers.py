"""Worker processes of the lease tests (importable by a forkserver)."""

from __future__ import annotations

import time


def server_us(client: object) -> int:
    """`server_us` is the Redis server's clock in microseconds."""
    seconds, micros = client.time()  # type: ignore[attr-defined]
    return int(seconds) * 1_000_000 + int(micros)


def lease_hammer(
    port: int,
    cluster: bool,
    name: str,
    limits: object,
    lease: object,
    seconds: float,
    barrier: object,
    stop_at: object,
    results: object,
) -> None:
    """`lease_hammer` asks for one unit of the shared key, through leases,
    after the barrier until ``stop_at`` (a shared monotonic time that the
    first worker through sets to its start + ``seconds``: the monotonic
    clock is system-wide), and reports (admitted, server time before,
    server time after, monotonic start, stop_at, limiter stats)."""
    import redis

    from ratefuse.redis import RedisBackend, RedisLimiter

    client: redis.Redis | redis.RedisCluster = (
        redis.RedisCluster(host="127.0.0.1", port=port)
        if cluster
        else redis.Redis(host="127.0.0.1", port=port)
    )
    # Accuracy, not latency, is judged: a loaded machine must not turn a
    # slow answer into a fallback, so the timeout is generous.
    with RedisLimiter(
        limits,  # type: ignore[arg-type]
        backend=RedisBackend(client, timeout=10.0),
        name=name,
        on_backend_error="raise",
        lease=lease,  # type: ignore[arg-type]
    ) as limiter:
        limiter.decide("warm-up", 0)  # connects and loads the script
        barrier.wait(timeout=60)  # type: ignore[attr-defined]
        first = server_us(client)
        started = time.monotonic()
        with stop_at.get_lock():  # type: ignore[attr-defined]
            if not stop_at.value:  # type: ignore[attr-defined]
                stop_at.value = started + seconds  # type: ignore[attr-defined]
            deadline = stop_at.value  # type: ignore[attr-defined]
        admitted = 0
        try_acquire = limiter.try_acquire
        while time.monotonic() < deadline:
            for _ in range(200):
                admitted += try_acquire("shared")
        last = server_us(client)
        stats = limiter.stats()
    client.close()
    results.put((admitted, first, last, started, deadline, stats))  # type: ignore[attr-defined]


def lease_and_hold(
    port: int,
    name: str,
    limits: object,
    lease: object,
    ready: object,
    hold: object,
) -> None:
    """`lease_and_hold` takes one lease of the shared key, spends one unit,
    says so on ``ready`` and blocks on ``hold`` (never set) until killed,
    holding the rest."""
    import redis

    from ratefuse.redis import RedisBackend, RedisLimiter

    client = redis.Redis(host="127.0.0.1", port=port)
    limiter = RedisLimiter(
        limits,  # type: ignore[arg-type]
        backend=RedisBackend(client, timeout=10.0),
        name=name,
        on_backend_error="raise",
        lease=lease,  # type: ignore[arg-type]
    )
    assert limiter.try_acquire("shared")
    ready.put(limiter.stats().lease_units_granted)  # type: ignore[attr-defined]
    hold.wait(60)  # type: ignore[attr-defined]  # the test kills us first
