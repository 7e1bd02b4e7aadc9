"""Feeding a stream to the VM in bounded chunks (the I/O side of ``load``).

The VM works on a buffer; when an opcode runs past its end the VM asks
:meth:`StreamFeeder.more` for the bytes it needs and runs the opcode again.
Reads are bounded: a declared length is only ever read as far as the file
really has bytes (so a 20-byte file that declares 8 EiB costs 20 bytes), and
never past the policy's ``max_input_bytes``.  Seekable files are read in
chunks and rewound to just after STOP; other streams are read exactly as far
as the pickle goes (whole frames at once, lines with ``readline``).
"""

from __future__ import annotations

from typing import Any

from ..errors import LimitExceeded, MalformedPickle

__all__ = ["StreamFeeder"]

CHUNK = 1 << 16
MAX_PIECE = 1 << 24


class StreamFeeder:
    """Reads one pickle's bytes from ``file`` on demand."""

    def __init__(self, file: Any, max_input: int) -> None:
        try:
            self._read = file.read
        except AttributeError:
            raise TypeError("load() needs a binary file object with a read() method") from None
        self._file = file
        self._readline = getattr(file, "readline", None)
        try:
            self.seekable = bool(file.seekable())
        except (AttributeError, OSError, ValueError):
            self.seekable = False
        self.max_input = max_input
        self.total = 0  # bytes of this pickle read so far

    def first(self) -> bytes:
        """The first bytes to run on (empty for non-seekable streams, which
        are read opcode by opcode as the VM asks)."""
        if not self.seekable:
            return b""
        return self._take(min(CHUNK, self.max_input))

    def _take(self, n: int) -> bytes:
        try:
            piece = self._read(n)
        except Exception as e:  # the file's own failure, reported as a refusal of the load
            raise MalformedPickle(f"reading the file failed: {type(e).__name__}: {e}", rule="io") from None
        if piece is None:
            piece = b""
        if not isinstance(piece, (bytes, bytearray)):
            piece = bytes(piece)
        self.total += len(piece)
        return bytes(piece)

    def _check_room(self, upto: int) -> None:
        if upto > self.max_input:
            raise LimitExceeded("max_input_bytes", upto, self.max_input,
                                message=f"the pickle needs more than {self.max_input} bytes: limit max_input_bytes")

    def more(self, data: Any, keep_from: int, need: int) -> bytes:
        """``data[keep_from:]`` followed by enough new bytes for the opcode at
        ``keep_from``: up to absolute position ``need`` of ``data``, or (``need``
        of -1) at least one more line.  Raises MalformedPickle at end of file."""
        kept = bytes(data[keep_from:])
        if need < 0:
            return kept + self._more_line()
        want = need - len(data)  # bytes still missing
        room = self.max_input - self.total
        pieces = [kept]
        got = 0
        step = CHUNK
        # Read what the file really has, up to what the policy allows: a lying
        # length costs the bytes present, never the bytes declared.
        while got < min(want, room):
            ask = min(min(want, room) - got, step)
            if self.seekable:
                ask = max(ask, min(CHUNK, self.max_input - self.total))
            piece = self._take(ask)
            if not piece:
                raise MalformedPickle("pickle data was truncated", rule="truncated")
            pieces.append(piece)
            got += len(piece)
            step = min(step * 2, MAX_PIECE)
        if got < want:
            self._check_room(self.total + want - got)
        return b"".join(pieces)

    def can_read_payload(self, have: int, size: int) -> bool:
        """Whether a payload of ``size`` bytes, of which the last buffer holds
        the first ``have``, can be read whole with :meth:`read_payload`: the
        file is seekable, really holds that many bytes from there, and
        ``max_input_bytes`` allows them.  (Else :meth:`more` reads it, and
        says why it cannot.)"""
        if not self.seekable or self.total - have + size > self.max_input:
            return False
        try:
            here = self._file.tell()
            last = self._file.seek(0, 2)
            self._file.seek(here)
        except (AttributeError, OSError, ValueError):
            return False
        return last - here + have >= size

    def read_payload(self, data: Any, start: int, size: int, mutable: bool) -> Any:
        """The ``size`` bytes from ``data[start]`` on (``data`` being the last
        buffer :meth:`more` returned), read again from the file straight into
        the ``bytes`` (``bytearray`` when ``mutable``) returned: one copy of
        the payload in memory, never two.  The file is left after it."""
        have = len(data) - start
        try:
            self._file.seek(-have, 1)
            if mutable:
                value = bytearray(size)
                with memoryview(value) as window:
                    got = 0
                    while got < size:
                        n = self._file.readinto(window[got:])
                        if not n:
                            break
                        got += n
            else:
                value = self._read(size)
                got = len(value) if value is not None else 0
        except Exception as e:  # the file's own failure, reported as a refusal of the load
            raise MalformedPickle(f"reading the file failed: {type(e).__name__}: {e}", rule="io") from None
        self.total += got - have
        if got < size:
            raise MalformedPickle("pickle data was truncated", rule="truncated")
        return value if mutable or type(value) is bytes else bytes(value)

    def _more_line(self) -> bytes:
        room = self.max_input - self.total
        if room <= 0:
            self._check_room(self.total + 1)
        if not self.seekable and self._readline is not None:
            try:
                line = self._readline(min(room, MAX_PIECE))
            except Exception as e:
                raise MalformedPickle(f"reading the file failed: {type(e).__name__}: {e}", rule="io") from None
            if not line:
                raise MalformedPickle("pickle data was truncated", rule="truncated")
            self.total += len(line)
            return bytes(line)
        piece = self._take(min(room, CHUNK) if self.seekable else 1)
        if not piece:
            raise MalformedPickle("pickle data was truncated", rule="truncated")
        return piece

    def finish(self, stop: int) -> None:
        """Leave the file just after STOP (``stop``: bytes of this pickle)."""
        extra = self.total - stop
        if extra > 0 and self.seekable:
            self._file.seek(-extra, 1)
