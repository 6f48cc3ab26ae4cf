"""Selects the batch key maker: compiled unless disabled (see
:mod:`ratefuse.core.implementation`). Not among its CORE_STEMS, which it
imports to choose: importing this core imports ratefuse.redis, which
needs the choice made; it is built with the others."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.redis._keys_py import KeyMaker
else:
    from ratefuse.core.implementation import load

    KeyMaker = load("redis._keys").KeyMaker

__all__ = ["KeyMaker"]
