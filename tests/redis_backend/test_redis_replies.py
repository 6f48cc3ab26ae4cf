"""Both reply readers (issue 15): the built-in RespReader and hiredis's,
each fed the same RESP2 bytes whole and split anywhere, then each reading
a real redis-server's replies under the backends (error replies, nested
arrays, nil, big batches, replies read in many pieces). hiredis is a test
dependency: its tests fail, never skip, when it is missing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import msgpack
import pytest
import redis
import redis.asyncio
from redis.exceptions import ResponseError

import ratefuse.redis._resp as resp
from ratefuse.rates import build_specs, parse
from ratefuse.redis import AsyncRedisBackend, RedisBackend, RedisLimiter
from ratefuse.redis._resp import (
    INCOMPLETE,
    CallReplies,
    ProtocolError,
    ReplyReader,
    RespReader,
    choose_reader,
    hiredis_reader,
)

READERS: dict[str, Callable[[], ReplyReader]] = {
    "builtin": RespReader,
    "hiredis": hiredis_reader,
}

# Bytes as Redis sends them, and what each reader must make of them.
SHAPES: list[tuple[str, bytes, list[object]]] = [
    ("decision", b"*5\r\n:1\r\n:9\r\n:-1\r\n:1000\r\n:0\r\n", [[1, 9, -1, 1000, 0]]),
    ("integers", b":0\r\n:-42\r\n:9007199254740993\r\n", [0, -42, 2**53 + 1]),
    ("strings", b"+OK\r\n$0\r\n\r\n$4\r\na\r\nb\r\n", [b"OK", b"", b"a\r\nb"]),
    ("nil", b"$-1\r\n*-1\r\n*0\r\n", [None, None, []]),
    (
        "nested",
        b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n*2\r\n$-1\r\n:2\r\n-ERR inner\r\n",
        [[1, [b"a", [None, 2]], ResponseError("ERR inner")]],
    ),
    (
        "errors",
        b"-NOSCRIPT No matching script.\r\n-MOVED 3999 127.0.0.1:6381\r\n",
        [
            ResponseError("NOSCRIPT No matching script."),
            ResponseError("MOVED 3999 127.0.0.1:6381"),
        ],
    ),
]


def big_batch(keys: int) -> bytes:
    """`big_batch` is a batch call's reply: a msgpack blob of 5 integers
    per key, as one bulk string."""
    blob = msgpack.packb([1, 10**6 - 1, 0, 10**6, 0] * keys)
    return b"$%d\r\n%s\r\n" % (len(blob), blob)


def comparable(reply: object) -> object:
    # Exceptions compare by class and text.
    if isinstance(reply, BaseException):
        return (type(reply), str(reply))
    if isinstance(reply, list):
        return [comparable(item) for item in reply]
    return reply


def read_all(reader: ReplyReader, stream: bytes, piece: int) -> list[object]:
    """`read_all` feeds ``stream`` ``piece`` bytes at a time and collects
    every reply, asking after each piece."""
    replies = []
    for start in range(0, len(stream), piece):
        reader.feed(stream[start : start + piece])
        reply = reader.gets()
        while reply is not INCOMPLETE:
            replies.append(reply)
            reply = reader.gets()
    return replies


@pytest.fixture(params=sorted(READERS))
def make_reader(request: pytest.FixtureRequest) -> Callable[[], ReplyReader]:
    """`make_reader` makes one of the two readers."""
    return READERS[request.param]


@pytest.mark.parametrize("shape", SHAPES, ids=[name for name, _, _ in SHAPES])
@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1 << 16])
def test_readers_parse_every_shape_whole_and_in_pieces(
    make_reader: Callable[[], ReplyReader],
    shape: tuple[str, bytes, list[object]],
    piece: int,
) -> None:
    _, stream, expected = shape
    reader = make_reader()
    assert comparable(read_all(reader, stream, piece)) == comparable(expected)
    assert not reader.has_data()
    for reply in read_all(make_reader(), stream, piece):
        if isinstance(reply, BaseException):
            # Returned, not raised, and the class the exchange recognises.
            assert type(reply) is ResponseError


@pytest.mark.parametrize("piece", [1460, 4096, 1 << 16])
def test_readers_parse_big_batches_read_in_pieces(
    make_reader: Callable[[], ReplyReader], piece: int
) -> None:
    # Four calls of 250 keys and one of 1,000, in one stream.
    stream = big_batch(250) * 4 + big_batch(1000)
    replies = read_all(make_reader(), stream, piece)
    assert [len(msgpack.unpackb(reply)) for reply in replies] == [1250] * 4 + [5000]


def test_readers_hold_back_an_incomplete_reply(
    make_reader: Callable[[], ReplyReader],
) -> None:
    reader = make_reader()
    reader.feed(b":1\r\n$5\r\nab")
    assert reader.gets() == 1
    assert reader.gets() is INCOMPLETE
    assert reader.has_data()
    reader.feed(b"cde\r\n")
    assert reader.gets() == b"abcde"
    assert reader.gets() is INCOMPLETE
    assert not reader.has_data()


def test_readers_refuse_bytes_that_are_not_resp2(
    make_reader: Callable[[], ReplyReader],
) -> None:
    reader = make_reader()
    reader.feed(b"?what\r\n")
    with pytest.raises(ProtocolError):
        reader.gets()


def test_call_replies_reads_with_the_reader_given(
    make_reader: Callable[[], ReplyReader],
) -> None:
    # Call 0 behind SCRIPT LOAD (2 replies), call 1 alone; one byte at a time.
    replies = CallReplies([2, 1], make_reader())
    got = []
    for byte in b"+OK\r\n*2\r\n:7\r\n$-1\r\n-ERR x\r\n":
        replies.feed(bytes([byte]))
        reply = replies.get()
        if reply is not INCOMPLETE:
            got.append(comparable(reply))
    assert got == [[7, None], (ResponseError, "ERR x")]
    assert replies.in_step
    out_of_step = CallReplies([1], make_reader())
    out_of_step.feed(b":1\r\n:2\r\n")
    assert out_of_step.get() == 1
    assert not out_of_step.in_step


@pytest.mark.parametrize(
    ("value", "chosen"),
    [("", hiredis_reader), ("0", hiredis_reader), ("1", RespReader)],
)
def test_hiredis_is_chosen_unless_refused(
    value: str, chosen: Callable[[], ReplyReader]
) -> None:
    assert choose_reader(value) is chosen


def test_hiredis_is_the_default_reader_when_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The suite runs without RATEFUSE_NO_HIREDIS unless asked otherwise.
    monkeypatch.delenv(resp.NO_HIREDIS_ENV, raising=False)
    assert choose_reader("") is hiredis_reader
    assert type(hiredis_reader()).__module__.startswith("hiredis")


@pytest.fixture
def reader_in_use(
    make_reader: Callable[[], ReplyReader], monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[ReplyReader]]:
    """`reader_in_use` makes the backends read with ``make_reader``'s
    reader; the list holds every reader they made."""
    made: list[ReplyReader] = []

    def counted() -> ReplyReader:
        reader = make_reader()
        made.append(reader)
        return reader

    monkeypatch.setattr(resp, "new_reader", counted)
    yield made
    assert made, "the backend never read with the reader under test"
    assert {type(reader) for reader in made} == {type(make_reader())}


def test_round_trips_read_with_either_reader(
    redis_node, client, fresh_name, reader_in_use: list[ReplyReader]
) -> None:
    backend = RedisBackend(client, timeout=5.0)
    try:
        limiter = RedisLimiter("5/h", backend=backend, name=fresh_name())
        decisions = [limiter.decide("one") for _ in range(6)]
        assert [decision.allowed for decision in decisions] == [True] * 5 + [False]
        # A big batch: 5,000 new keys, 20 calls of 250 read in many pieces.
        keys = [f"user-{index}" for index in range(5000)]
        assert limiter.decide_many(keys).all()
        assert not limiter.decide_many([*keys, "one"])[-1]
        transport = backend._transport
        # Nested arrays, nil and an error reply inside an array.
        nested = transport.command(
            None,
            "EVAL",
            "return {1, {'a', {false, 2}}, redis.error_reply('ERR inner')}",
            0,
        )
        assert comparable(nested) == [
            1,
            [b"a", [None, 2]],
            (ResponseError, "ERR inner"),
        ]
        # An error reply on its own: returned, not raised.
        error = transport.command(None, "EVAL", "return redis.error_reply('E x')", 0)
        assert comparable(error) == (ResponseError, "E x")
        # A 1 MB bulk string arrives in many recv calls.
        client.set(b"big", b"x" * (1 << 20))
        assert transport.command(None, "GET", b"big") == b"x" * (1 << 20)
        # NOSCRIPT (EVALSHA) or "Function not found" (FCALL), then the load
        # ahead of the resent call: every reply read.
        before = backend.stats()
        client.script_flush()
        client.function_flush()
        assert limiter.decide("two").allowed  # a new key: no cached denial
        after = backend.stats()
        assert (after.noscript_reloads + after.function_loads) - (
            before.noscript_reloads + before.function_loads
        ) == 1
        assert limiter.stats().fallbacks == 0
    finally:
        backend.close()


def test_async_round_trips_read_with_either_reader(
    redis_node, fresh_name, reader_in_use: list[ReplyReader]
) -> None:
    async def run() -> list[bool]:
        client = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        async with AsyncRedisBackend(client, timeout=5.0) as backend:
            store = backend.bind(list(build_specs(parse("3/h"), "gcra")), fresh_name())
            single = [(await store.decide_us("k")).allowed for _ in range(4)]
            many = await store.decide_many_us([f"k{index}" for index in range(2000)])
        await client.aclose()
        return [*single, all(not isinstance(reply, Exception) for reply in many)]

    assert asyncio.run(run()) == [True, True, True, False, True]
