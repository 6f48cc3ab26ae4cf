"""Deprecated alias: the benchmark scenarios moved to
:mod:`ratefuse.bench.scenarios` (the bench layer). Every name still resolves,
with a DeprecationWarning; the alias goes away in 0.3."""

from __future__ import annotations

from ratefuse.bench.moved import moved_module

__getattr__ = moved_module("ratefuse.scenarios", "ratefuse.bench.scenarios")
