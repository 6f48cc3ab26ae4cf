"""A process of a fleet following a config source, driven over its pipes.

    python tests/config_workers.py redis|etcd URL KEY MEMBER ACK_TTL

It builds an empty Registry on a clock that never moves (so counts are
exact), follows the source, and answers one JSON line per command line on
stdin:

- ``{"op": "wait", "version": V, "timeout": T}``: the version in force once
  it is >= V (null after T seconds);
- ``{"op": "take", "limiter": NAME, "count": N}``: N try_acquire verdicts
  (key "k" for a keyed limiter);
- ``{"op": "stats"}``: the follower's stats;
- ``{"op": "follow", "versions": N}``: then, for each of the next N newer
  versions, a line ``{"version", "at", "limit"}`` with the monotonic time
  (comparable across processes on one Linux host) at which the limiter
  "api" first decided with it and the limit it decided with.

EOF on stdin closes the follower and exits.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

# ratefuse as the test run imports it (installed, or PYTHONPATH=src).
from ratefuse.config import (
    ConfigFollower,
    EtcdConfigSource,
    RedisConfigSource,
    Registry,
)


def answer(reply: Any) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def take(registry: Registry, name: str, count: int) -> list[bool]:
    limiter: Any = registry.limiter(name)
    if registry.config.limiters[name].keyed:
        return [bool(limiter.try_acquire("k")) for _ in range(count)]
    return [bool(limiter.try_acquire()) for _ in range(count)]


def follow(follower: ConfigFollower, versions: int) -> None:
    seen = follower.version or 0
    for _ in range(versions):
        version = follower.wait_for_version(seen + 1, timeout=60.0)
        if version is None:
            answer({"version": None, "at": time.monotonic(), "limit": None})
            return
        decision = follower.registry.limiter("api").decide(0)  # type: ignore[call-arg]
        answer({"version": version, "at": time.monotonic(), "limit": decision.limit})
        seen = version


def main() -> int:
    kind, url, key, member, ack_ttl = sys.argv[1:6]
    source_class = RedisConfigSource if kind == "redis" else EtcdConfigSource
    source = source_class(
        url, key=key, member=member, ack_ttl=float(ack_ttl), retry_interval=0.1
    )
    registry = Registry(clock=lambda: 0)
    with ConfigFollower(registry, source) as follower:
        answer({"ready": True})
        for line in sys.stdin:
            command = json.loads(line)
            op = command["op"]
            if op == "wait":
                answer(
                    {
                        "version": follower.wait_for_version(
                            command["version"], command["timeout"]
                        )
                    }
                )
            elif op == "take":
                answer(
                    {"allowed": take(registry, command["limiter"], command["count"])}
                )
            elif op == "stats":
                answer(dataclasses.asdict(follower.stats()))
            elif op == "follow":
                follow(follower, command["versions"])
            else:
                answer({"error": f"unknown op {op!r}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
