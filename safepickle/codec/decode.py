"""The decoder: bytes to ``(offset, opcode, argument)`` without executing anything.

It reads arguments with the same readers as the VM and enforces the same
framing rule (PEP 3154: no opcode straddles a frame end), so ``scan`` and
``disasm`` see exactly the opcodes that a load would execute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from ..errors import MalformedPickle
from .opcodes import BY_CODE, NAMES, Opcode
from .readers import BadArgument, Truncated

__all__ = ["Op", "decode", "as_buffer"]


class Op(NamedTuple):
    """One decoded opcode: where it starts, what it is, its argument, where it ends."""

    offset: int
    opcode: Opcode
    arg: Any
    end: int


def as_buffer(data: Any) -> Any:
    """``data`` as something indexable byte by byte: bytes stay bytes, other
    buffers become a flat unsigned-byte memoryview (no copy)."""
    if type(data) is bytes:
        return data
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def decode(data: Any, start: int = 0) -> Iterator[Op]:
    """Yield every opcode from ``start`` up to and including STOP.

    Raises :class:`MalformedPickle` (with offset and opcode) on an unknown
    opcode, a truncated or ungrammatical argument, a frame violation, or
    data that ends before STOP.  Payload arguments are returned as values
    (bytes, str, int...), exactly as the readers produce them.
    """
    buf = as_buffer(data)
    end = len(buf)
    pos = start
    frame_end = -1
    while True:
        if frame_end >= 0:
            if pos == frame_end:
                frame_end = -1
        if pos >= end:
            raise MalformedPickle("pickle data was truncated before STOP", offset=pos, rule="truncated")
        code = buf[pos]
        op = BY_CODE.get(code)
        if op is None:
            raise MalformedPickle(f"invalid load key {code:#04x}", offset=pos, opcode=NAMES[code],
                                  rule="unknown-opcode")
        arg = None
        stop = pos + 1
        if op.arg is not None:
            try:
                arg, stop = op.arg.read(buf, pos + 1, end)
            except Truncated:
                raise MalformedPickle("pickle data was truncated", offset=pos, opcode=op.name,
                                      rule="truncated") from None
            except BadArgument as e:
                raise MalformedPickle(str(e), offset=pos, opcode=op.name, rule="bad-argument") from None
        if frame_end >= 0 and stop > frame_end:
            raise MalformedPickle("opcode straddles the end of its frame", offset=pos, opcode=op.name,
                                  rule="frame-straddle")
        if code == 0x95:  # FRAME
            if frame_end >= 0:
                raise MalformedPickle("a new frame begins before the end of the current frame",
                                      offset=pos, opcode=op.name, rule="frame-nested")
            if stop + arg > end:
                raise MalformedPickle(f"frame of {arg} bytes runs past the end of the data",
                                      offset=pos, opcode=op.name, rule="frame-truncated")
            frame_end = stop + arg
        yield Op(pos, op, arg, stop)
        if code == 0x2E:  # STOP
            return
        pos = stop
