"""The scenarios ``ratefuse bench`` runs: the benchmarks' own, gathered."""

from __future__ import annotations

import importlib

from ratefuse.bench.scenarios import Scenario, limiter_scenarios


def local_scenarios() -> list[Scenario]:
    """`local_scenarios` is the embedded engine: every algorithm's
    try_acquire (decide and acquire for gcra), keyed limiters and
    decide_many, and the breaker, compiled and reference."""
    scenarios = [
        scenario
        for scenario in limiter_scenarios()
        if scenario.group in ("floor", "try_acquire") or scenario.name == "gcra"
    ]
    for module_name, function in (
        ("ratefuse.bench.scenarios_keyed", "keyed_scenarios"),
        ("ratefuse.bench.scenarios_breaker", "breaker_scenarios"),
        ("ratefuse.bench.scenarios_adaptive", "adaptive_scenarios"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a part not built into this version
            continue
        scenarios += getattr(module, function)()
    return scenarios
