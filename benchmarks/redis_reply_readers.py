"""The two reply readers (the built-in RespReader and hiredis's), on the
replies the Redis backends read, interleaved round by round.

Parsing alone: one decision's reply (five integers), and a 1,000-key
decide_many's (four msgpack blobs of 250 keys, the default chunk), fed
whole and in 1,460-byte pieces; each sample makes its reader as
CallReplies does, once per round trip. Then through a real redis-server:
1,000 sequential RedisLimiter.decide calls, and one decide_many of 1,000
new keys, with the backend reading by each reader in turn. Medians and
the ratio hiredis/builtin paired round by round (below 1: hiredis faster).

    python benchmarks/redis_reply_readers.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from checkout import use_checkout  # noqa: E402

use_checkout(tests=True)

import msgpack  # noqa: E402
import redis  # noqa: E402

import ratefuse.redis._resp as resp  # noqa: E402
from ratefuse.redis import RedisBackend, RedisLimiter  # noqa: E402
from ratefuse.redis._resp import INCOMPLETE, ReplyReader  # noqa: E402
from redis_servers import RedisServer  # noqa: E402

READERS: dict[str, Callable[[], ReplyReader]] = {
    "builtin": resp.RespReader,
    "hiredis": resp.hiredis_reader,
}
DECISION = b"*5\r\n:1\r\n:999999\r\n:0\r\n:1000000\r\n:0\r\n"
# What repeats a parse enough times for the clock.
PARSES = {"decision": 2000, "batch": 200}


def batch_reply(keys: int) -> bytes:
    """`batch_reply` is one batch call's reply for ``keys`` keys."""
    blob = msgpack.packb([1, 999999, 0, 1000000, 0] * keys)
    return b"$%d\r\n%s\r\n" % (len(blob), blob)


BATCH = batch_reply(250) * 4


def parse(make: Callable[[], ReplyReader], stream: bytes, piece: int) -> None:
    """`parse` reads every reply of ``stream`` fed ``piece`` bytes at a
    time with a new reader."""
    reader = make()
    gets = reader.gets
    for start in range(0, len(stream), piece):
        reader.feed(stream[start : start + piece])
        while gets() is not INCOMPLETE:
            pass


def parse_sample(stream: bytes, piece: int, times: int) -> Callable[..., float]:
    """`parse_sample` times ``times`` parses; ns per parse."""

    def sample(make: Callable[[], ReplyReader]) -> float:
        started = time.perf_counter_ns()
        for _ in range(times):
            parse(make, stream, piece)
        return (time.perf_counter_ns() - started) / times

    return sample


def server_samples(port: int) -> dict[str, Callable[..., float]]:
    """`server_samples` time decisions on the server at ``port`` with a
    reader: us per sequential decision and per 1,000-key batch."""
    client = redis.Redis(host="127.0.0.1", port=port)
    backend = RedisBackend(client, timeout=2.0)
    sequential = RedisLimiter("1000000/s", backend=backend, name="seq")
    fresh = RedisLimiter("1000000/s", backend=backend, name="fresh")
    counter = itertools.count()

    def with_reader(run: Callable[[], None], per: int) -> Callable[..., float]:
        def sample(make: Callable[[], ReplyReader]) -> float:
            resp.new_reader = make
            started = time.perf_counter_ns()
            run()
            return (time.perf_counter_ns() - started) / per / 1e3

        return sample

    def one_by_one() -> None:
        decide = sequential.decide
        for _ in range(1000):
            decide("user")

    def batch() -> None:
        index = next(counter)
        fresh.decide_many([f"user-{index}-{key}" for key in range(1000)])

    return {
        "seq decide (us)": with_reader(one_by_one, 1000),
        "decide_many 1,000 (us)": with_reader(batch, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    samples = {
        "decision (ns)": parse_sample(DECISION, 1 << 16, PARSES["decision"]),
        "batch 4x250 whole (ns)": parse_sample(BATCH, 1 << 16, PARSES["batch"]),
        "batch 4x250 by 1460 (ns)": parse_sample(BATCH, 1460, PARSES["batch"]),
    }
    server = RedisServer().start()
    try:
        samples.update(server_samples(server.port))
        got: dict[tuple[str, str], list[float]] = {}
        for round_index in range(rounds + 5):
            names = sorted(READERS)
            if round_index % 2:
                names.reverse()  # neither reader always goes first
            for shape, sample in samples.items():
                for name in names:
                    gc.disable()
                    value = sample(READERS[name])
                    gc.enable()
                    if round_index >= 5:  # warm-up rounds
                        got.setdefault((shape, name), []).append(value)
    finally:
        server.stop()
    print(f"{rounds} interleaved rounds; median (p25-p75); hiredis/builtin per round")
    for shape in samples:
        cells = []
        for name in sorted(READERS):
            p25, median, p75 = statistics.quantiles(got[shape, name], n=4)
            cells.append(f"{name} {median:9.1f} ({p25:.1f}-{p75:.1f})")
        ratio = statistics.median(
            h / b
            for h, b in zip(got[shape, "hiredis"], got[shape, "builtin"], strict=True)
        )
        print(f"{shape:<26}" + "  ".join(cells) + f"  ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
