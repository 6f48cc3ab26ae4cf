"""Shared-memory tables and other local users, both implementations (issue
21, item 14): a table is used only if no untrusted user can have written
it. The attacker is real: a forked process that switches to another user
(``nobody``) and pre-creates the table, as a hostile local user would."""

from __future__ import annotations

import faulthandler
import os
import signal
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ratefuse.engine import shm_layout as layout
from ratefuse.rates import Rate, build_specs
from ratefuse.shm import ShmBackend, ShmTableError
from shm_support import core

NOBODY = 65534
RATE = Rate(5, 1.0)


@pytest.fixture
def shm_path() -> Iterator[str]:
    """`shm_path` is a fresh name in /dev/shm (world-writable, sticky: the
    directory a hostile user shares with the victim), removed afterwards."""
    path = f"/dev/shm/ratefuse-test-{uuid.uuid4().hex}"
    yield path
    Path(path).unlink(missing_ok=True)


def create_as(uid: int, gid: int, path: str, mode: int, impl_name: str) -> None:
    """`create_as` creates a valid table at ``path`` in a forked process
    running as ``uid``:``gid``, with ``mode``; fails the test if it could
    not."""
    spec = build_specs([RATE], "gcra")[0]
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's exit status reports
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            ShmBackend(path, mode=mode).open_table(
                spec, layout.KIND_KEYED, impl_name
            ).close()
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the other user's process failed"
    info = os.stat(path)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (uid, gid, mode)


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching to another user needs root"
)


@needs_root
@pytest.mark.parametrize("mode", [0o666, 0o600])
def test_a_table_pre_created_by_another_user_is_refused(impl, shm_path, mode) -> None:
    create_as(NOBODY, NOBODY, shm_path, mode, impl.name)
    for requested in (0o600, 0o666):
        with pytest.raises(ShmTableError, match=f"owned by uid {NOBODY}"):
            core(impl.name, ShmBackend(shm_path, mode=requested), RATE)


@needs_root
def test_a_group_member_may_share_a_table_when_the_mode_shares_it(
    impl, shm_path
) -> None:
    # nobody in root's group, with a group-shared mode: trusted as asked.
    create_as(NOBODY, os.getegid(), shm_path, 0o660, impl.name)
    shared = core(impl.name, ShmBackend(shm_path, mode=0o660), RATE)
    assert shared.try_acquire("k", 1, 0)
    shared.close()
    with pytest.raises(ShmTableError, match=f"owned by uid {NOBODY}"):
        core(impl.name, ShmBackend(shm_path, mode=0o600), RATE)


@pytest.mark.parametrize(("mode", "extra"), [(0o666, "0o66"), (0o644, "0o44")])
def test_a_table_granting_more_than_the_requested_mode_is_refused(
    impl, tmp_path, mode, extra
) -> None:
    path = tmp_path / "table"
    core(impl.name, ShmBackend(path, mode=mode), RATE).close()
    with pytest.raises(ShmTableError, match=f"grants {extra} beyond the requested"):
        core(impl.name, ShmBackend(path), RATE)
    # Opened with the mode it was made with, it is used as before.
    again = core(impl.name, ShmBackend(path, mode=mode), RATE)
    assert again.try_acquire("k", 1, 0)
    again.close()


def test_a_table_made_less_private_after_creation_is_refused(impl, tmp_path) -> None:
    path = tmp_path / "table"
    core(impl.name, ShmBackend(path), RATE).close()
    os.chmod(path, 0o606)
    with pytest.raises(ShmTableError, match="mode 0o606, which grants 0o6 beyond"):
        core(impl.name, ShmBackend(path), RATE)
    os.chmod(path, 0o600)
    core(impl.name, ShmBackend(path), RATE).close()


def test_a_table_truncated_while_mapped_kills_its_user_with_sigbus(
    impl, tmp_path
) -> None:
    # The documented limit: the kernel cannot forbid truncating a named
    # file that someone may write, and touching the lost pages is SIGBUS.
    path = tmp_path / "table"
    limiter = core(impl.name, ShmBackend(path), RATE)
    assert limiter.try_acquire("k", 1, 0)
    os.truncate(path, 0)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child dies of the signal
        faulthandler.disable()  # die quietly, without pytest's dump
        limiter.try_acquire("k", 1, 0)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGBUS
