"""BodyBuffer and its drivers: size limits, declared lengths, short bodies."""

from __future__ import annotations

import asyncio
import io

import pytest

from safepickle import LimitExceeded, SafePickleError
from safepickle.web import BadContentLength, BodyBuffer, BodyTimeout, IncompleteBody, parse_content_length


class CountingReader(io.RawIOBase):
    """A blocking stream that records every read size and never returns
    more than asked (like a socket-backed WSGI input)."""

    def __init__(self, data: bytes, chunk: int = 1 << 30) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._chunk = chunk
        self.requests: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.requests.append(size)
        assert size >= 0, "driver asked for an unbounded read"
        size = min(size, self._chunk)
        out = bytes(self._data[self._pos : self._pos + size])
        self._pos += len(out)
        return out

    @property
    def consumed(self) -> int:
        return self._pos


async def agen(chunks, log=None):
    for chunk in chunks:
        if log is not None:
            log.append(len(chunk))
        yield chunk


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("0", 0), ("123", 123), (b"42", 42), (" 7\t", 7), (5, 5), ("9" * 40, 10**19)],
)
def test_parse_content_length_accepts(value, expected):
    assert parse_content_length(value) == expected


@pytest.mark.parametrize("value", ["", "-1", "+5", "5, 5", "1e3", "0x10", "١٢", "5 5", -1, "abc"])
def test_parse_content_length_refuses(value):
    with pytest.raises(BadContentLength) as info:
        parse_content_length(value)
    assert info.value.rule == "http.content_length"
    assert isinstance(info.value, SafePickleError)


def test_declared_length_above_limit_refused_before_any_read():
    with pytest.raises(LimitExceeded) as info:
        BodyBuffer(100, "101")
    exc = info.value
    assert (exc.limit, exc.value, exc.maximum) == ("max_input_bytes", 101, 100)


def test_huge_declared_length_refused():
    with pytest.raises(LimitExceeded):
        BodyBuffer(1 << 30, "9" * 5000)


def test_exact_limit_accepted_and_one_more_refused():
    buf = BodyBuffer(10)
    buf.feed(b"x" * 6)
    buf.feed(b"y" * 4)
    assert buf.finish() == b"x" * 6 + b"y" * 4
    buf = BodyBuffer(10)
    buf.feed(b"x" * 6)
    with pytest.raises(LimitExceeded) as info:
        buf.feed(b"y" * 5)
    assert info.value.value == 11
    # The refused chunk was not stored: the buffer never passes the limit.
    assert buf.size == 6


def test_feed_more_than_declared_refused():
    buf = BodyBuffer(100, 5)
    buf.feed(b"abc")
    with pytest.raises(BadContentLength):
        buf.feed(b"def")


def test_short_body_refused_at_finish():
    buf = BodyBuffer(100, 10)
    buf.feed(b"abc")
    with pytest.raises(IncompleteBody) as info:
        buf.finish()
    assert (info.value.received, info.value.declared) == (3, 10)
    assert not buf.complete


def test_sha256_of_received_prefix():
    import hashlib

    buf = BodyBuffer(100)
    buf.feed(b"hello ")
    buf.feed(b"world")
    assert buf.sha256() == hashlib.sha256(b"hello world").hexdigest()


def test_fill_never_reads_past_declared_length():
    reader = CountingReader(b"A" * 50 + b"NEXT-REQUEST", chunk=7)
    data = BodyBuffer(1000, 50).fill(reader, chunk_size=16)
    assert data == b"A" * 50
    assert reader.consumed == 50
    assert all(0 < n <= 16 for n in reader.requests)


def test_fill_without_length_reads_at_most_one_past_limit():
    reader = CountingReader(b"B" * 10_000)
    with pytest.raises(LimitExceeded):
        BodyBuffer(1000).fill(reader, chunk_size=300)
    assert reader.consumed <= 1001


def test_fill_without_length_to_eof():
    reader = CountingReader(b"C" * 999, chunk=100)
    assert BodyBuffer(1000).fill(reader) == b"C" * 999


def test_fill_short_stream_is_incomplete():
    with pytest.raises(IncompleteBody):
        BodyBuffer(1000, 500).fill(CountingReader(b"D" * 100))


def test_afill_stops_at_first_chunk_past_limit():
    seen: list[int] = []
    chunks = [b"x" * 400] * 10

    async def main():
        buf = BodyBuffer(1000)
        with pytest.raises(LimitExceeded):
            await buf.afill(agen(chunks, seen))
        return buf

    buf = asyncio.run(main())
    assert buf.size == 800
    assert seen == [400, 400, 400]  # the generator was not drained


def test_afill_declared_length():
    async def main():
        ok = await BodyBuffer(100, 6).afill(agen([b"abc", b"", b"def"]))
        assert ok == b"abcdef"
        with pytest.raises(IncompleteBody):
            await BodyBuffer(100, 7).afill(agen([b"abc", b"def"]))
        with pytest.raises(BadContentLength):
            await BodyBuffer(100, 5).afill(agen([b"abc", b"def"]))

    asyncio.run(main())


def test_afill_closes_the_source_on_refusal():
    closed = []

    async def source():
        try:
            while True:
                yield b"z" * 100
        finally:
            closed.append(True)

    async def main():
        with pytest.raises(LimitExceeded):
            await BodyBuffer(250).afill(source())

    asyncio.run(main())
    assert closed == [True]


def test_afill_timeout_on_a_stalled_body():
    async def stalled():
        yield b"a" * 10
        await asyncio.Event().wait()  # the client stops sending
        yield b"never"

    async def main():
        buf = BodyBuffer(100, 50)
        with pytest.raises(BodyTimeout) as info:
            await buf.afill(stalled(), timeout=0.05)
        return buf, info.value

    buf, exc = asyncio.run(main())
    assert (exc.received, exc.timeout, exc.status, exc.rule) == (10, 0.05, 408, "http.body_timeout")
    assert buf.size == 10 and not buf.complete


def test_afill_timeout_not_hit_by_a_complete_body():
    async def main():
        return await BodyBuffer(100).afill(agen([b"abc"]), timeout=30)

    assert asyncio.run(main()) == b"abc"
