"""Selects `Decision`: compiled unless disabled (see :mod:`.implementation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.core._decision_py import Decision
else:
    from ratefuse.core.implementation import load

    Decision = load("core._decision").Decision

__all__ = ["Decision"]
