"""The wait planner's deadline check (issue 17: under 100 ns), as
`ratefuse.engine.waiting.plan` makes it: the planner reads its clock, then
the check reads the deadline's ContextVar and, with a deadline set on the
same clock, subtracts the reading it already has.

Each round times the clock read alone, then with the check without a
deadline and with one (best of 5 x 200,000 each, interleaved); the check's
cost is the difference. Prints the median over the rounds and the spread.

    python benchmarks/deadline_check.py [--rounds 21]
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit

import ratefuse
from ratefuse.engine.deadline import current

CLOCK = "began = clock_ns()\n"
CHECK = CLOCK + (
    "running = current()\n"
    "if running is not None:\n"
    "    now = began if running.clock is clock_ns else None\n"
    "    left = (running.at_ns - (running.clock() if now is None else now)) / 1e9\n"
    "    if left < 0.0:\n"
    "        left = 0.0\n"
)
NAMES = {"current": current, "clock_ns": time.monotonic_ns}


def best_ns(statement: str) -> float:
    runs = timeit.repeat(statement, globals=NAMES, number=200_000, repeat=5)
    return min(runs) / 200_000 * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    rounds = parser.parse_args().rounds
    without, within = [], []
    for _ in range(rounds):
        clock = best_ns(CLOCK)
        without.append(best_ns(CHECK) - clock)
        with ratefuse.deadline(1e6):
            within.append(best_ns(CHECK) - clock)
    for name, costs in (("no deadline", without), ("deadline set", within)):
        costs.sort()
        print(
            f"check, {name:<13} median {statistics.median(costs):6.1f} ns"
            f"  (spread {costs[0]:.1f} .. {costs[-1]:.1f}, {rounds} rounds)"
        )


if __name__ == "__main__":
    main()
