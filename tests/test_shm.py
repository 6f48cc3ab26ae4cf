"""The shared-memory limiters in one process, both implementations: the
API, bad input, table creation and refusal, the full table, and the states
a killed process can leave behind (written into the table by hand).
Multi-process accuracy and SIGKILL are in test_shm_processes.py."""

from __future__ import annotations

import mmap
import os
import struct
import threading
import uuid

import pytest

from ratefuse import KeyedLimiter, Rate, RateLimitExceeded
from ratefuse.core._keys_py import fingerprint
from ratefuse.core.algorithms import REGISTRY
from ratefuse.core.keys import split_secret
from ratefuse.core.spec import LimitSpec
from ratefuse.engine import shm_layout as layout
from ratefuse.shm import ShmBackend, ShmKeyedLimiter, ShmLimiter, ShmTableError
from shm_support import SECRET, SLOTS, check_consistent, core, slots

MS = 1_000_000
SECOND = 1_000 * MS
# Every algorithm shared memory supports.
ALGORITHMS = REGISTRY.named(lambda record: record.shm_counts is not None)
K0, K1 = split_secret(SECRET)


@pytest.fixture
def backend(tmp_path) -> ShmBackend:
    """`backend` is a table path of its own, removed with tmp_path."""
    return ShmBackend(tmp_path / "table", max_keys=64)


@pytest.fixture
def impl_name(impl) -> str:
    """`impl_name` is the name of the ``impl`` fixture's implementation."""
    return impl.name


# ---- decisions ----


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_decisions_equal_the_in_memory_keyed_limiter(impl, backend, algorithm) -> None:
    rate = Rate(3, 1.0)
    shm = core(impl.name, backend, rate, algorithm)
    memory = KeyedLimiter(rate, algorithm)
    for now in (0, 1, 300 * MS, 999 * MS, SECOND, SECOND + 1, 5 * SECOND):
        for key in ("a", b"a", 7):
            for cost in (0, 1, 2, 4):
                assert shm.decide(key, cost, now) == memory.decide(key, cost, now)


def test_single_subject_and_keyed_verbs(impl, backend, tmp_path) -> None:
    single = core(impl.name, ShmBackend(tmp_path / "one"), Rate(2, 1.0), single=True)
    assert [single.try_acquire(1, 0) for _ in range(3)] == [True, True, False]
    assert single.decide(0, 0).remaining == 0
    single.reset()
    assert single.decide(0, 0).remaining == 2
    keyed = core(impl.name, backend, Rate(2, 1.0))
    assert [keyed.try_acquire("k", 1, 0) for _ in range(3)] == [True, True, False]
    keyed.reset("k")
    assert keyed.try_acquire("k", 2, 0)
    assert keyed.stats() == {
        "live_keys": 1,
        "max_keys": 64,
        "capacity": 16 * SLOTS,
        "evictions": 0,
        "expired": 0,
        "memory_bytes": layout.HEADER_BYTES + 16 * layout.BUCKET_BYTES,
    }


def test_states_are_shared_between_limiters_on_one_table(impl, backend) -> None:
    first = core(impl.name, backend, Rate(2, 1.0))
    second = core(impl.name, backend, Rate(2, 1.0))
    assert first.try_acquire("k", 1, 0)
    assert second.try_acquire("k", 1, 0)
    assert not first.try_acquire("k", 1, 0)
    assert second.decide("k", 1, 0).retry_after == 0.5


def test_reserve_cancel_and_acquire_on_a_manual_clock(impl, backend) -> None:
    clock = ManualClock()
    limiter = core(impl.name, backend, Rate(10, 1.0, 1), clock=clock, sleep=clock.sleep)
    assert limiter.try_acquire("k")
    reservation = limiter.reserve("k")
    assert reservation.ok
    assert reservation.delay == 0.1
    reservation.cancel()
    assert limiter.reserve("k", max_wait=0.05).ok is False
    limiter.acquire("k")
    assert clock.sleeps == [0.1]
    with pytest.raises(RateLimitExceeded):
        limiter.acquire("k", 1, 0.05)


def test_public_limiters(backend, tmp_path) -> None:
    with ShmKeyedLimiter("2/s", backend=backend) as keyed:
        assert repr(keyed).startswith("ShmKeyedLimiter('2/1s', algorithm='gcra'")
        calls = []

        @keyed.limit(lambda user: user, wait=False)
        def handler(user: str) -> None:
            calls.append(user)

        handler("a")
        handler("a")
        with pytest.raises(RateLimitExceeded):
            handler("a")
        assert calls == ["a", "a"]
    with pytest.raises(ValueError, match="closed"):
        keyed.try_acquire("a")
    single = ShmLimiter("1/h", "fixed_window", backend=str(tmp_path / "single"))
    single.admit_or_raise()
    with pytest.raises(RateLimitExceeded):
        single.admit_or_raise()
    assert single.backend.max_keys == 1
    single.close()
    single.close()  # idempotent
    single.backend.unlink()
    assert not single.backend.exists()


def test_bare_name_maps_to_dev_shm() -> None:
    name = f"ratefuse-test-{uuid.uuid4().hex}"
    backend = ShmBackend(name)
    assert backend.path == f"/dev/shm/{name}"
    try:
        with ShmLimiter("5/s", backend=backend) as limiter:
            assert limiter.try_acquire()
        assert os.path.exists(backend.path)
        assert os.stat(backend.path).st_mode & 0o777 == 0o600
    finally:
        backend.unlink()


# ---- bad input ----


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("", "path must name a file"),
        ("a\x00b", "path must name a file"),
        ("..", "path must name a file"),
        (b"/tmp/x", "path must be a str"),
        (7, "path must be a str"),
        ("/no/such/directory/table", "directory does not exist"),
        ("/tmp/", "not a directory"),
        ("/tmp", "not a directory"),
    ],
)
def test_bad_path(path, match) -> None:
    with pytest.raises(ValueError, match=match):
        ShmBackend(path)


@pytest.mark.parametrize("max_keys", [0, -1, 2**28 + 1, 1.5, True, "10", None])
def test_bad_max_keys(tmp_path, max_keys) -> None:
    with pytest.raises(ValueError, match="max_keys must be"):
        ShmBackend(tmp_path / "t", max_keys)


@pytest.mark.parametrize("mode", [-1, 0o1000, "600", True])
def test_bad_mode(tmp_path, mode) -> None:
    with pytest.raises(ValueError, match="mode must be"):
        ShmBackend(tmp_path / "t", mode=mode)


@pytest.mark.parametrize(
    ("limits", "algorithm", "match"),
    [
        ("10/s; 1000/h", "gcra", "limits: a shared-memory limiter takes exactly one"),
        ("10/s", "leaky_bucket", "algorithm must be gcra"),
        ("10/s", "sliding_log", "algorithm must be gcra"),
        ("10/s", "nope", "algorithm must be one of"),
        ("40000/s", "sliding_window", "limit: sliding_window .* at most 32767"),
        ("0/s", "gcra", "limit must be"),
    ],
)
def test_bad_limits_raise_and_create_nothing(backend, limits, algorithm, match) -> None:
    with pytest.raises(ValueError, match=match):
        ShmKeyedLimiter(limits, algorithm, backend=backend)
    assert not backend.exists()


def test_a_tolerance_that_could_overflow_the_state_word_is_refused() -> None:
    # Unreachable through Rate today (it caps the tolerance lower); the
    # table's own check stands in case that cap is ever raised.
    with pytest.raises(ValueError, match="burst: in shared memory"):
        layout.packing_bits(LimitSpec("gcra", 2**31, 2**31, 2**31))


def test_bad_backend_and_callables(tmp_path) -> None:
    with pytest.raises(ValueError, match="backend must be"):
        ShmKeyedLimiter("1/s", backend=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clock must be callable"):
        ShmLimiter("1/s", backend=tmp_path / "t", clock=5)  # type: ignore[arg-type]


def test_bad_calls(impl, backend) -> None:
    limiter = core(impl.name, backend, Rate(1, 1.0))
    with pytest.raises(ValueError, match="cost must be >= 0"):
        limiter.try_acquire("k", -1, 0)
    with pytest.raises(ValueError, match="now must be in"):
        limiter.try_acquire("k", 1, -1)
    with pytest.raises(TypeError, match="key must be str, bytes or int"):
        limiter.try_acquire(1.5, 1, 0)
    assert limiter.stats()["live_keys"] == 0


# ---- creating, reopening and refusing tables ----


def test_reopening_keeps_every_state(impl, backend) -> None:
    limiter = core(impl.name, backend, Rate(5, 1.0))
    for key in range(40):
        assert limiter.try_acquire(key, key % 6, 0)
    limiter.close()
    again = core(impl.name, backend, Rate(5, 1.0), secret=os.urandom(16))
    for key in range(40):
        assert again.decide(key, 0, 0).remaining == 5 - key % 6


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_keys": 65}, "max_keys: table has 64, this limiter wants 65"),
        ({"rate": Rate(6, 1.0)}, "algorithm and rate: table has 'gcra capacity=5"),
        ({"algorithm": "fixed_window"}, "algorithm and rate"),
        ({"single": True}, "kind: table has 'ShmKeyedLimiter'"),
        ({"other_impl": True}, "implementation: table has"),
    ],
)
def test_other_parameters_are_refused_naming_the_field(
    impl_name, backend, change, field
) -> None:
    core(impl_name, backend, Rate(5, 1.0)).close()
    change = dict(change)  # shared by both implementations' runs
    other = {"cython": "python", "python": "cython"}[impl_name]
    name = other if change.pop("other_impl", False) else impl_name
    reopen = ShmBackend(backend.path, change.pop("max_keys", 64))
    rate = change.pop("rate", Rate(5, 1.0))
    with pytest.raises(ShmTableError, match=field) as raised:
        core(name, reopen, rate, change.pop("algorithm", "gcra"), **change)
    assert isinstance(raised.value, ValueError)


def patch_header(path: str, offset: int, fmt: str, value: object) -> None:
    with open(path, "r+b") as file, mmap.mmap(file.fileno(), 0) as mapping:
        struct.pack_into(fmt, mapping, offset, value)


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "match"),
    [
        (0, "8s", b"NOTATABL", "not a ratefuse shared-memory table .magic"),
        (8, "=I", 2, "layout version 2, this ratefuse reads version 1"),
        (48, "=q", 16, "slots per bucket: table has 16"),
    ],
)
def test_foreign_files_are_refused(impl, backend, offset, fmt, value, match) -> None:
    core(impl.name, backend, Rate(5, 1.0)).close()
    patch_header(backend.path, offset, fmt, value)
    with pytest.raises(ShmTableError, match=match):
        core(impl.name, backend, Rate(5, 1.0))


def test_short_or_unready_files_are_refused_after_a_bounded_wait(
    impl, backend, monkeypatch
) -> None:
    with open(backend.path, "wb") as file:
        file.write(b"RFUSE")
    os.chmod(backend.path, 0o600)  # the mode check comes first
    with pytest.raises(ShmTableError, match="not a ratefuse shared-memory table"):
        core(impl.name, backend, Rate(5, 1.0))
    os.unlink(backend.path)
    core(impl.name, backend, Rate(5, 1.0)).close()
    patch_header(backend.path, layout.READY_OFFSET, "=q", 0)
    monkeypatch.setattr(layout, "OPEN_TIMEOUT_S", 0.05)
    with pytest.raises(ShmTableError, match=r"not marked ready after 0\.05 s"):
        core(impl.name, backend, Rate(5, 1.0))


def test_concurrent_creation_makes_one_table(impl, backend) -> None:
    limiters = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait()
        limiters.append(core(impl.name, backend, Rate(8, 1.0), secret=os.urandom(16)))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({(limiter.table.k0, limiter.table.k1) for limiter in limiters}) == 1
    assert sum(limiter.try_acquire("k", 1, 0) for limiter in limiters) == 8
    assert not limiters[0].try_acquire("k", 1, 0)
    assert os.listdir(os.path.dirname(backend.path)) == ["table"]


# ---- the full table (max_keys=1: one bucket of 15 slots) ----


def test_full_bucket_evicts_the_state_closest_to_new_and_counts(impl, tmp_path) -> None:
    limiter = core(impl.name, ShmBackend(tmp_path / "t", 1), Rate(1, 1.0, 20))
    for key in range(SLOTS):  # key k is idle at (20 - k) seconds
        assert limiter.try_acquire(key, 20 - key, 0)
    assert limiter.try_acquire("new", 1, 0)
    stats = limiter.stats()
    assert (stats["evictions"], stats["expired"], stats["live_keys"]) == (1, 0, SLOTS)
    assert limiter.decide(SLOTS - 1, 0, 0).remaining == 20  # evicted: as new
    assert limiter.decide(0, 0, 0).remaining == 0  # kept


def test_full_bucket_reuses_idle_states_before_evicting(impl, tmp_path) -> None:
    limiter = core(impl.name, ShmBackend(tmp_path / "t", 1), Rate(1, 1.0, 20))
    for key in range(SLOTS):
        assert limiter.try_acquire(key, 1 + key, 0)  # key k idle at k+1 s
    assert limiter.try_acquire("new", 1, 3 * SECOND)  # keys 0 and 1 are idle
    assert limiter.stats()["expired"] == 1
    assert limiter.stats()["evictions"] == 0
    limiter.reset(5)
    assert limiter.try_acquire("newer", 1, 3 * SECOND)  # takes the freed slot
    assert limiter.stats()["expired"] == 1
    check_consistent(limiter.table.path)


def test_idle_results_are_not_stored(impl, backend) -> None:
    limiter = core(impl.name, backend, Rate(1, 1.0))
    assert limiter.decide("k", 0, 0).remaining == 1
    assert not limiter.try_acquire("k", 2, 0)
    assert limiter.stats()["live_keys"] == 0


# ---- what a killed process leaves behind, written by hand ----


def poke(path: str, bucket: int, index: int, fp: int, state: int, seq: int) -> None:
    """`poke` writes slot ``index`` of ``bucket`` and the bucket's sequence."""
    base = layout.HEADER_BYTES + bucket * layout.BUCKET_BYTES
    with open(path, "r+b") as file, mmap.mmap(file.fileno(), 0) as mapping:
        struct.pack_into("=q", mapping, base, seq)
        struct.pack_into("=Qq", mapping, base + 16 + 16 * index, fp, state)


def one_bucket(impl_name: str, tmp_path, burst: int = 3):
    limiter = core(impl_name, ShmBackend(tmp_path / "t", 1), Rate(1, 1.0, burst))
    return limiter, limiter.table.path, fingerprint(K0, K1, "k")


def test_an_insertion_killed_before_it_won_is_ignored_then_reused(impl, tmp_path):
    limiter, path, fp = one_bucket(impl.name, tmp_path)
    poke(path, 0, 0, fp, layout.PENDING_BASE + 7, 7 << 4)  # claimed, in flight
    assert limiter.try_acquire("k", 3, 0)  # decides as new, in slot 1
    assert slots(path)[0][:2] == [(fp, layout.PENDING_BASE + 7), (fp, 3 * SECOND)]
    assert limiter.try_acquire("other", 1, 0)  # the void claim is reused
    assert slots(path)[0][0] == (fingerprint(K0, K1, "other"), SECOND)
    check_consistent(path)


def test_an_insertion_killed_after_it_won_is_confirmed(impl, tmp_path) -> None:
    limiter, path, fp = one_bucket(impl.name, tmp_path)
    poke(path, 0, 0, fp, layout.PENDING_BASE + 7, 8 << 4 | 0)
    assert limiter.decide("k", 1, 0).remaining == 2
    assert slots(path)[0][:2] == [(fp, SECOND), (0, 0)]


def test_a_bucket_of_dead_insertions_blocks_nobody(impl, tmp_path) -> None:
    limiter, path, _ = one_bucket(impl.name, tmp_path)
    for index in range(SLOTS):
        poke(path, 0, index, index + 1, layout.PENDING_BASE + 7, 7 << 4)
    assert limiter.try_acquire("k", 3, 0)
    assert not limiter.try_acquire("k", 1, 0)
    check_consistent(path)


def test_a_freed_slot_before_a_key_does_not_hide_it(impl, tmp_path) -> None:
    limiter, path, fp = one_bucket(impl.name, tmp_path)
    assert limiter.try_acquire("a", 1, 0)
    assert limiter.try_acquire("k", 3, 0)
    limiter.reset("a")  # slot 0 is FREE; "k" is in slot 1
    assert not limiter.try_acquire("k", 1, 0)
    assert slots(path)[0][:2] == [(0, layout.FREE), (fp, 3 * SECOND)]


class ManualClock:
    """`ManualClock` is integer ns that only ``sleep`` moves."""

    def __init__(self) -> None:
        self.now_ns = 0
        self.sleeps: list[float] = []

    def __call__(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_ns += round(seconds * 1e9)
