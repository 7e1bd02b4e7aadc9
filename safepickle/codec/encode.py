"""The encoder: opcodes and arguments back to bytes (used by the fuzzer and tests).

``encode(decode(x)) == x`` for every stream CPython's pickler writes: the
writers produce the canonical forms that pickler uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .opcodes import BY_CODE, BY_NAME, Opcode

__all__ = ["encode", "encode_op"]


def _opcode(op: str | int | Opcode) -> Opcode:
    if isinstance(op, Opcode):
        return op
    if isinstance(op, int):
        return BY_CODE[op]
    return BY_NAME[op]


def encode_op(op: str | int | Opcode, arg: Any = None) -> bytes:
    """The bytes of one opcode with its argument (``arg`` ignored for opcodes without one)."""
    opc = _opcode(op)
    if opc.arg is None:
        return opc.char
    return opc.char + opc.arg.write(arg)


def encode(ops: Iterable[Any]) -> bytes:
    """Assemble ``ops`` — ``(opcode, arg)`` pairs, decoder ``Op`` tuples or bare
    opcode names for argument-less opcodes — into a pickle stream."""
    out = bytearray()
    for item in ops:
        if isinstance(item, (str, int, Opcode)):
            out += encode_op(item)
        elif hasattr(item, "opcode"):
            out += encode_op(item.opcode, item.arg)
        else:
            out += encode_op(*item)
    return bytes(out)
