"""What the batch path (``decide_many``) of the keyed limiters shares: numpy,
the checks of its arguments, so that both twins refuse the same batches
with the same errors, and its arrays read from Decisions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ratefuse.core.args import check_cost, shown

if TYPE_CHECKING:
    # Only a type here: the compiled engines import this module while the
    # implementation selector that Decision comes from is loading them.
    from ratefuse.core.decision import Decision


def import_numpy() -> Any:
    """`import_numpy` imports numpy, the ``numpy`` extra that decide_many
    needs, or raises ImportError saying how to install it."""
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - exercised without numpy
        raise ImportError(
            "decide_many needs numpy: pip install 'ratefuse[numpy]'"
        ) from exc
    return numpy


def _arrays(numpy: Any) -> Any:
    # numpy's array type, or none without numpy (the shared-memory batch
    # does not need it).
    return () if numpy is None else (numpy.ndarray,)


def batch_keys(numpy: Any, keys: Any) -> list[Any]:
    """`batch_keys` is ``keys`` as a list, or TypeError naming ``keys`` when
    it is not a sequence of keys (a str or bytes is one key, not a batch).
    ``numpy`` may be None."""
    arrays = _arrays(numpy)
    if isinstance(keys, arrays) and keys.ndim >= 1:
        listed: list[Any] = keys.tolist()
        return listed
    if isinstance(keys, (str, bytes, bytearray, memoryview, *arrays)) or (
        not isinstance(keys, Iterable)
    ):
        raise TypeError(
            f"keys must be a sequence of keys or a numpy int64 array, got {shown(keys)}"
        )
    return list(keys)


def check_key_types(keys: list[Any]) -> None:
    """`check_key_types` raises TypeError, as a fingerprint would, unless
    every key is a str, bytes or int: for a batch decided key by key, so
    that a bad key decides nothing."""
    for key in keys:
        if not isinstance(key, (str, bytes, int)):
            raise TypeError(f"key must be str, bytes or int, got {type(key).__name__}")


def one_cost(numpy: Any, costs: Any) -> int | None:
    """`one_cost` is the one validated cost of every key when ``costs`` is
    one (None: 1; an int, a numpy integer or a 0-d array), else None.
    ``numpy`` may be None."""
    if costs is None:
        return 1
    if isinstance(costs, _arrays(numpy)) and costs.ndim == 0:
        costs = costs.item()
    if isinstance(costs, int) or (
        numpy is not None and isinstance(costs, numpy.integer)
    ):
        return check_cost(costs)
    return None


def batch_costs(numpy: Any, costs: Any, count: int) -> list[int]:
    """`batch_costs` is one validated cost per key from a sequence of
    ``count`` costs; ValueError naming ``costs`` for anything else (a float,
    a str, a sequence of another length). ``numpy`` may be None."""
    if isinstance(costs, (str, bytes, bytearray, memoryview)) or not isinstance(
        costs, Iterable
    ):
        raise ValueError(
            "costs must be None, an int, or one int per key, got " + shown(costs)
        )
    listed = costs.tolist() if isinstance(costs, _arrays(numpy)) else list(costs)
    if len(listed) != count:
        raise ValueError(
            f"costs must have one cost per key: got {len(listed)} for {count} keys"
        )
    return [check_cost(cost) for cost in listed]


def decision_arrays(
    numpy: Any, decisions: Sequence[Decision], retry_after: bool
) -> Any:
    """`decision_arrays` is the in-memory decide_many's return read from
    ``decisions``: a bool array, and with ``retry_after`` a float64 array
    of seconds beside it."""
    count = len(decisions)
    allowed = numpy.fromiter(
        (decision.allowed for decision in decisions), numpy.bool_, count
    )
    if not retry_after:
        return allowed
    waits = numpy.fromiter(
        (decision.retry_after for decision in decisions), numpy.float64, count
    )
    return allowed, waits
