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

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .codec.decode import decode
from .errors import MalformedPickle
from .scan.report import PickleReport

__all__ = ["Line", "listing", "format_line", "joblib_gaps"]


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


_JOBLIB_NOTE = re.compile(r"joblib array data: (\d+) bytes at offset (\d+)\Z")


def _is_joblib_wrapper(site: Any) -> bool:
    # The scanner's test (scan.static): joblib's array wrapper, also as vendored by other packages.
    module, name = site.module or "", site.name or ""
    return name.rsplit(".", 1)[-1] == "NumpyArrayWrapper" and (
        module == "joblib" or module.startswith("joblib.") or ".joblib" in module)


def joblib_gaps(rep: PickleReport, nested: list[PickleReport]) -> dict[int, int | None]:
    """For a joblib reading: where the array data after each array wrapper's
    BUILD starts -> where the opcodes resume (None: the scanner could not
    follow that array).  ``nested`` are the reports of the object arrays'
    own pickles (listed on their own)."""
    starts = sorted(off + 1 for s in rep.sites if _is_joblib_wrapper(s) for use, off in s.uses if use == "built")
    by_start = {n.start: n.end for n in nested}
    skipped = [m for m in (_JOBLIB_NOTE.match(n) for n in rep.notes) if m]
    gaps: dict[int, int | None] = {}
    for start in starts:
        if start in by_start:
            gaps[start] = by_start[start]
        elif skipped:
            m = skipped.pop(0)
            gaps[start] = int(m.group(2)) + int(m.group(1))
        else:
            gaps[start] = None
    return gaps


def listing(buf: Any, rep: PickleReport, *, width: int = 60,
            gaps: dict[int, int | None] | None = None) -> Iterator[Line]:
    """The lines of the pickle that ``rep`` (from the static decoder) covers,
    decoded again from ``buf``.  Stops where the VM would stop on a malformed
    stream, with a line for that error.  ``gaps`` (from :func:`joblib_gaps`)
    makes the listing jump over joblib's array data as joblib does."""
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
    bad = rep.malformed
    stop = bad.offset if bad is not None and bad.offset is not None else None
    gaps = gaps or {}
    depth = 0
    marks: list[int] = []
    pos = rep.start
    while True:
        jump = False
        resume: int | None = None
        try:
            for offset, op, arg, end in decode(buf, pos):
                if stop is not None and offset > stop:
                    # The static decoder stopped inside the previous opcode's argument.
                    yield Line(stop, bad.opcode or "?", "", depth, len(marks), [f"error: {bad.message} ({bad.rule})"])
                    return
                here = notes.get(offset, [])
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
                            yield Line(offset, op.name, _show(arg, width), depth, len(marks), [*here, "error: no MARK"])
                            return
                        depth = marks.pop()
                    depth += op.pushes - op.pops
                if offset == stop:
                    yield Line(offset, op.name, _show(arg, width), depth, len(marks),
                               [*here, f"error: {bad.message} ({bad.rule})"])
                    return
                yield Line(offset, op.name, _show(arg, width), depth, len(marks), here)
                if end in gaps:
                    jump, resume = True, gaps[end]
                    break
        except MalformedPickle as e:
            at = e.offset if e.offset is not None else -1
            text = f"error: {bad.message} ({bad.rule})" if bad is not None and bad.offset == at else \
                f"error: {e.detail} ({e.rule})"
            yield Line(at, e.opcode or "?", "", depth, len(marks), [*notes.get(at, []), text])
            return
        if not jump:
            if bad is not None and bad.offset is not None and rep.end is None:
                yield Line(bad.offset, bad.opcode or "?", "", depth, len(marks), [f"error: {bad.message} ({bad.rule})"])
            return
        if resume is None:  # an array joblib would read, which the scanner could not follow
            yield Line(end, "(array)", "", depth, len(marks),
                       ["joblib array data not followed (see the violations): the listing stops here"])
            return
        yield Line(end, "(array)", f"{resume - end} bytes of array data, skipped as joblib reads them", depth,
                   len(marks), [])
        pos = resume


def format_line(line: Line) -> str:
    indent = "  " * min(line.marks, 20)
    head = f"{line.offset:>8}: {indent}{line.opcode:<16} {line.arg}".rstrip()
    text = f"{head:<70} depth {line.depth}"
    for n in line.notes:
        text += f"\n{'':>10}^ {n}"
    return text
