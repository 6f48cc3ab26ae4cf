"""The Functions library and the EVALSHA path beside it: which one a node
gets, and the recovery from a library that is missing, stale, flushed or
denied. Decisions on both paths are compared with the reference cores in
test_redis_differential.py (its backends run pinned to each path); here,
both paths on one key agree, so every layout one writes the other reads."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from script_path_support import force_path

from ratefuse.core.spec import LimitSpec
from ratefuse.engine._subject_py import LimiterCore
from ratefuse.rates import build_specs, parse
from ratefuse.redis import AsyncRedisBackend, RedisBackend, RedisLimiter
from ratefuse.redis._script_paths import ScriptPath
from ratefuse.redis._scripts import LIBRARY_NAME, LIBRARY_VERSION, library
from redis_servers import RedisServer, command

ALGORITHMS = ("gcra", "fixed_window", "sliding_window", "sliding_log")
BASE_US = 4_000_000_000_000_000
# The library's source digest per version: a change to the source must
# come with a new version (_scripts.LIBRARY_VERSION), or servers would go
# on running the old code under the name the new code calls.
LIBRARY_DIGESTS = {
    1: "75381f5b2080d549a5dd935b0f7e94211ff3f3d17e9d62a39c3ad63219df42cb",
    2: "f40df5884697a29d09e769d9b9e69f3aeb6a71f2cb240f6be916515b37fd485f",
    3: "871305086d6e69607f589ebe533d0c645c660addf26c239940d8ef09dba02753",
    4: "57e46c64ba99ef42e5d9852be805b58f984edf814c0d5aa2da4a18a850283f93",
}


def fcalls(port: int) -> tuple[int, int]:
    """(FCALL calls, EVALSHA calls) the server at ``port`` has run."""
    client = redis.Redis(port=port)
    stats = client.info("commandstats")
    client.close()
    return (
        int(stats.get("cmdstat_fcall", {}).get("calls", 0)),
        int(stats.get("cmdstat_evalsha", {}).get("calls", 0)),
    )


def specs(rate: str, algorithm: str) -> list[LimitSpec]:
    return list(build_specs(parse(rate), algorithm))


def test_the_library_version_names_its_source() -> None:
    digest = hashlib.sha256(library().source).hexdigest()
    assert LIBRARY_DIGESTS.get(LIBRARY_VERSION) == digest, (
        "the Functions library changed: bump _scripts.LIBRARY_VERSION "
        f"unless no release shipped {LIBRARY_DIGESTS.get(LIBRARY_VERSION)!r}, "
        f"and record {{version: {digest!r}}} here"
    )
    assert f"ratefuse_v{LIBRARY_VERSION}" == LIBRARY_NAME
    assert library().source.startswith(f"#!lua name={LIBRARY_NAME}\n".encode())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_new_server_gets_the_library_once(
    disposable_redis: RedisServer, fresh_name, algorithm: str
) -> None:
    client = redis.Redis(port=disposable_redis.port)
    with RedisBackend(client) as backend:
        store = backend.bind(specs("3/h", algorithm), fresh_name())
        assert [store.decide_us("k").allowed for _ in range(4)] == [1, 1, 1, 0]
        assert store.decide_us("k", 5).retry_after_us == -1
        assert backend.stats().function_loads == 1
    assert library().functions[algorithm].decode() in str(client.function_list())
    # The first FCALL met no function, then five decided; no EVALSHA.
    assert fcalls(disposable_redis.port) == (6, 0)
    client.close()


def test_more_limits_than_the_library_caches(
    disposable_redis: RedisServer, fresh_name
) -> None:
    # The library keeps 512 parsed wire strings, then starts afresh: the
    # first limiters' limits are parsed again and decide as before.
    client = redis.Redis(port=disposable_redis.port)
    with RedisBackend(client) as backend:
        force_path(backend, ScriptPath.FUNCTIONS)
        stores = [
            backend.bind(specs(f"{limit}/h", "gcra"), fresh_name())
            for limit in range(1, 601)
        ]
        for store in [*stores, *stores]:
            store.decide_us("k")
        remaining = [store.decide_us("k", 0).remaining for store in stores]
    assert remaining == [max(limit - 2, 0) for limit in range(1, 601)]
    client.close()


def test_evalsha_when_forced(disposable_redis: RedisServer, fresh_name) -> None:
    client = redis.Redis(port=disposable_redis.port)
    with RedisBackend(client) as backend:
        force_path(backend, ScriptPath.EVALSHA)
        store = backend.bind(specs("3/h", "gcra"), fresh_name())
        assert [store.decide_us("k").allowed for _ in range(4)] == [1, 1, 1, 0]
    assert fcalls(disposable_redis.port) == (0, 5)  # NOSCRIPT, then 4
    client.close()


@pytest.mark.parametrize(
    "denied", ["-function", "-fcall -function", "-fcall"], ids=str.strip
)
def test_functions_denied_by_acl_decide_through_evalsha(
    disposable_redis: RedisServer, fresh_name, denied: str
) -> None:
    port = disposable_redis.port
    rules = ["on", ">secret", "~*", "&*", "+@all", *denied.split()]
    assert command(port, "ACL", "SETUSER", "limited", *rules).strip() == "OK"
    client = redis.Redis(port=port, username="limited", password="secret")
    with RedisBackend(client) as backend:
        for algorithm in ALGORITHMS:
            store = backend.bind(specs("3/h", algorithm), fresh_name())
            assert [store.decide_us("k").allowed for _ in range(4)] == [1, 1, 1, 0]
        assert not backend._transport.paths.functions(None)
        assert backend.stats().error_replies == 0
    assert fcalls(port)[1] >= 4 * len(ALGORITHMS)
    if "-function" in denied:
        admin = redis.Redis(port=port)
        assert admin.function_list() == []
        admin.close()
    client.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_function_flush_in_the_middle_of_traffic(
    disposable_redis: RedisServer, fresh_name, algorithm: str
) -> None:
    admin = redis.Redis(port=disposable_redis.port)
    client = redis.Redis(port=disposable_redis.port)
    limiter = RedisLimiter(
        "5/h", algorithm, backend=client, name=fresh_name(), on_backend_error="raise"
    )
    assert [limiter.try_acquire("k") for _ in range(3)] == [True] * 3
    admin.function_flush()
    # The state is the key's, not the library's: two units are left.
    assert [limiter.try_acquire("k") for _ in range(3)] == [True, True, False]
    assert limiter.backend.stats().function_loads == 2
    assert admin.function_list() != []
    limiter.close()
    client.close()
    admin.close()


def test_function_flush_in_the_middle_of_traffic_asyncio(
    disposable_redis: RedisServer, fresh_name
) -> None:
    async def run() -> list[bool]:
        client = redis.asyncio.Redis(port=disposable_redis.port)
        backend = AsyncRedisBackend(client)
        store = backend.bind(specs("5/h", "gcra"), fresh_name())
        got = [(await store.decide_us("k")).allowed == 1 for _ in range(3)]
        admin = redis.asyncio.Redis(port=disposable_redis.port)
        await admin.function_flush()
        await admin.aclose()
        got += [(await store.decide_us("k")).allowed == 1 for _ in range(3)]
        assert backend.stats().function_loads == 2
        await backend.aclose()
        await client.aclose()
        return got

    assert asyncio.run(run()) == [True] * 5 + [False]


def test_other_code_under_the_library_name_is_replaced(
    disposable_redis: RedisServer, fresh_name
) -> None:
    admin = redis.Redis(port=disposable_redis.port)
    admin.function_load(
        f"#!lua name={LIBRARY_NAME}\n"
        f"redis.register_function('{LIBRARY_NAME}_other', function() return 1 end)"
    )
    client = redis.Redis(port=disposable_redis.port)
    with RedisBackend(client) as backend:
        store = backend.bind(specs("2/h", "gcra"), fresh_name())
        assert [store.decide_us("k").allowed for _ in range(3)] == [1, 1, 0]
    listed = str(admin.function_list())
    assert library().functions["gcra"].decode() in listed
    assert f"{LIBRARY_NAME}_other" not in listed
    client.close()
    admin.close()


def test_every_cluster_node_decides_through_functions(
    redis_cluster, fresh_name
) -> None:
    before = {port: fcalls(port)[0] for port in redis_cluster.ports}
    client = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    with RedisBackend(client) as backend:
        store = backend.bind(specs("3/h", "gcra"), fresh_name())
        for subject in range(60):
            assert store.decide_us(subject).allowed == 1
    client.close()
    assert all(fcalls(port)[0] > before[port] for port in redis_cluster.ports)


def test_function_flush_on_every_cluster_node(
    redis_cluster, cluster_client, fresh_name
) -> None:
    with RedisBackend(cluster_client, timeout=5.0) as backend:
        limiter = RedisLimiter("10/h", backend=backend, name=fresh_name())
        keys = [f"k{index}" for index in range(50)]
        assert all(limiter.decide(key).remaining == 9 for key in keys)
        for port in redis_cluster.ports:
            command(port, "FUNCTION", "FLUSH")
        loads = backend.stats().function_loads
        # A batch of one key per slot: single calls, all FCALL, pipelined
        # per node behind one FUNCTION LOAD each.
        assert all(d.remaining == 8 for d in limiter.decide_many_decisions(keys))
        assert backend.stats().function_loads - loads == 3
        assert limiter.stats().fallbacks == 0


class _Reference:
    # The reference core, dropping a state a script would not store.
    def __init__(self, limits: list[LimitSpec]) -> None:
        self.core = LimiterCore(limits)
        self.stored = False

    def decide(self, cost: int, now: int) -> tuple[int, int, int, int, int]:
        verdict, spec = self.core._decide(cost, now)
        if verdict.reset_after_ns > 0:
            self.stored = True
        elif not self.stored:
            self.core.reset()
        return (int(verdict[0]), *verdict[1:4], spec.capacity)


def _to_ns(spec: LimitSpec) -> LimitSpec:
    # A spec in microseconds as the cores' nanoseconds (see the
    # differential test: the reference then decides on microseconds).
    return spec._replace(
        period_ns=spec.period_ns * 1000, interval_ns=spec.interval_ns * 1000
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("rate", ["4/s", "4/s; 9/3s"])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    trace=st.lists(
        st.tuples(
            st.sampled_from(list(ScriptPath)),
            st.integers(0, 600_000),
            st.integers(0, 5),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_both_paths_read_what_either_wrote(
    node_backend, script_path, fresh_name, algorithm: str, rate: str, trace
) -> None:
    limits = [
        spec._replace(
            period_ns=spec.period_ns // 1000, interval_ns=spec.interval_ns // 1000
        )
        for spec in specs(rate, algorithm)
    ]
    store = node_backend.bind([_to_ns(spec) for spec in limits], fresh_name())
    reference = _Reference(limits)
    now = BASE_US
    try:
        for index, (path, step, cost) in enumerate(trace):
            now += step
            force_path(node_backend, path)
            got = store.decide_us("subject", cost, now_us=now)
            expected = reference.decide(cost, now)
            assert (int(got.allowed), *got[1:4], limits[got.binding].capacity) == (
                expected
            ), f"step {index} on {path.name}"
    finally:
        force_path(node_backend, script_path)
