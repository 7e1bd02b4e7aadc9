"""The opcode table: every opcode of pickle protocols 0 to 5, once, as data.

The VM, the decoder (``scan``, ``disasm``), the encoder (fuzzing) and the
docs all come from this table.  Stack effects are written as
``(mark, pops, pushes)``: ``mark`` when the opcode takes everything above the
topmost MARK and that MARK, then ``pops`` more items below it, then pushes
``pushes`` items.  MARK itself pushes a mark; POP takes an item or a mark.
"""

from __future__ import annotations

from dataclasses import dataclass

from .readers import ARG_KINDS, ArgKind

__all__ = ["Opcode", "OPCODES", "BY_CODE", "BY_NAME", "HIGHEST_PROTOCOL"]

HIGHEST_PROTOCOL = 5


@dataclass(frozen=True, slots=True)
class Opcode:
    """One opcode: its byte, name, the protocol that introduced it, how its
    argument is read, and its stack effect."""

    code: int
    name: str
    proto: int
    arg: ArgKind | None
    mark: bool
    pops: int
    pushes: int
    doc: str

    @property
    def char(self) -> bytes:
        return bytes((self.code,))


# (char, name, proto, arg kind, mark, pops, pushes, doc)
_TABLE = [
    # integers
    ("I", "INT", 0, "decimalnl_short", False, 0, 1, "push an int (or bool for 00/01) from a decimal line"),
    ("J", "BININT", 1, "int4", False, 0, 1, "push a 4-byte signed int"),
    ("K", "BININT1", 1, "uint1", False, 0, 1, "push a 1-byte unsigned int"),
    ("M", "BININT2", 1, "uint2", False, 0, 1, "push a 2-byte unsigned int"),
    ("L", "LONG", 0, "decimalnl_long", False, 0, 1, "push an int from a decimal line with optional L"),
    ("\x8a", "LONG1", 2, "long1", False, 0, 1, "push an int of up to 255 bytes"),
    ("\x8b", "LONG4", 2, "long4", False, 0, 1, "push an int of a 4-byte-length byte count"),
    # strings and bytes
    ("S", "STRING", 0, "stringnl", False, 0, 1, "push a py2 str from a quoted line (decoded by encoding=)"),
    ("T", "BINSTRING", 1, "string4", False, 0, 1, "push a py2 str (decoded by encoding=)"),
    ("U", "SHORT_BINSTRING", 1, "string1", False, 0, 1, "push a short py2 str (decoded by encoding=)"),
    ("B", "BINBYTES", 3, "bytes4", False, 0, 1, "push bytes"),
    ("C", "SHORT_BINBYTES", 3, "bytes1", False, 0, 1, "push short bytes"),
    ("\x8e", "BINBYTES8", 4, "bytes8", False, 0, 1, "push bytes with an 8-byte length"),
    ("\x96", "BYTEARRAY8", 5, "bytearray8", False, 0, 1, "push a bytearray"),
    ("\x97", "NEXT_BUFFER", 5, None, False, 0, 1, "push the next out-of-band buffer"),
    ("\x98", "READONLY_BUFFER", 5, None, False, 1, 1, "make the top buffer read-only"),
    ("N", "NONE", 0, None, False, 0, 1, "push None"),
    ("\x88", "NEWTRUE", 2, None, False, 0, 1, "push True"),
    ("\x89", "NEWFALSE", 2, None, False, 0, 1, "push False"),
    ("V", "UNICODE", 0, "unicodestringnl", False, 0, 1, "push a str from a raw-unicode-escape line"),
    ("\x8c", "SHORT_BINUNICODE", 4, "unicodestring1", False, 0, 1, "push a short UTF-8 str"),
    ("X", "BINUNICODE", 1, "unicodestring4", False, 0, 1, "push a UTF-8 str"),
    ("\x8d", "BINUNICODE8", 4, "unicodestring8", False, 0, 1, "push a UTF-8 str with an 8-byte length"),
    ("F", "FLOAT", 0, "floatnl", False, 0, 1, "push a float from a decimal line"),
    ("G", "BINFLOAT", 1, "float8", False, 0, 1, "push an 8-byte big-endian float"),
    # containers
    ("]", "EMPTY_LIST", 1, None, False, 0, 1, "push []"),
    ("a", "APPEND", 0, None, False, 2, 1, "append the top item to the list below it"),
    ("e", "APPENDS", 1, None, True, 1, 1, "extend the list below the mark with the items above it"),
    ("l", "LIST", 0, None, True, 0, 1, "build a list from the items above the mark"),
    (")", "EMPTY_TUPLE", 1, None, False, 0, 1, "push ()"),
    ("t", "TUPLE", 0, None, True, 0, 1, "build a tuple from the items above the mark"),
    ("\x85", "TUPLE1", 2, None, False, 1, 1, "build a 1-tuple from the top item"),
    ("\x86", "TUPLE2", 2, None, False, 2, 1, "build a 2-tuple from the top two items"),
    ("\x87", "TUPLE3", 2, None, False, 3, 1, "build a 3-tuple from the top three items"),
    ("}", "EMPTY_DICT", 1, None, False, 0, 1, "push {}"),
    ("d", "DICT", 0, None, True, 0, 1, "build a dict from key, value pairs above the mark"),
    ("s", "SETITEM", 0, None, False, 3, 1, "set dict[key] = value from the top three items"),
    ("u", "SETITEMS", 1, None, True, 1, 1, "set the pairs above the mark into the dict below it"),
    ("\x8f", "EMPTY_SET", 4, None, False, 0, 1, "push set()"),
    ("\x90", "ADDITEMS", 4, None, True, 1, 1, "add the items above the mark to the set below it"),
    ("\x91", "FROZENSET", 4, None, True, 0, 1, "build a frozenset from the items above the mark"),
    # stack manipulation
    ("0", "POP", 0, None, False, 1, 0, "discard the top item, or the top mark if it is on top"),
    ("2", "DUP", 0, None, False, 1, 2, "push the top item again"),
    ("(", "MARK", 0, None, False, 0, 0, "push a mark"),
    ("1", "POP_MARK", 1, None, True, 0, 0, "discard everything above the mark and the mark"),
    # memo
    ("g", "GET", 0, "decimalnl_memo", False, 0, 1, "push memo[n], n from a decimal line"),
    ("h", "BINGET", 1, "uint1", False, 0, 1, "push memo[n], 1-byte n"),
    ("j", "LONG_BINGET", 1, "uint4", False, 0, 1, "push memo[n], 4-byte n"),
    ("p", "PUT", 0, "decimalnl_memo", False, 0, 0, "memo[n] = top, n from a decimal line"),
    ("q", "BINPUT", 1, "uint1", False, 0, 0, "memo[n] = top, 1-byte n"),
    ("r", "LONG_BINPUT", 1, "uint4", False, 0, 0, "memo[n] = top, 4-byte n"),
    ("\x94", "MEMOIZE", 4, None, False, 0, 0, "memo[len(memo)] = top"),
    # extension registry
    ("\x82", "EXT1", 2, "uint1", False, 0, 1, "push the global of extension code n (1 byte)"),
    ("\x83", "EXT2", 2, "uint2", False, 0, 1, "push the global of extension code n (2 bytes)"),
    ("\x84", "EXT4", 2, "int4", False, 0, 1, "push the global of extension code n (4 bytes, signed)"),
    # globals and object construction
    ("c", "GLOBAL", 0, "stringnl_noescape_pair", False, 0, 1, "push module:qualname from two lines"),
    ("\x93", "STACK_GLOBAL", 4, None, False, 2, 1, "push module:qualname from the top two str items"),
    ("R", "REDUCE", 0, None, False, 2, 1, "call the callable below the top with the top tuple"),
    ("b", "BUILD", 0, None, False, 2, 1, "apply the top item as state to the object below it"),
    ("i", "INST", 0, "stringnl_noescape_pair", True, 0, 1, "instantiate module:qualname with the items above the mark"),
    ("o", "OBJ", 1, None, True, 0, 1, "instantiate the class just above the mark with the items above it"),
    ("\x81", "NEWOBJ", 2, None, False, 2, 1, "cls.__new__(cls, *args)"),
    ("\x92", "NEWOBJ_EX", 4, None, False, 3, 1, "cls.__new__(cls, *args, **kwargs)"),
    # machine control
    ("\x80", "PROTO", 2, "uint1", False, 0, 0, "declare the protocol version"),
    (".", "STOP", 0, None, False, 1, 0, "end: the top item is the result"),
    ("\x95", "FRAME", 4, "uint8", False, 0, 0, "the next n bytes form a frame"),
    ("P", "PERSID", 0, "stringnl_noescape", False, 0, 1, "push persistent_load(id), ASCII id line"),
    ("Q", "BINPERSID", 1, None, False, 1, 1, "push persistent_load(top)"),
]

OPCODES: tuple[Opcode, ...] = tuple(
    Opcode(ord(ch), name, proto, ARG_KINDS[arg] if arg else None, mark, pops, pushes, doc)
    for ch, name, proto, arg, mark, pops, pushes, doc in _TABLE
)
BY_CODE: dict[int, Opcode] = {op.code: op for op in OPCODES}
BY_NAME: dict[str, Opcode] = {op.name: op for op in OPCODES}

# A name per byte for error messages: unknown bytes read as their hex value.
NAMES: tuple[str, ...] = tuple(BY_CODE[b].name if b in BY_CODE else f"<unknown 0x{b:02x}>" for b in range(256))
