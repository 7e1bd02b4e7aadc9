"""Bounded request bodies: a sans-IO buffer and two thin drivers.

:class:`BodyBuffer` owns the rules and does no I/O: it checks a declared
``Content-Length`` against the limit before a byte is read, takes chunks with
:meth:`BodyBuffer.feed`, refuses the first chunk that would carry it past the
limit (that chunk is never stored, so the buffer never holds more than the
limit), and checks the total against the declared length at
:meth:`BodyBuffer.finish`.  :meth:`BodyBuffer.fill` (a binary file object, e.g.
WSGI's ``wsgi.input``) and :meth:`BodyBuffer.afill` (an async iterable of
bytes, e.g. Starlette's ``request.stream()``) drive it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable
from typing import BinaryIO

from ..errors import LimitExceeded
from .errors import BadContentLength, BodyTimeout, IncompleteBody

__all__ = ["DEFAULT_CHUNK_SIZE", "BodyBuffer", "parse_content_length"]

DEFAULT_CHUNK_SIZE = 64 * 1024

# Longer than any length a limit can allow; spares int() a huge digit string.
_MAX_LENGTH_DIGITS = 19


def parse_content_length(value: str | bytes | int | None) -> int | None:
    """The declared body length, or None when the header is absent.

    RFC 9110 allows only ``1*DIGIT``; signs, spaces inside, lists ("5, 5") and
    anything else are refused with :class:`BadContentLength`.  A number too
    long to be a real length is returned as-is and left to the size limit.
    """
    if value is None:
        return None
    if isinstance(value, int):
        if value < 0:
            raise BadContentLength("Content-Length is negative")
        return value
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip(" \t")
    if not text or not text.isascii() or not text.isdigit():
        raise BadContentLength("Content-Length is not a decimal number")
    if len(text) > _MAX_LENGTH_DIGITS:
        # Surely above any limit; keep the magnitude without parsing it all.
        return 10**_MAX_LENGTH_DIGITS
    return int(text)


class BodyBuffer:
    """Collects one request body up to ``max_bytes``.

    Raises :class:`~safepickle.LimitExceeded` (limit ``max_input_bytes``) at
    construction when the declared length is above ``max_bytes``, and from
    :meth:`feed` as soon as the received bytes would pass it.
    """

    __slots__ = ("_data", "complete", "declared", "max_bytes")

    def __init__(self, max_bytes: int, content_length: str | bytes | int | None = None) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._data = bytearray()
        self.complete = False
        self.declared = parse_content_length(content_length)
        if self.declared is not None and self.declared > max_bytes:
            raise LimitExceeded("max_input_bytes", self.declared, max_bytes)

    @property
    def size(self) -> int:
        """Bytes received so far."""
        return len(self._data)

    @property
    def data(self) -> bytearray:
        """The bytes received so far (the buffer itself, not a copy)."""
        return self._data

    def sha256(self) -> str:
        """Hex SHA-256 of the bytes received so far (for refusal logs)."""
        return hashlib.sha256(self._data).hexdigest()

    def remaining(self) -> int:
        """How many more bytes a driver may ask its source for: up to the
        declared length, else one past the limit so an overrun shows."""
        if self.declared is not None:
            return self.declared - len(self._data)
        return self.max_bytes + 1 - len(self._data)

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append one chunk, or refuse it if it would pass a bound."""
        if self.complete:
            raise RuntimeError("feed() after finish()")
        total = len(self._data) + len(chunk)
        if total > self.max_bytes:
            raise LimitExceeded("max_input_bytes", total, self.max_bytes)
        if self.declared is not None and total > self.declared:
            raise BadContentLength("request body is longer than its Content-Length")
        self._data += chunk

    def finish(self) -> bytearray:
        """Mark the body complete and return it; refuses a short body."""
        if self.declared is not None and len(self._data) < self.declared:
            raise IncompleteBody(len(self._data), self.declared)
        self.complete = True
        return self._data

    def fill(self, fileobj: BinaryIO, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytearray:
        """Read the body from a blocking binary file object and finish.

        Never asks for more than the declared length (a WSGI input stream
        may block past it) nor, without one, more than one byte past the limit.
        """
        while True:
            want = min(chunk_size, self.remaining())
            if want <= 0:
                break
            chunk = fileobj.read(want)
            if not chunk:
                break
            self.feed(chunk)
        return self.finish()

    async def afill(self, chunks: AsyncIterable[bytes], timeout: float | None = None) -> bytearray:
        """Read the body from an async iterable of chunks and finish.

        The source decides the chunk size; each chunk is checked before it is
        stored, and iteration stops at the first refusal.  With ``timeout``
        (seconds for the whole body) a body still incomplete by then raises
        :class:`BodyTimeout`.
        """
        try:
            async with asyncio.timeout(timeout):
                async for chunk in chunks:
                    if chunk:
                        self.feed(chunk)
        except TimeoutError:
            raise BodyTimeout(self.size, timeout or 0.0) from None
        finally:
            # Stop the source at once instead of leaving it to the GC.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        return self.finish()
