"""The disassembler: one line per opcode, with offset, argument, stack depth and verdicts.

Built on the codec's decoder (the same readers as the VM) and on the static
decoder of :mod:`safepickle.scan` for the verdicts: every global is annotated
with what the policy says about it, and every other refusal (a persistent id,
a forbidden use, a limit) at the offset where the VM would stop.  Nothing is
imported or called.

The stack depth is the number of items on the VM's stack after the opcode
(marks not counted); the indentation is the number of open MARKs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .codec.decode import decode
from .errors import MalformedPickle
from .scan.report import PickleReport

__all__ = ["Line", "listing", "format_line"]


@dataclass(slots=True)
class Line:
    offset: int
    opcode: str
    arg: str
    depth: int
    marks: int
    notes: list[str]


def _show(arg: Any, width: int) -> str:
    if arg is None:
        return ""
    if isinstance(arg, tuple) and len(arg) == 2 and all(isinstance(x, str) for x in arg):
        text = f"{arg[0]} {arg[1]}"  # GLOBAL / INST
    elif isinstance(arg, (bytes, bytearray, memoryview)):
        raw = bytes(arg[:width])
        text = repr(raw) + (f"... ({len(arg)} bytes)" if len(arg) > width else "")
    elif isinstance(arg, str):
        text = repr(arg[:width]) + (f"... ({len(arg)} chars)" if len(arg) > width else "")
    elif isinstance(arg, int) and not isinstance(arg, bool) and arg.bit_length() > 4 * width:
        text = f"<int of {arg.bit_length()} bits>"
    else:
        text = repr(arg)
    return text if len(text) <= width + 40 else text[:width + 37] + "..."


def listing(buf: Any, rep: PickleReport, *, width: int = 60) -> Iterator[Line]:
    """The lines of the pickle that ``rep`` (from the static decoder) covers,
    decoded again from ``buf``; ends with a line for the error that stopped
    the decoding, if any."""
    notes: dict[int, list[str]] = {}
    for s in rep.sites:
        if s.module is None:
            text = "dynamic global: REFUSED (module or name computed at load time)"
        elif s.allowed:
            text = f"global {s.qualified}: allowed ({s.rule})"
        else:
            text = f"global {s.qualified}: REFUSED ({s.rule})"
        notes.setdefault(s.offset, []).append(text)
    for v in rep.violations:
        if v.kind not in ("global", "dynamic-global") and v.offset is not None:
            notes.setdefault(v.offset, []).append(f"{v.kind}: {v.message}")
    depth = 0
    marks: list[int] = []
    try:
        for offset, op, arg, _end in decode(buf, rep.start):
            if op.name == "POP":
                if marks and marks[-1] == depth:
                    marks.pop()
                else:
                    depth -= 1
            elif op.name == "MARK":
                marks.append(depth)
            else:
                if op.mark:
                    if not marks:
                        yield Line(offset, op.name, _show(arg, width), depth, len(marks), ["error: no MARK"])
                        return
                    depth = marks.pop()
                depth += op.pushes - op.pops
            yield Line(offset, op.name, _show(arg, width), depth, len(marks), notes.get(offset, []))
    except MalformedPickle as e:
        yield Line(e.offset if e.offset is not None else -1, e.opcode or "?", "", depth, len(marks),
                   [f"error: {e.detail} ({e.rule})"])
        return
    if rep.malformed is not None and rep.malformed.offset is not None and rep.end is None:
        m = rep.malformed
        yield Line(m.offset, m.opcode or "?", "", depth, len(marks), [f"error: {m.message} ({m.rule})"])


def format_line(line: Line) -> str:
    indent = "  " * min(line.marks, 20)
    head = f"{line.offset:>8}: {indent}{line.opcode:<16} {line.arg}".rstrip()
    text = f"{head:<70} depth {line.depth}"
    for n in line.notes:
        text += f"\n{'':>10}^ {n}"
    return text
