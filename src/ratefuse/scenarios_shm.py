"""Deprecated alias: the benchmark scenarios moved to
:mod:`ratefuse.bench.scenarios_shm` (the bench layer). Every name still resolves,
with a DeprecationWarning; the alias goes away in 0.3."""

from __future__ import annotations

from ratefuse.bench.moved import moved_module

__getattr__ = moved_module("ratefuse.scenarios_shm", "ratefuse.bench.scenarios_shm")

if __name__ == "__main__":  # pragma: no cover - the old command line
    __getattr__("main")()
