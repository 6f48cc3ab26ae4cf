"""The wait planner's deadline check, as plan() does it: ns each, best of 15 x 1M."""

import time
import timeit

import ratefuse
from ratefuse.engine.deadline import current

clock_ns = time.monotonic_ns
CHECK = (
    "began = clock_ns()\n"
    "running = current()\n"
    "if running is not None:\n"
    "    now = began if running.clock is clock_ns else None\n"
    "    left = (running.at_ns - (running.clock() if now is None else now)) / 1e9\n"
    "    if left < 0.0:\n"
    "        left = 0.0\n"
)
g = {"current": current, "clock_ns": clock_ns}


def best(stmt):
    return min(timeit.repeat(stmt, globals=g, number=1_000_000, repeat=15)) / 1e6 * 1e9


base = best("began = clock_ns()")
print(f"clock read alone (the planner's own)  {base:6.1f} ns")
print(f"+ check, no deadline                  {best(CHECK) - base:6.1f} ns")
with ratefuse.deadline(1e6):
    print(f"+ check, deadline set                 {best(CHECK) - base:6.1f} ns")
