"""The README's examples that need no server run as written (the Redis ones
run in tests/redis_backend/test_readme_redis.py)."""

from __future__ import annotations

import pytest

from readme_examples import EXAMPLES, PRINTED, example_id, needs_redis, run_example

LOCAL = [source for source in EXAMPLES if not needs_redis(source)]


def test_readme_has_examples() -> None:
    assert len(LOCAL) >= 2
    assert len(EXAMPLES) > len(LOCAL)  # and some that need Redis


@pytest.mark.parametrize("source", LOCAL, ids=example_id)
def test_readme_example_runs(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_example(source)
    if source in PRINTED:
        assert capsys.readouterr().out == PRINTED[source]


def test_readme_has_a_printed_example() -> None:
    # Each printed block belongs to one whole example (so that it is checked).
    assert PRINTED
    assert set(PRINTED) <= set(EXAMPLES)


def test_readme_has_no_unrun_code_block() -> None:
    # Every Python block is a ```python example, which these tests run: a
    # ```py block would be shown to users and never run.
    from readme_examples import TEXT

    assert "```py\n" not in TEXT


def test_readme_shm_example_shares_one_quota_between_processes() -> None:
    # The example's setup lines, run as two pre-fork workers would run them
    # (separate processes, no shared parent state), must open one table:
    # together they admit the quota once, not once per worker.
    import subprocess
    import sys

    (source,) = [s for s in LOCAL if "ShmKeyedLimiter(" in s]
    setup = source[: source.index("\n", source.index("per_user = "))]
    worker = (
        f"{setup}\n"
        "print(sum(per_user.try_acquire('alice') for _ in range(150)))\n"
        "per_user.close()\n"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        admitted = [int(process.communicate(timeout=60)[0]) for process in workers]
    finally:
        from ratefuse.shm import ShmBackend

        namespace: dict[str, object] = {}
        exec(setup.replace("per_user = ", "_ = "), namespace)
        backend = namespace["backend"]
        assert isinstance(backend, ShmBackend)
        backend.unlink()
    assert sum(admitted) == 100  # "100/minute", shared by both workers
