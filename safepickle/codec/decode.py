"""The decoder: bytes to ``(offset, opcode, argument)`` without executing anything.

It reads arguments with the same readers as the VM and enforces the same
framing rule (PEP 3154: no opcode straddles a frame end), so ``scan`` and
``disasm`` see exactly the opcodes that a load would execute.

Two entry points share one loop (:func:`iter_ops`):

* :func:`decode` yields :class:`Op` records (the opcode's table entry, the
  argument as a value): the convenient form, for disasm, fuzzing and tests;
* :func:`iter_ops` yields plain ``(offset, code, arg, end)`` tuples, and with
  ``lazy_bytes=True`` gives the *length* of a bytes payload instead of a copy
  of it: the form ``scan`` walks, where a 1 GB tensor must cost nothing.

The loop reads the arguments of the frequent fixed-width and length-prefixed
kinds in place (the layout each :class:`~safepickle.codec.readers.ArgKind`
documents), and hands every other kind, and every argument whose fast reading
fails (truncated, not UTF-8...), to the shared reader of its kind, so the
error and its message are always the shared reader's.  The tests prove, kind
by kind, that the in-place reading and the shared reader agree on values,
positions and refusals.
"""

from __future__ import annotations

from collections.abc import Iterator
from struct import Struct
from typing import Any, NamedTuple

from ..errors import MalformedPickle
from .opcodes import BY_CODE, NAMES, OPCODES, Opcode
from .readers import BadArgument, Truncated

__all__ = ["Op", "decode", "iter_ops", "read_argument", "as_buffer", "INLINE_KINDS", "LAZY_KINDS"]


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


# -- how the loop reads each opcode's argument ---------------------------------------

# Kinds of reading, one per opcode byte (index = the byte).
# (_TEXT and _BYTES adjacent: the loop tells them from the others with one comparison.)
_NOARG, _U1, _FIXED, _TEXT, _BYTES, _SHARED, _UNKNOWN = range(7)

# Fixed-width kinds read in place: struct format (the layout the kind documents).
_FIXED_FORMATS = {"uint2": "<H", "int4": "<i", "uint4": "<I", "uint8": "<Q", "float8": ">d"}
# Length-prefixed kinds read in place: (prefix format or None for one byte, what the payload becomes).
_TEXT_PREFIX = {"unicodestring1": None, "unicodestring4": "<I"}
_BYTES_PREFIX = {"bytes1": (None, bytes), "bytes4": ("<I", bytes), "bytes8": ("<Q", bytes),
                 "bytearray8": ("<Q", bytearray)}

#: Argument kinds the loop reads in place rather than through the shared reader.
INLINE_KINDS = frozenset({"uint1", *_FIXED_FORMATS, *_TEXT_PREFIX, *_BYTES_PREFIX})
#: Kinds whose argument is the payload's length under ``lazy_bytes=True``.
LAZY_KINDS = frozenset(_BYTES_PREFIX)


def _tables() -> tuple[tuple, tuple, tuple, tuple, tuple]:
    kind = [_UNKNOWN] * 256
    unpack: list[Any] = [None] * 256  # _FIXED: unpack_from; _TEXT/_BYTES: the prefix's unpack_from or None
    width = [0] * 256  # _FIXED: argument width; _TEXT/_BYTES: prefix width
    make: list[Any] = [None] * 256  # _BYTES: bytes or bytearray
    read: list[Any] = [None] * 256  # the shared reader (every opcode with an argument)
    for op in OPCODES:
        c = op.code
        if op.arg is None:
            kind[c] = _NOARG
            continue
        name = op.arg.name
        read[c] = op.arg.read
        if name == "uint1":
            kind[c] = _U1
        elif name in _FIXED_FORMATS:
            s = Struct(_FIXED_FORMATS[name])
            kind[c], unpack[c], width[c] = _FIXED, s.unpack_from, s.size
        elif name in _TEXT_PREFIX or name in _BYTES_PREFIX:
            fmt, maker = (_TEXT_PREFIX[name], None) if name in _TEXT_PREFIX else _BYTES_PREFIX[name]
            kind[c] = _TEXT if name in _TEXT_PREFIX else _BYTES
            if fmt is None:
                width[c] = 1
            else:
                s = Struct(fmt)
                unpack[c], width[c] = s.unpack_from, s.size
            make[c] = maker
        else:
            kind[c] = _SHARED
    return tuple(kind), tuple(unpack), tuple(width), tuple(make), tuple(read)


_KIND, _UNPACK, _WIDTH, _MAKE, _READ = _tables()


def _shared(code: int, buf: Any, pos: int, end: int) -> tuple[Any, int]:
    """The shared reader of the opcode at ``pos``; its refusals become
    :class:`MalformedPickle` with the opcode's offset."""
    try:
        return _READ[code](buf, pos + 1, end)
    except Truncated:
        raise MalformedPickle("pickle data was truncated", offset=pos, opcode=NAMES[code],
                              rule="truncated") from None
    except BadArgument as e:
        raise MalformedPickle(str(e), offset=pos, opcode=NAMES[code], rule="bad-argument") from None


def iter_ops(data: Any, start: int = 0, *, lazy_bytes: bool = False) -> Iterator[tuple[int, int, Any, int]]:
    """Yield ``(offset, code, arg, end)`` for every opcode from ``start`` up
    to and including STOP; ``code`` is the opcode byte, ``end`` the offset
    after its argument.

    ``arg`` is what the shared reader of the opcode's argument kind returns,
    except with ``lazy_bytes=True`` for the kinds in :data:`LAZY_KINDS`
    (BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8): then it is the payload's
    length ``n``, the payload being ``data[end - n:end]``, never copied.

    Raises :class:`MalformedPickle` exactly where and as :func:`decode` does.
    """
    buf = as_buffer(data)
    end = len(buf)
    pos = start
    frame_end = -1  # end of the current frame, -1 outside frames
    limit = end  # no opcode may end past this: the current frame's end, or the data's
    kinds, widths, unpacks = _KIND, _WIDTH, _UNPACK  # locals: the loop reads them for every opcode
    # UTF-8 text from a slice: bytes.decode is the quicker call; a memoryview slice has none.
    text = bytes.decode if type(buf) is bytes else str
    while True:
        if pos >= limit:  # one test per opcode for the frame's end and the data's
            if pos == frame_end:
                frame_end = -1
                limit = end
            if pos >= end:
                raise MalformedPickle("pickle data was truncated before STOP", offset=pos, rule="truncated")
        code = buf[pos]
        k = kinds[code]
        if k == _NOARG:  # one byte: it cannot straddle, pos < limit
            yield pos, code, None, pos + 1
            if code == 0x2E:  # STOP
                return
            pos += 1
            continue
        if k == _U1:
            stop = pos + 2
            if stop <= limit:
                yield pos, code, buf[pos + 1], stop
                pos = stop
                continue
            arg, stop = _shared(code, buf, pos, end)  # truncated: refuses; else straddles, below
        elif k == _FIXED:
            stop = pos + 1 + widths[code]
            if stop <= limit and code != 0x95:
                yield pos, code, unpacks[code](buf, pos + 1)[0], stop
                pos = stop
                continue
            if stop <= end:
                arg = unpacks[code](buf, pos + 1)[0]
            else:
                arg, stop = _shared(code, buf, pos, end)
            if code == 0x95:  # FRAME
                if stop > limit:
                    _straddle(pos, code)
                if frame_end >= 0:
                    raise MalformedPickle("a new frame begins before the end of the current frame",
                                          offset=pos, opcode="FRAME", rule="frame-nested")
                if stop + arg > end:
                    raise MalformedPickle(f"frame of {arg} bytes runs past the end of the data",
                                          offset=pos, opcode="FRAME", rule="frame-truncated")
                frame_end = limit = stop + arg
                yield pos, code, arg, stop
                pos = stop
                continue
        elif k <= _BYTES:  # _TEXT or _BYTES
            w = widths[code]
            first = pos + 1 + w
            n = -1
            if first <= end:
                n = buf[pos + 1] if w == 1 else unpacks[code](buf, pos + 1)[0]
                stop = first + n
            if n < 0 or stop > end:
                # Truncated: the shared reader says so, in its words.
                arg, stop = _shared(code, buf, pos, end)
            elif k == _TEXT:
                try:
                    arg = text(buf[first:stop], "utf-8", "surrogatepass")
                except UnicodeDecodeError:
                    arg, stop = _shared(code, buf, pos, end)  # refuses, with the reader's message
            elif lazy_bytes:
                arg = n
            else:
                arg = _MAKE[code](buf[first:stop])
        elif k == _SHARED:
            arg, stop = _shared(code, buf, pos, end)
        else:
            raise MalformedPickle(f"invalid load key {code:#04x}", offset=pos, opcode=NAMES[code],
                                  rule="unknown-opcode")
        if stop > limit:
            _straddle(pos, code)
        yield pos, code, arg, stop
        pos = stop


def read_argument(buf: Any, code: int, pos: int, end: int, limit: int) -> tuple[Any, int]:
    """The argument of the opcode ``code`` at ``buf[pos]`` as its kind's
    shared reader reads it, and the offset after it; for loops that read the
    frequent kinds in place (the scanner's walk) and hand this everything
    else, including every in-place reading that failed.

    ``end`` is the end of the data, ``limit`` the end of the current frame
    (``end`` outside frames).  Raises :class:`MalformedPickle` as
    :func:`iter_ops` does: unknown opcode, truncated or ungrammatical
    argument, or an argument that straddles the frame's end.  An opcode
    without argument reads as ``(None, pos + 1)``.
    """
    k = _KIND[code]
    if k == _UNKNOWN:
        raise MalformedPickle(f"invalid load key {code:#04x}", offset=pos, opcode=NAMES[code], rule="unknown-opcode")
    if k == _NOARG:
        return None, pos + 1
    arg, stop = _shared(code, buf, pos, end)
    if stop > limit:
        _straddle(pos, code)
    return arg, stop


def _straddle(pos: int, code: int) -> None:
    raise MalformedPickle("opcode straddles the end of its frame", offset=pos, opcode=NAMES[code],
                          rule="frame-straddle")


def decode(data: Any, start: int = 0) -> Iterator[Op]:
    """Yield every opcode from ``start`` up to and including STOP.

    Raises :class:`MalformedPickle` (with offset and opcode) on an unknown
    opcode, a truncated or ungrammatical argument, a frame violation, or
    data that ends before STOP.  Payload arguments are returned as values
    (bytes, str, int...), exactly as the readers produce them.
    """
    by_code = BY_CODE
    for offset, code, arg, end in iter_ops(data, start):
        yield Op(offset, by_code[code], arg, end)
