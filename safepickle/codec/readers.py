"""Argument readers and writers: how each opcode's argument is laid out in the stream.

A reader takes ``(data, pos, end)`` (``data`` indexable as bytes, ``pos`` the
first byte of the argument, ``end`` one past the last byte available) and
returns ``(value, newpos)``.  It raises :class:`Truncated` when the argument
runs past ``end`` (the stream reader may then fetch more bytes and retry) and
:class:`BadArgument` when the bytes break the grammar.  Declared lengths are
compared with ``end`` *before* anything is allocated.

The text grammar of protocol 0 is one documented, strict grammar, shared by
the VM and the decoder (CPython accepts a few more spellings; we refuse them
rather than guess):

* ``decimal``  (INT, GET, PUT): ``[+-]?[0-9]+`` and a newline; for INT a
  two-character line worth 0 or 1 (``00``, ``01``, ``+0``...) is a bool.  A number with a leading zero
  (``010``) is refused: CPython reads INT in base 0, where it means 8.
* ``long``     (LONG): the same digits, an optional trailing ``L``.
* ``float``    (FLOAT): ``[+-]?`` digits with optional fraction and exponent,
  or ``inf``/``infinity``/``nan`` in any case; a finite literal that
  overflows to infinity is refused (CPython's C loader refuses it too).
* ``string``   (STRING): quoted with ``'`` or ``"`` at both ends, backslash
  escapes ``\\ \\' \\" \\a \\b \\f \\n \\r \\t \\v \\xhh \\ooo`` and
  backslash-newline only.
* ``unicode``  (UNICODE): raw-unicode-escape (``\\uXXXX``, ``\\UXXXXXXXX``).
* ``noescape`` (GLOBAL: UTF-8; INST and PERSID: ASCII), taken as is.
"""

from __future__ import annotations

import codecs
import re
from struct import Struct
from typing import Any

__all__ = [
    "ArgKind",
    "BadArgument",
    "Truncated",
    "ARG_KINDS",
    "read_line",
    "parse_int_line",
    "parse_long_line",
    "parse_float_line",
    "parse_string_line",
    "parse_unicode_line",
    "parse_memo_key_line",
]


class Truncated(Exception):
    """The argument needs bytes up to ``need`` (an absolute position) but the
    data ends before; ``need`` is -1 when a newline was looked for."""

    def __init__(self, need: int) -> None:
        super().__init__(need)
        self.need = need


class BadArgument(Exception):
    """The argument's bytes break the grammar; the message says how."""


_U2 = Struct("<H")
_U4 = Struct("<I")
_I4 = Struct("<i")
_U8 = Struct("<Q")
_F8 = Struct(">d")

_DECIMAL = re.compile(rb"[+-]?(?:0|[1-9][0-9]*)\Z")
_MEMO_KEY = re.compile(rb"[0-9]+\Z")
_FLOAT = re.compile(
    rb"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))\Z"
)
_ESCAPE = re.compile(rb"\\(?:[\\'\"abfnrtv\n]|x[0-9a-fA-F]{2}|[0-7]{1,3})")


# -- text lines -------------------------------------------------------------


def read_line(data: Any, pos: int, end: int) -> tuple[bytes, int]:
    """The bytes from ``pos`` up to (not including) the next newline, and the
    position after the newline.  ``data`` must support ``.find`` or be a
    memoryview (searched through ``bytes`` of a bounded window)."""
    nl = _find_newline(data, pos, end)
    if nl < 0:
        raise Truncated(-1)
    return bytes(data[pos:nl]), nl + 1


def _find_newline(data: Any, pos: int, end: int) -> int:
    if isinstance(data, (bytes, bytearray)):
        return data.find(b"\n", pos, end)
    # memoryview: search window by window so a long line costs no copy of all of it
    step = 4096
    start = pos
    while start < end:
        stop = min(end, start + step)
        i = bytes(data[start:stop]).find(b"\n")
        if i >= 0:
            return start + i
        start = stop
        step = min(step * 4, 1 << 22)
    return -1


def parse_int_line(line: bytes) -> int | bool:
    """INT: a decimal int; a two-character line worth 0 or 1 (``00``, ``01``,
    and, as CPython reads them, ``+0``, ``-0``, ``+1``) is the bool of protocol 0."""
    if line == b"00":
        return False
    if line == b"01":
        return True
    if not _DECIMAL.match(line):
        raise BadArgument(f"INT argument {_show(line)} is not a decimal integer")
    value = _to_int(line)
    if len(line) == 2 and value in (0, 1):
        return bool(value)
    return value


def parse_long_line(line: bytes) -> int:
    """LONG: a decimal integer with an optional trailing ``L``."""
    digits = line[:-1] if line.endswith(b"L") else line
    if not _DECIMAL.match(digits):
        raise BadArgument(f"LONG argument {_show(line)} is not a decimal integer")
    return _to_int(digits)


def parse_memo_key_line(line: bytes) -> int:
    """GET/PUT: a non-negative decimal memo index."""
    if not _MEMO_KEY.match(line):
        raise BadArgument(f"memo index {_show(line)} is not a non-negative decimal integer")
    return _to_int(line)


def _to_int(digits: bytes) -> int:
    try:
        return int(digits)
    except ValueError as e:  # beyond sys.get_int_max_str_digits()
        raise BadArgument(f"integer literal refused: {e}") from None


def parse_float_line(line: bytes) -> float:
    """FLOAT: a decimal float literal, ``inf`` or ``nan``."""
    if not _FLOAT.match(line):
        raise BadArgument(f"FLOAT argument {_show(line)} is not a float literal")
    value = float(line)
    if value in (float("inf"), float("-inf")) and b"n" not in line.lower():
        raise BadArgument(f"FLOAT argument {_show(line)} overflows")
    return value


def parse_string_line(line: bytes) -> bytes:
    """STRING: strip the quotes, decode the backslash escapes."""
    if len(line) < 2 or line[0] != line[-1] or line[0] not in b"'\"":
        raise BadArgument("the STRING opcode argument must be quoted")
    body = line[1:-1]
    if b"\\" in body:
        rest = _ESCAPE.sub(b"", body)
        if b"\\" in rest:
            raise BadArgument("STRING argument has an invalid backslash escape")
        return codecs.escape_decode(body)[0]
    return body


def parse_unicode_line(line: bytes) -> str:
    """UNICODE: raw-unicode-escape text."""
    try:
        return codecs.raw_unicode_escape_decode(line)[0]
    except UnicodeDecodeError as e:
        raise BadArgument(f"UNICODE argument is not raw-unicode-escape: {e.reason}") from None


def parse_utf8_name(line: bytes) -> str:
    """A GLOBAL/INST module or name line."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise BadArgument("module or name is not UTF-8") from None


def parse_ascii_pid(line: bytes) -> str:
    """A PERSID line: protocol 0 persistent ids are ASCII strings."""
    try:
        return line.decode("ascii")
    except UnicodeDecodeError:
        raise BadArgument("persistent IDs in protocol 0 must be ASCII strings") from None


def _show(line: bytes) -> str:
    return repr(line[:40]) + ("..." if len(line) > 40 else "")


# -- writers of the text forms (the encoder's side) --------------------------


def unicode_line(text: str) -> bytes:
    """The UNICODE argument CPython's pickler writes for ``text``."""
    for ch, esc in (("\\", "\\u005c"), ("\0", "\\u0000"), ("\n", "\\u000a"), ("\r", "\\u000d"),
                    ("\x1a", "\\u001a")):
        text = text.replace(ch, esc)
    return text.encode("raw-unicode-escape")


def string_line(value: bytes) -> bytes:
    """A quoted STRING argument that :func:`parse_string_line` reads back."""
    return repr(value)[1:].encode("ascii")


# -- argument kinds ------------------------------------------------------------


class ArgKind:
    """How one kind of argument is read and written.

    ``width`` is the fixed byte count of the argument (or of its length
    prefix for length-prefixed kinds, with ``prefixed`` true); ``None`` for
    newline-terminated text.  ``read``/``write`` are the reader and writer.
    """

    __slots__ = ("name", "width", "prefixed", "read", "write", "doc")

    def __init__(self, name: str, width: int | None, prefixed: bool, read, write, doc: str) -> None:
        self.name = name
        self.width = width
        self.prefixed = prefixed
        self.read = read
        self.write = write
        self.doc = doc

    def __repr__(self) -> str:
        return f"ArgKind({self.name})"


def _need(pos: int, n: int, end: int) -> int:
    stop = pos + n
    if stop > end:
        raise Truncated(stop)
    return stop


def _fixed(struct: Struct):
    n = struct.size

    def read(data, pos, end):
        stop = _need(pos, n, end)
        return struct.unpack_from(data, pos)[0], stop

    return read


def _read_u1(data, pos, end):
    stop = _need(pos, 1, end)
    return data[pos], stop


def _prefixed(prefix: Struct | None, decode, what: str, signed: bool = False):
    """A payload of ``length`` bytes after a length prefix; ``decode`` maps
    the raw slice to the value (``None`` keeps a memoryview/bytes slice)."""
    width = 1 if prefix is None else prefix.size

    def read(data, pos, end):
        start = _need(pos, width, end)
        n = data[pos] if prefix is None else prefix.unpack_from(data, pos)[0]
        if signed and n < 0:
            raise BadArgument(f"{what} has negative byte count {n}")
        stop = _need(start, n, end)
        raw = data[start:stop]
        return (raw if decode is None else decode(raw)), stop

    return read


def _utf8(raw) -> str:
    try:
        return str(raw, "utf-8", "surrogatepass")
    except UnicodeDecodeError as e:
        raise BadArgument(f"string is not UTF-8: {e.reason}") from None


def _long(raw) -> int:
    return int.from_bytes(raw, "little", signed=True)


def _line_kind(name: str, parse, doc: str) -> ArgKind:
    def read(data, pos, end):
        line, stop = read_line(data, pos, end)
        return parse(line), stop

    return ArgKind(name, None, False, read, None, doc)


def _pair_read(data, pos, end):
    first, mid = read_line(data, pos, end)
    second, stop = read_line(data, mid, end)
    return (parse_utf8_name(first), parse_utf8_name(second)), stop


def _w_u1(v: int) -> bytes:
    return bytes((v,))


def _w_len(prefix: Struct | None, encode=bytes):
    def write(v) -> bytes:
        raw = encode(v)
        head = bytes((len(raw),)) if prefix is None else prefix.pack(len(raw))
        return head + raw

    return write


def _long_bytes(v: int) -> bytes:
    if v == 0:
        return b""
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    # CPython writes the shortest two's-complement form
    if len(raw) > 1 and ((raw[-1] == 0xFF and raw[-2] & 0x80) or (raw[-1] == 0 and not raw[-2] & 0x80)):
        raw = raw[:-1]
    return raw


def _int_text(v) -> bytes:
    if v is True:
        return b"01\n"
    if v is False:
        return b"00\n"
    return b"%d\n" % v


ARG_KINDS: dict[str, ArgKind] = {
    k.name: k
    for k in (
        ArgKind("uint1", 1, False, _read_u1, _w_u1, "one unsigned byte"),
        ArgKind("uint2", 2, False, _fixed(_U2), _U2.pack, "2-byte little-endian unsigned int"),
        ArgKind("uint4", 4, False, _fixed(_U4), _U4.pack, "4-byte little-endian unsigned int"),
        ArgKind("int4", 4, False, _fixed(_I4), _I4.pack, "4-byte little-endian signed int"),
        ArgKind("uint8", 8, False, _fixed(_U8), _U8.pack, "8-byte little-endian unsigned int"),
        ArgKind("float8", 8, False, _fixed(_F8), _F8.pack, "8-byte big-endian IEEE double"),
        ArgKind("long1", 1, True, _prefixed(None, _long, "LONG1"), _w_len(None, _long_bytes),
                "1-byte length, then that many bytes of two's-complement little-endian int"),
        ArgKind("long4", 4, True, _prefixed(_I4, _long, "LONG pickle", signed=True), _w_len(_I4, _long_bytes),
                "4-byte signed length, then two's-complement little-endian int"),
        ArgKind("string1", 1, True, _prefixed(None, bytes, "SHORT_BINSTRING"), _w_len(None),
                "1-byte length, then raw bytes (decoded by the encoding= argument)"),
        ArgKind("string4", 4, True, _prefixed(_I4, bytes, "BINSTRING pickle", signed=True), _w_len(_I4),
                "4-byte signed length, then raw bytes (decoded by the encoding= argument)"),
        ArgKind("bytes1", 1, True, _prefixed(None, bytes, "SHORT_BINBYTES"), _w_len(None),
                "1-byte length, then raw bytes"),
        ArgKind("bytes4", 4, True, _prefixed(_U4, bytes, "BINBYTES"), _w_len(_U4), "4-byte length, then raw bytes"),
        ArgKind("bytes8", 8, True, _prefixed(_U8, bytes, "BINBYTES8"), _w_len(_U8), "8-byte length, then raw bytes"),
        ArgKind("bytearray8", 8, True, _prefixed(_U8, bytearray, "BYTEARRAY8"), _w_len(_U8),
                "8-byte length, then raw bytes of a bytearray"),
        ArgKind("unicodestring1", 1, True, _prefixed(None, _utf8, "SHORT_BINUNICODE"),
                _w_len(None, lambda s: s.encode("utf-8", "surrogatepass")), "1-byte length, then UTF-8"),
        ArgKind("unicodestring4", 4, True, _prefixed(_U4, _utf8, "BINUNICODE"),
                _w_len(_U4, lambda s: s.encode("utf-8", "surrogatepass")), "4-byte length, then UTF-8"),
        ArgKind("unicodestring8", 8, True, _prefixed(_U8, _utf8, "BINUNICODE8"),
                _w_len(_U8, lambda s: s.encode("utf-8", "surrogatepass")), "8-byte length, then UTF-8"),
        ArgKind("decimalnl_short", None, False, _line_kind("decimalnl_short", parse_int_line, "").read,
                _int_text, "INT grammar line: 00/01 booleans or a decimal integer"),
        ArgKind("decimalnl_memo", None, False, _line_kind("decimalnl_memo", parse_memo_key_line, "").read,
                lambda v: b"%d\n" % v, "non-negative decimal memo index line"),
        ArgKind("decimalnl_long", None, False, _line_kind("decimalnl_long", parse_long_line, "").read,
                lambda v: b"%dL\n" % v, "decimal integer line with optional trailing L"),
        ArgKind("floatnl", None, False, _line_kind("floatnl", parse_float_line, "").read,
                lambda v: repr(float(v)).encode("ascii") + b"\n", "float literal line"),
        ArgKind("stringnl", None, False, _line_kind("stringnl", parse_string_line, "").read,
                lambda v: string_line(v) + b"\n", "quoted, backslash-escaped bytes line"),
        ArgKind("stringnl_noescape", None, False, _line_kind("stringnl_noescape", parse_ascii_pid, "").read,
                lambda v: v.encode("ascii") + b"\n", "ASCII line, no escapes"),
        ArgKind("stringnl_noescape_pair", None, False, _pair_read,
                lambda v: v[0].encode("utf-8") + b"\n" + v[1].encode("utf-8") + b"\n",
                "two UTF-8 lines: module and qualname"),
        ArgKind("unicodestringnl", None, False, _line_kind("unicodestringnl", parse_unicode_line, "").read,
                lambda v: unicode_line(v) + b"\n", "raw-unicode-escape line"),
    )
}
