"""Host-wide limits without Redis: limiters whose state lives in a table in
shared memory, so that every process on the host (gunicorn or uvicorn
workers, cron jobs, sidecars) draws from one exact quota.

``ShmBackend("api-quota")`` names the table (a bare name is the file
``/dev/shm/api-quota``; any other path works too) and sizes it;
:class:`ShmKeyedLimiter` and :class:`ShmLimiter` decide against it with the
verbs of :class:`ratefuse.KeyedLimiter` and :class:`ratefuse.Limiter`::

    limiter = ShmKeyedLimiter("100/s", backend="api-quota")
    if not limiter.try_acquire(user_id):
        ...  # 429

Every process that constructs a limiter with the same backend path and the
same limit shares its states; the first one creates the table. Updates are
lock-free (one 16-byte compare-and-swap per decision, compiled): a worker
killed at any point leaves the table consistent and blocks nobody. The
table outlives the processes (reopening it keeps every state) until
:meth:`ShmBackend.unlink` removes it.

Limits: one rate per limiter (a state is one 63-bit word; compound limits
such as "10/s; 1000/h" need several words updated atomically, which one CAS
cannot do); algorithms gcra (token_bucket), fixed_window and sliding_window,
the window ones with a limit that fits the packed word (checked at
construction). The pure-Python twin (RATEFUSE_NO_EXTENSIONS=1) takes a file
lock per decision instead; a table records which implementation created it
and refuses the other.

Trust: a table's states and its SipHash secret are shared with everyone who
can open its file, so a table is used only if no untrusted user can have
written it (see :class:`ShmBackend`). A table truncated while mapped kills
the processes using it with SIGBUS: do not resize or rewrite a table in
use; `ShmBackend.unlink` it instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ratefuse.core.args import shown
from ratefuse.core.implementation import IMPLEMENTATION, Implementation
from ratefuse.core.keys import Key
from ratefuse.core.spec import LimitSpec
from ratefuse.engine import shm_layout as layout
from ratefuse.engine.batch import (
    batch_costs,
    batch_keys,
    check_key_types,
    decision_arrays,
    import_numpy,
    one_cost,
)
from ratefuse.engine.forms import KeyedForms, SubjectForms
from ratefuse.engine.shm import ShmKeyedLimiterCore, ShmLimiterCore
from ratefuse.engine.shm_layout import (
    DEFAULT_MAX_KEYS,
    DEFAULT_MODE,
    ShmTable,
    ShmTableError,
)
from ratefuse.engine.subject import Decision
from ratefuse.limiter import burst_hint, check_callable
from ratefuse.rates import (
    DEFAULT_ALGORITHM,
    Rate,
    RateLike,
    build_specs,
    canonical_algorithm,
    to_rates,
)

F = TypeVar("F", bound=Callable[..., Any])
KeyOf = Callable[..., Key]

__all__ = [
    "DEFAULT_MAX_KEYS",
    "DEFAULT_MODE",
    "ShmBackend",
    "ShmKeyedLimiter",
    "ShmLimiter",
    "ShmTableError",
]


class ShmBackend:
    """`ShmBackend` names and sizes a shared-memory table.

    ``path``: a bare name (no "/") means ``/dev/shm/<name>``; otherwise a
    file path in an existing directory. ``max_keys`` (default 65,536) sizes
    the table: buckets of 15 slots (256 bytes), a power of two of them with
    at most 5 keys each on average at max_keys (51 to 102 bytes of file per
    key), so that even with max_keys live keys a bucket overflows (and
    evicts early) with probability about 7e-5. ``mode`` (default 0o600) is
    the new file's permission bits: processes of other users need 0o660 and
    a shared group. Raises ValueError naming the bad field. Immutable; the table
    itself is created by the first limiter that uses it.

    Trust model: an existing table is opened only if the file is owned by
    this process's effective user or by root (or, when ``mode`` grants
    group access, by a member of one of this process's groups) and its
    permissions grant nothing beyond ``mode``; otherwise the limiter raises
    ShmTableError and maps nothing. This stops another local user from
    pre-creating the name (``/dev/shm`` is writable by all) with a mode of
    0o666 and then reading the key secret and rewriting states. Another
    user can still take a name first, which makes every limiter on it
    fail: on a shared host, put tables in a directory only the service's
    user can write. Whoever may write the file (its owner; its group with
    0o660) can also truncate it, and a process whose table is truncated
    while mapped is killed by SIGBUS: the kernel cannot forbid that for a
    named file, so only trusted users may write a table, and a table in
    use is never resized (`unlink` it instead).

    A :class:`ratefuse.protocols.LimiterBackend`: `limiter` and
    `keyed_limiter` build the limiters on this table.
    """

    __slots__ = ("_max_keys", "_mode", "_path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_keys: int = DEFAULT_MAX_KEYS,
        *,
        mode: int = DEFAULT_MODE,
    ) -> None:
        self._path = layout.resolve_path(path)
        self._max_keys = layout.check_max_keys(max_keys)
        if (
            isinstance(mode, bool)
            or not isinstance(mode, int)
            or not 0 <= mode <= 0o777
        ):
            raise ValueError(
                f"mode must be permission bits in [0, 0o777], got {shown(mode)}"
            )
        self._mode = mode

    @property
    def path(self) -> str:
        """`path` is the table file's absolute path."""
        return self._path

    @property
    def max_keys(self) -> int:
        """`max_keys` is the number of keys the table is sized for."""
        return self._max_keys

    @property
    def mode(self) -> int:
        """`mode` is the permission bits a new table file gets."""
        return self._mode

    def open_table(
        self,
        spec: LimitSpec,
        kind: int = layout.KIND_KEYED,
        implementation: Implementation | None = None,
        secret: bytes | None = None,
    ) -> ShmTable:
        """`open_table` maps the table for ``spec``, creating it if absent;
        raises ShmTableError if it exists with other parameters.
        ``implementation`` None means the process-wide one; ``secret`` (16
        bytes, tests only) fixes a new table's key hashing secret."""
        layout.packing_bits(spec)
        params = layout.Params(
            layout.bucket_count(self._max_keys),
            self._max_keys,
            kind,
            spec,
            IMPLEMENTATION if implementation is None else implementation,
        )
        return layout.open_table(self._path, params, self._mode, secret)

    def limiter(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        clock: Callable[[], int] | None = None,
        max_wait: float | None = None,
        sleep: Callable[[float], object] | None = None,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
        **options: Any,
    ) -> ShmLimiter:
        """`limiter` is a ShmLimiter on this table (``Limiter(...,
        backend=self)``); an ``options`` value other than None is a
        ValueError naming it (a Redis limiter's options mean nothing here)."""
        _reject_options(limits, options)
        return ShmLimiter(
            limits,
            algorithm,
            backend=self,
            clock=clock,
            max_wait=max_wait,
            sleep=sleep,
            async_sleep=async_sleep,
        )

    def keyed_limiter(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        clock: Callable[[], int] | None = None,
        max_wait: float | None = None,
        sleep: Callable[[float], object] | None = None,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
        **options: Any,
    ) -> ShmKeyedLimiter:
        """`keyed_limiter` is a ShmKeyedLimiter on this table
        (``KeyedLimiter(..., backend=self)``); options as for `limiter`
        (``max_keys`` too: the backend sizes the table)."""
        _reject_options(limits, options)
        return ShmKeyedLimiter(
            limits,
            algorithm,
            backend=self,
            clock=clock,
            max_wait=max_wait,
            sleep=sleep,
            async_sleep=async_sleep,
        )

    def exists(self) -> bool:
        """`exists` reports whether the table file exists."""
        return os.path.lexists(self._path)

    def unlink(self) -> None:
        """`unlink` removes the table file (no-op if absent). Processes that
        have it mapped keep using the old table; new ones create a new one."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ShmBackend):
            return NotImplemented
        return (self._path, self._max_keys, self._mode) == (
            other._path,
            other._max_keys,
            other._mode,
        )

    def __hash__(self) -> int:
        return hash((self._path, self._max_keys, self._mode))

    def __repr__(self) -> str:
        return f"ShmBackend({self._path!r}, max_keys={self._max_keys})"


def _reject_options(limits: RateLike, options: dict[str, Any]) -> None:
    for field, value in options.items():
        if field == "burst" and value is not None:
            raise ValueError(
                f"burst={shown(value)}: burst is part of a rate, pass "
                f"{burst_hint(limits, value)} as the limits"
            )
        if value is not None:
            sized = " (the ShmBackend sizes it)" if field == "max_keys" else ""
            raise ValueError(
                f"{field} does not apply to a limiter on shared memory{sized}, "
                f"got {shown(value)}"
            )


def _spec_of(
    limits: RateLike, algorithm: str
) -> tuple[tuple[Rate, ...], str, LimitSpec]:
    rates = to_rates(limits)
    name = canonical_algorithm(algorithm)
    if len(rates) != 1:
        raise ValueError(
            "limits: a shared-memory limiter takes exactly one rate (its state "
            f"is one word updated atomically), got {len(rates)}: {shown(limits)}"
        )
    spec = build_specs(rates, name)[0]
    layout.packing_bits(spec)
    return rates, name, spec


def _backend_of(backend: object, max_keys: int) -> ShmBackend:
    if isinstance(backend, ShmBackend):
        return backend
    if isinstance(backend, (str, os.PathLike)):
        return ShmBackend(backend, max_keys)
    raise ValueError(
        f"backend must be a ShmBackend, a name or a path, got {shown(backend)}"
    )


def _check_callables(**values: object) -> None:
    for field, value in values.items():
        check_callable(field, value)


class ShmKeyedLimiter(KeyedForms, ShmKeyedLimiterCore):
    """`ShmKeyedLimiter` admits at most one rate per key, shared by every
    process on the host that uses the same backend.

    ``limits``: one rate ("100/s", a :class:`ratefuse.Rate`); ``algorithm``:
    gcra (default; token_bucket is the same), fixed_window or
    sliding_window. ``backend``: a :class:`ShmBackend`, or a name or path
    (then sized for 65,536 keys). ``clock`` returns integer ns and must be
    host-wide (None: CLOCK_MONOTONIC, which is); ``max_wait``, ``sleep``,
    ``async_sleep`` are as for :class:`ratefuse.Limiter`. Raises ValueError
    naming the field for a bad configuration and ShmTableError if the table
    exists with another limit, size or layout.

    Verbs as for :class:`ratefuse.KeyedLimiter`: ``try_acquire(key,
    cost=1, now=None)``, ``decide``, ``reserve``, ``acquire``,
    ``acquire_async``, ``reset``, ``stats`` (counts from every process),
    ``decide_many(keys, costs=None, now=None, retry_after=False)`` (numpy
    arrays, as the in-memory one) and ``decide_many_decisions`` (a list of
    Decisions, one per key in order; each decision atomic, the batch not),
    plus
    ``close()`` (also on ``with`` exit). States back to "as if new"
    are reused; when a key's bucket holds no reusable slot, the state
    closest to new is evicted and counted in ``stats()["evictions"]``.
    Thread- and process-safe: each decision is one atomic update.
    """

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        backend: ShmBackend | str | os.PathLike[str],
        clock: Callable[[], int] | None = None,
        max_wait: float | None = None,
        sleep: Callable[[float], object] | None = None,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        _check_callables(clock=clock, sleep=sleep, async_sleep=async_sleep)
        self.rates, self.algorithm, self.backend, table = _open(
            limits, algorithm, backend, DEFAULT_MAX_KEYS, layout.KIND_KEYED
        )
        _start(super().__init__, table, clock, max_wait, sleep, async_sleep)

    def decide_many(
        self,
        keys: Any,
        costs: Any = None,
        now: int | None = None,
        retry_after: bool = False,
    ) -> Any:
        """`decide_many` is the in-memory KeyedLimiter.decide_many on the
        shared table: a numpy bool array (and, if ``retry_after``, a float64
        array of seconds), one verdict per key in order, from
        `decide_many_decisions`. Needs numpy (the ``numpy`` extra)."""
        numpy = import_numpy()
        decisions = self.decide_many_decisions(keys, costs, now)
        return decision_arrays(numpy, decisions, retry_after)

    def decide_many_decisions(
        self,
        keys: Sequence[Key],
        costs: Sequence[int] | int | None = None,
        now: int | None = None,
    ) -> list[Decision]:
        """`decide_many_decisions` decides ``costs[i]`` (None: 1 each; an
        int: that cost each) for ``keys[i]``, in order, as consecutive
        `decide` calls (at ``now`` if given), and returns every Decision:
        each decision atomic, the batch not. Arguments are checked as the
        in-memory `decide_many` checks them (numpy arrays accepted)."""
        numpy = sys.modules.get("numpy")  # arrays are accepted if in use
        key_list = batch_keys(numpy, keys)
        check_key_types(key_list)
        cost = one_cost(numpy, costs)
        cost_list = (
            [cost] * len(key_list)
            if cost is not None
            else batch_costs(numpy, costs, len(key_list))
        )
        return [
            self.decide(key, cost, now)
            for key, cost in zip(key_list, cost_list, strict=True)
        ]

    def __repr__(self) -> str:
        return (
            f"ShmKeyedLimiter({str(self.rates[0])!r}, algorithm={self.algorithm!r}, "
            f"backend={self.backend!r})"
        )


class ShmLimiter(SubjectForms, ShmLimiterCore):
    """`ShmLimiter` admits at most one rate for one subject, shared by every
    process on the host that uses the same backend.

    Arguments as for :class:`ShmKeyedLimiter`; a name or path as
    ``backend`` makes a one-key table. Verbs as for
    :class:`ratefuse.Limiter`: ``try_acquire(cost=1, now=None)``,
    ``decide``, ``reserve``, ``acquire``, ``acquire_async``, ``reset``,
    ``stats``, ``close``. A table holds either one ShmLimiter subject or
    ShmKeyedLimiter keys, never both. Thread- and process-safe.
    """

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        backend: ShmBackend | str | os.PathLike[str],
        clock: Callable[[], int] | None = None,
        max_wait: float | None = None,
        sleep: Callable[[float], object] | None = None,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        _check_callables(clock=clock, sleep=sleep, async_sleep=async_sleep)
        self.rates, self.algorithm, self.backend, table = _open(
            limits, algorithm, backend, 1, layout.KIND_SINGLE
        )
        _start(super().__init__, table, clock, max_wait, sleep, async_sleep)

    def __repr__(self) -> str:
        return (
            f"ShmLimiter({str(self.rates[0])!r}, algorithm={self.algorithm!r}, "
            f"backend={self.backend!r})"
        )


def _open(
    limits: RateLike,
    algorithm: str,
    backend: ShmBackend | str | os.PathLike[str],
    default_keys: int,
    kind: int,
) -> tuple[tuple[Rate, ...], str, ShmBackend, ShmTable]:
    """`_open` validates a limiter's rate and algorithm and opens (or
    creates) its table: returns (rates, algorithm, backend, table)."""
    rates, name, spec = _spec_of(limits, algorithm)
    opened = _backend_of(backend, default_keys)
    return rates, name, opened, opened.open_table(spec, kind)


def _start(
    core_init: Callable[..., None],
    table: ShmTable,
    clock: Callable[[], int] | None,
    max_wait: float | None,
    sleep: Callable[[float], object] | None,
    async_sleep: Callable[[float], Awaitable[object]] | None,
) -> None:
    """`_start` runs the engine's constructor; the table is closed if it fails."""
    try:
        core_init(table, clock, max_wait=max_wait, sleep=sleep, async_sleep=async_sleep)
    except BaseException:
        table.close()
        raise
