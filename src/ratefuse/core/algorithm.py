"""`Algorithm`: everything known about one rate-limit algorithm, in one record.

Each algorithm's record sits beside its reference twin in
:mod:`ratefuse.core.algorithms` (``<name>.py`` next to ``_<name>_py.py``);
the registry there lists them. Everything that depends on which algorithm a
limit uses (state size, whether burst means something, which backends and
caches support it) reads the record instead of testing the name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from ratefuse.core.args import shown
from ratefuse.core.spec import LimitSpec
from ratefuse.core.step_result import StepResult

Step = Callable[[LimitSpec, list[int], int, int, int, bool], StepResult]
IdleAt = Callable[[LimitSpec, list[int], int], int]
Reserve = Callable[[LimitSpec, list[int], int, int, int, int, bool], StepResult]
Refund = Callable[[LimitSpec, list[int], int, int, int, int], None]


class StepFunctions(NamedTuple):
    """`StepFunctions` is an algorithm's reference core: its four functions
    over a spec and the state words from ``base`` on. The compiled twin
    exports the same four as a C struct (ext/ratefuse/core/_step.pxd).

    ``step`` decides a cost now (consuming it only if ``commit``);
    ``idle_at`` is the first time at which the state is as if new;
    ``reserve`` takes a cost up to ``max_wait`` ns ahead; ``refund`` gives
    back what is left of a reservation.
    """

    step: Step
    idle_at: IdleAt
    reserve: Reserve
    refund: Refund


@dataclass(frozen=True, kw_only=True)
class Algorithm:
    """`Algorithm` is one algorithm's facts.

    - ``name``: its canonical name; ``aliases``: other names it answers to.
    - ``id``: its C-level id: the index of its compiled step functions and
      its code in a shared-memory table's header. Never reused.
    - ``fixed_words`` + ``words_per_unit`` * capacity: the int64 words of
      state one limit needs.
    - ``burst``: a capacity above the limit (``burst``) means something
      (the meters); the windows admit at most ``limit`` per window.
    - ``time_state``: the state is an absolute time, so it keeps its meaning
      when the rate changes; a window index does not.
    - ``deny_cache_exact``: a cached denial is exact for its retry_after
      (a denied cost stays denied until then).
    - ``max_limit``: the largest limit, when memory grows with it (None:
      only the cores' general bound).
    - ``script``: its Lua script in ratefuse/redis/lua/ (None: no Redis
      support); ``lease_script``: its quota-lease script (None: no leases).
    - ``shm_counts``: how many counts a shared-memory state packs beside
      the window index (0: the state is one time word); None: no
      shared-memory support.
    """

    name: str
    id: int
    aliases: tuple[str, ...] = ()
    fixed_words: int
    words_per_unit: int = 0
    burst: bool
    time_state: bool
    deny_cache_exact: bool
    max_limit: int | None = None
    script: str | None
    lease_script: str | None = None
    shm_counts: int | None

    def __post_init__(self) -> None:
        if self.id < 0:
            raise ValueError(f"id must be >= 0, got {self.id!r}")
        if self.fixed_words < 1 or self.words_per_unit < 0:
            raise ValueError(
                f"{self.name}: state words must be at least 1, got "
                f"fixed_words={self.fixed_words}, words_per_unit={self.words_per_unit}"
            )

    @property
    def leasable(self) -> bool:
        """`leasable` is true when quota leases keep their bound here."""
        return self.lease_script is not None

    def state_words(self, capacity: int) -> int:
        """`state_words` is how many int64 words one limit of ``capacity`` needs."""
        return self.fixed_words + self.words_per_unit * capacity

    @property
    def reference(self) -> StepFunctions:
        """`reference` is the reference twin's step functions: in the module
        ``core/algorithms/_<name>_py.py``, ``<name>_step`` and so on."""
        return _reference(self.name)


@functools.cache
def _reference(name: str) -> StepFunctions:
    # Imported here: choosing the implementation imports the compiled cores,
    # which read the registry that imports this module.
    from ratefuse.core import implementation

    module = implementation.load(f"core.algorithms._{name}", "python")
    return StepFunctions(
        *(getattr(module, f"{name}_{verb}") for verb in StepFunctions._fields)
    )


class Registry:
    """`Registry` lists the algorithm records; a record's id is its index."""

    def __init__(self, *records: Algorithm) -> None:
        for index, record in enumerate(records):
            if record.id != index:
                raise ValueError(f"{record.name} has id {record.id}, expected {index}")
        self._records = records
        self._by_name = {
            name: record
            for record in records
            for name in (record.name, *record.aliases)
        }
        if len(self._by_name) != sum(1 + len(record.aliases) for record in records):
            raise ValueError("algorithm names and aliases must be unique")

    def __iter__(self) -> Iterator[Algorithm]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def names(self) -> tuple[str, ...]:
        """`names` is every accepted name, each record's aliases after it."""
        return tuple(self._by_name)

    def by_name(self, name: str) -> Algorithm:
        """`by_name` is the record named ``name`` (or aliased so); raises
        ValueError listing the accepted names."""
        record = self._by_name.get(name) if isinstance(name, str) else None
        if record is None:
            raise ValueError(
                f"algorithm must be one of {', '.join(self._by_name)}; "
                f"got {shown(name)}"
            )
        return record

    def by_id(self, algorithm_id: int) -> Algorithm | None:
        """`by_id` is the record with ``algorithm_id``; None if there is none."""
        if 0 <= algorithm_id < len(self._records):
            return self._records[algorithm_id]
        return None

    def named(self, fact: Callable[[Algorithm], object]) -> tuple[str, ...]:
        """`named` is the canonical names of the records for which ``fact``
        holds, in id order."""
        return tuple(record.name for record in self._records if fact(record))

    def state_words(self, spec: LimitSpec) -> int:
        """`state_words` is how many int64 words of state ``spec`` needs."""
        return self.by_name(spec.algorithm).state_words(spec.capacity)
