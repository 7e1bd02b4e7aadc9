"""The static decoder: what one pickle stream would ask of the VM, without running it.

:func:`analyze` walks the opcodes that :func:`safepickle.codec.decode` yields
(the same readers and framing rule as the VM) and simulates the VM's stack,
mark stack, fence and memo exactly as ``safepickle/vm/engine.py`` does, with
the values of :mod:`safepickle.scan.values`: constants for what the VM would
build itself, markers for everything else.  Nothing is imported or called.

For every global the stream names it records a :class:`Site` at the offset of
the opcode the VM would report (GLOBAL, INST, STACK_GLOBAL, EXT1/2/4), judged
by the policy's own static verdict (``Runtime.check``), so scan and load
cannot disagree.  It stops where the VM would certainly stop (malformed
bytes, a stack or mark error, a missing memo entry) and goes on past what
only the run-time objects decide, so it reports at least every global a load
would ask for.

A STACK_GLOBAL whose operands are not both known strings is a *dynamic*
global: the VM would resolve whatever a call produced, so scan cannot vouch
for it and reports it as a violation.

With ``joblib=True`` the stream is read the way ``joblib.load`` reads it:
after a BUILD that gives state to a ``NumpyArrayWrapper``, the raw array
bytes (or, for object arrays, a nested pickle) are skipped exactly as joblib
does, so nothing after an array goes unseen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from ..codec.decode import as_buffer, iter_ops
from ..codec.opcodes import BY_CODE, NAMES
from ..errors import ForbiddenGlobal, MalformedPickle
from .report import Extension, PersistentId, PickleReport, Site, Violation
from .values import (
    Built,
    DictValue,
    GlobalValue,
    ListValue,
    Made,
    Opaque,
    describe,
    key_problem,
    vm_built,
)

__all__ = ["Judge", "Analysis", "analyze", "BLOB_MAGICS"]

# Leading bytes of a bytes value that may hold another pickle or a container:
# such values are handed back to the container layer to be scanned as well.
BLOB_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY", b"\x1f\x8b", b"BZh", b"\xfd7zXZ",
               b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
_BLOB_MIN = 16

# A bytes value longer than this keeps only its first bytes on the simulated
# stack: the simulation needs its type, and messages show 80 bytes at most.
_PAYLOAD_KEEP = 256

_CALL_WRAPPERS = frozenset({"copyreg:_reconstructor", "copyreg:__newobj__", "copyreg:__newobj_ex__"})
# Bytes before the UTF-8 payload of SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
# (opcode and length), by opcode byte.
_PAYLOAD_HEAD = tuple({0x8C: 2, 0x58: 5, 0x8D: 9}.get(b, 0) for b in range(256))
# What EMPTY_TUPLE, NONE, NEWTRUE and NEWFALSE push.
_CONST = {0x29: (), 0x4E: None, 0x88: True, 0x89: False}
# Values that are always usable as a dict key or set item (``key_problem`` is None).
_PLAIN_KEYS = frozenset({str, int, float, bool, bytes, type(None)})

# The walk dispatches on a class per opcode byte: the frequent classes
# (_C_NUMBER to _C_EMPTY) first, behind one test; the rare opcodes (class
# _C_OTHER) are told apart by their byte.
(_C_NUMBER, _C_PUT, _C_TEXT, _C_TUPLE_N, _C_CONST, _C_MARK, _C_GET, _C_EMPTY, _C_FILL_MARK, _C_FILL,
 _C_COLLECT, _C_BYTES, _C_PY2STR, _C_OTHER) = range(14)
_CLASS_OF = {
    _C_NUMBER: (0x4B, 0x4A, 0x4D, 0x49, 0x4C, 0x8A, 0x47, 0x46),  # BININT1 BININT BININT2 INT LONG LONG1 BINFLOAT FLOAT
    _C_PUT: (0x94, 0x71, 0x72, 0x70),  # MEMOIZE BINPUT LONG_BINPUT PUT
    _C_TEXT: (0x8C, 0x58, 0x8D, 0x56),  # SHORT_BINUNICODE BINUNICODE BINUNICODE8 UNICODE
    _C_TUPLE_N: (0x85, 0x86, 0x87),  # TUPLE1 TUPLE2 TUPLE3
    _C_CONST: tuple(_CONST),
    _C_MARK: (0x28,),
    _C_GET: (0x68, 0x6A, 0x67),  # BINGET LONG_BINGET GET
    _C_EMPTY: (0x5D, 0x7D, 0x8F),  # EMPTY_LIST EMPTY_DICT EMPTY_SET
    _C_FILL_MARK: (0x65, 0x75, 0x90),  # APPENDS SETITEMS ADDITEMS
    _C_FILL: (0x61, 0x73),  # APPEND SETITEM
    _C_COLLECT: (0x74, 0x6C, 0x64, 0x91, 0x31, 0x6F),  # TUPLE LIST DICT FROZENSET POP_MARK OBJ
    _C_BYTES: (0x43, 0x42, 0x8E, 0x96),  # SHORT_BINBYTES BINBYTES BINBYTES8 BYTEARRAY8 (lazy: the length)
    _C_PY2STR: (0x54, 0x55, 0x53),  # BINSTRING SHORT_BINSTRING STRING
}
_CLASS = tuple(next((c for c, codes in _CLASS_OF.items() if b in codes), _C_OTHER) for b in range(256))


class Judge:
    """The policy's static verdicts for one scan: ``Runtime.check`` and
    ``Runtime.resolve_extension``, cached, plus the load options that change
    what a stream means (``fix_imports``, ``encoding``, ``errors``)."""

    def __init__(self, runtime: Any, *, fix_imports: bool = True, encoding: str = "ASCII",
                 errors: str = "strict") -> None:
        self.runtime = runtime
        self.limits = runtime.limits
        self.policy_name = runtime.name
        self.fix_imports = fix_imports
        self.encoding = encoding
        self.errors = errors
        self._verdicts: dict[tuple[str, str, int], Any] = {}

    def check(self, module: str, name: str, proto: int) -> Any:
        key = (module, name, proto)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self.runtime.check(module, name, proto, self.fix_imports)
            self._verdicts[key] = verdict
        return verdict

    def extension(self, code: int) -> tuple[str, str] | ForbiddenGlobal:
        try:
            return self.runtime.resolve_extension(code)
        except ForbiddenGlobal as e:
            return e


@dataclass
class Analysis:
    """What :func:`analyze` returns: the report of the stream, and what the
    container layer needs to go on (the value STOP returned when it is an int,
    bytes values that look like pickles or containers, whether a joblib array
    wrapper was seen, the pickles nested in joblib object arrays)."""

    report: PickleReport
    result: Any = None
    blobs: list[tuple[int, int]] = field(default_factory=list)  # (start, length) within the buffer
    joblib_wrappers: int = 0
    nested: list[Analysis] = field(default_factory=list)


class _Stop(Exception):
    """The VM would stop here (the violation is already recorded)."""


def _is_joblib_wrapper(site: Any) -> bool:
    module, name = site.module, site.name
    if module is None or not name.endswith("NumpyArrayWrapper"):
        return False
    return name.rsplit(".", 1)[-1] == "NumpyArrayWrapper" and (
        module == "joblib" or module.startswith("joblib.") or ".joblib" in module)


def analyze(data: Any, start: int, judge: Judge, *, part: str = "", primary: bool = True,
            joblib: bool = False, view: str = "pickle", _depth: int = 0) -> Analysis:
    """Decode the pickle that starts at ``data[start]`` and report what a
    load under ``judge``'s policy would ask for and refuse.

    Never raises for any input bytes: a stream the VM would refuse as
    malformed is reported as such (``report.malformed``), with everything
    found before that point.
    """
    buf = as_buffer(data)
    rep = PickleReport(part=part, start=start, primary=primary, view=view)
    out = Analysis(rep)
    _Walker(buf, judge, out, joblib, _depth).run(start)
    return out


class _Walker:
    """The simulation of one pickle stream (one object per stream)."""

    def __init__(self, buf: Any, judge: Judge, out: Analysis, joblib: bool, depth: int) -> None:
        self.buf = buf
        self.judge = judge
        self.out = out
        self.rep = out.report
        self.joblib = joblib
        self.depth = depth
        self.limits = judge.limits
        self.proto = 0
        self.reported_limits: set[str] = set()
        # The VM's state, kept across the joblib array skips of one stream.
        self.stack: list = []
        self.marks: list = []
        self.memo: dict = {}
        self.alloc = 0

    # -- recording -------------------------------------------------------------

    def violation(self, kind: str, offset: int | None, opcode: str | None, rule: str, message: str,
                  name: str | None = None) -> Violation:
        v = Violation(kind, self.rep.part, offset, opcode, rule, message, name)
        self.rep.violations.append(v)
        return v

    def limit(self, which: str, offset: int, opcode: str, message: str) -> None:
        if which in self.reported_limits:
            return
        self.reported_limits.add(which)
        maximum = getattr(self.limits, which)
        self.violation("limit", offset, opcode, f"limits.{which}", f"{message} (limit {which} = {maximum})")

    def malformed(self, offset: int | None, opcode: str | None, rule: str, message: str) -> _Stop:
        v = Violation("malformed", self.rep.part, offset, opcode, rule, message)
        self.rep.malformed = v
        return _Stop()

    def site(self, offset: int, opcode: str, module: str, name: str) -> Site:
        verdict = self.judge.check(module, name, self.proto)
        s = Site(self.rep.part, offset, opcode, verdict.module, verdict.name, module, name,
                 allowed=verdict.allowed, rule=verdict.rule, message=verdict.message)
        self.rep.sites.append(s)
        if not verdict.allowed:
            self.violation("global", offset, opcode, verdict.rule, verdict.message,
                           f"{verdict.module}:{verdict.name}")
        return s

    # -- the walk ----------------------------------------------------------------

    def run(self, start: int) -> None:
        pos = start
        try:
            while True:
                pos = self._walk(pos)
                if pos < 0:
                    return
        except _Stop:
            return
        except MalformedPickle as e:
            self._decode_error(e)

    def _decode_error(self, e: MalformedPickle) -> None:
        off = e.offset
        opcode = e.opcode
        detail = e.detail
        if e.rule in ("truncated", "frame-truncated") and off is not None and off < len(self.buf):
            declared = self._declared_length(off)
            if declared is not None:
                n, left = declared
                detail = f"declared length {n} runs past the end of the data ({left} bytes left)"
                if n > self.limits.max_input_bytes:
                    self.limit("max_input_bytes", off, opcode or "?", f"declared length {n}")
        self.rep.malformed = Violation("malformed", self.rep.part, off, opcode, e.rule or "malformed", detail)

    def _declared_length(self, off: int) -> tuple[int, int] | None:
        """The length that the length-prefixed opcode at ``off`` declares,
        and the bytes left after its prefix."""
        op = BY_CODE.get(self.buf[off])
        if op is None:
            return None
        if op.name == "FRAME":
            width, signed = 8, False
        elif op.arg is not None and op.arg.prefixed:
            width, signed = op.arg.width, op.arg.name in ("string4", "long4")
        else:
            return None
        head = off + 1 + width
        if head > len(self.buf):
            return None
        n = int.from_bytes(self.buf[off + 1:head], "little", signed=signed)
        return n, len(self.buf) - head

    def _walk(self, pos: int) -> int:
        """Walk from ``pos``; returns -1 at STOP, or the position to resume
        decoding at after a joblib array was skipped."""
        buf = self.buf
        rep = self.rep
        out = self.out
        limits = self.limits
        max_depth = limits.max_depth
        max_memo = limits.max_memo
        max_container = limits.max_container
        max_alloc = limits.max_alloc_bytes
        max_ops = limits.max_ops
        max_input = limits.max_input_bytes
        stack = self.stack
        marks = self.marks
        memo = self.memo
        fence = marks[-1] if marks else 0
        alloc = self.alloc
        frame_end = -1
        ops = rep.opcodes
        encoding = self.judge.encoding
        classes = _CLASS
        push = stack.append
        try:
            it = iter_ops(buf, pos, lazy_bytes=True)
            if max_ops - ops < len(buf) - pos:  # the limit is within reach (an opcode is at least one byte)
                it = self._past_max_ops(it, max_ops - ops)
            # ``ops`` counts the opcodes walked (read in ``finally``)
            for ops, (offset, code, arg, end) in enumerate(it, ops + 1):  # noqa: B007, B020
                c = classes[code]
                if c <= _C_EMPTY:  # the frequent classes: one test skips them all for the others
                    if c == _C_NUMBER:  # the argument is the value
                        push(arg)
                    elif c == _C_PUT:  # MEMOIZE, BINPUT, LONG_BINPUT, PUT
                        if len(stack) <= fence:
                            raise self.malformed(offset, NAMES[code], "stack-underflow", "unpickling stack underflow")
                        idx = len(memo) if code == 0x94 else arg
                        if (idx >= max_memo or len(memo) >= max_memo) and idx not in memo:
                            self.limit("max_memo", offset, NAMES[code], f"memo index {idx}")
                        memo[idx] = stack[-1]
                    elif c == _C_TEXT:  # SHORT_BINUNICODE, BINUNICODE, BINUNICODE8, UNICODE
                        alloc += end - offset - _PAYLOAD_HEAD[code] if code != 0x56 else len(arg)
                        if alloc > max_alloc:
                            self.limit("max_alloc_bytes", offset, NAMES[code], f"{alloc} bytes of strings and bytes")
                        push(arg)
                    elif c == _C_TUPLE_N:  # TUPLE1, TUPLE2, TUPLE3
                        n = code - 0x84
                        if len(stack) - n < fence:
                            raise self.malformed(offset, NAMES[code], "stack-underflow", "unpickling stack underflow")
                        value = tuple(stack[-n:])
                        del stack[-n:]
                        push(value)
                    elif c == _C_CONST:  # EMPTY_TUPLE, NONE, NEWTRUE, NEWFALSE
                        push(_CONST[code])
                    elif c == _C_MARK:
                        if len(marks) >= max_depth:
                            self.limit("max_depth", offset, "MARK", f"more than {max_depth} nested MARKs")
                        fence = len(stack)
                        marks.append(fence)
                    elif c == _C_GET:  # BINGET, LONG_BINGET, GET
                        if arg not in memo:
                            raise self.malformed(offset, NAMES[code], "memo-missing",
                                                 f"Memo value not found at index {arg}")
                        push(memo[arg])
                    else:  # EMPTY_LIST, EMPTY_DICT, EMPTY_SET
                        push(ListValue() if code == 0x5D else DictValue() if code == 0x7D else Built("set"))
                elif c == _C_FILL_MARK:  # APPENDS, SETITEMS, ADDITEMS
                    if not marks:
                        raise self.malformed(offset, NAMES[code], "no-mark", "could not find MARK")
                    k = marks.pop()
                    fence = marks[-1] if marks else 0
                    if k <= fence:
                        raise self.malformed(offset, NAMES[code], "stack-underflow", "unpickling stack underflow")
                    target = stack[k - 1]
                    if code == 0x65 and type(target) is ListValue:  # APPENDS to a list: only the count matters
                        target.n += len(stack) - k
                        del stack[k:]
                        if target.n > max_container:
                            self.limit("max_container", offset, "APPENDS", f"{target.n} items in one list")
                    else:
                        items = stack[k:]
                        del stack[k:]
                        self._fill(offset, code, target, items)
                elif c == _C_COLLECT:  # TUPLE, LIST, DICT, FROZENSET, POP_MARK, OBJ: everything above the MARK
                    if not marks:
                        raise self.malformed(offset, NAMES[code], "no-mark", "could not find MARK")
                    k = marks.pop()
                    fence = marks[-1] if marks else 0
                    n = len(stack) - k
                    if n > max_container:
                        self.limit("max_container", offset, NAMES[code], f"{n} items in one container")
                    items = stack[k:]
                    del stack[k:]
                    if code != 0x31:
                        push(self._collect(offset, NAMES[code], code, items))
                elif c == _C_BYTES:  # SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8: ``arg`` is the length
                    n = arg
                    first = end - n
                    alloc += n
                    if alloc > max_alloc:
                        self.limit("max_alloc_bytes", offset, NAMES[code], f"{alloc} bytes of strings and bytes")
                    if n >= _BLOB_MIN and bytes(buf[first:first + 6]).startswith(BLOB_MAGICS):
                        out.blobs.append((first, n))
                    # Only the value's type and first bytes matter to the simulation (messages
                    # show 80 bytes at most): a large payload is never copied.
                    raw = buf[first:end] if n <= _PAYLOAD_KEEP else buf[first:first + _PAYLOAD_KEEP]
                    push(bytearray(raw) if code == 0x96 else bytes(raw))
                elif code == 0x93:  # STACK_GLOBAL
                    if len(stack) - 2 < fence:
                        raise self.malformed(offset, "STACK_GLOBAL", "stack-underflow", "unpickling stack underflow")
                    name = stack.pop()
                    module = stack.pop()
                    push(self._stack_global(offset, module, name))
                elif code == 0x52:  # REDUCE
                    if len(stack) - 2 < fence:
                        raise self.malformed(offset, "REDUCE", "stack-underflow", "unpickling stack underflow")
                    args = stack.pop()
                    stack[-1] = self._reduce(offset, stack[-1], args)
                elif code == 0x62:  # BUILD
                    if len(stack) - 2 < fence:
                        raise self.malformed(offset, "BUILD", "stack-underflow", "unpickling stack underflow")
                    state = stack.pop()
                    resume = self._build(offset, end, frame_end, stack[-1], state)
                    if resume is not None:
                        return resume
                elif code == 0x63:  # GLOBAL
                    push(GlobalValue(self.site(offset, "GLOBAL", arg[0], arg[1])))
                elif c == _C_FILL:  # APPEND, SETITEM
                    need = 2 if code == 0x61 else 3
                    if len(stack) - (need - 1) <= fence:
                        raise self.malformed(offset, NAMES[code], "stack-underflow", "unpickling stack underflow")
                    items = stack[-(need - 1):]
                    del stack[-(need - 1):]
                    self._fill(offset, code, stack[-1], items)
                elif code == 0x2E:  # STOP
                    if len(stack) <= fence:
                        raise self.malformed(offset, "STOP", "stack-underflow", "unpickling stack underflow")
                    value = stack.pop()
                    if type(value) is int:
                        out.result = value
                    rep.end = end
                    return -1
                elif code == 0x80:  # PROTO
                    if arg > 5:
                        raise self.malformed(offset, "PROTO", "bad-argument", f"unsupported pickle protocol: {arg}")
                    if rep.protocol is None:
                        rep.protocol = arg
                    self.proto = arg
                elif code == 0x95:  # FRAME
                    if arg > max_input:
                        self.limit("max_input_bytes", offset, "FRAME", f"frame of {arg} bytes")
                    frame_end = end + arg
                elif code == 0x81 or code == 0x92:  # NEWOBJ, NEWOBJ_EX
                    n = 2 if code == 0x81 else 3
                    if len(stack) - n < fence:
                        raise self.malformed(offset, NAMES[code], "stack-underflow", "unpickling stack underflow")
                    kwargs = stack.pop() if code == 0x92 else None
                    args = stack.pop()
                    cls = stack.pop()
                    push(self._newobj(offset, NAMES[code], cls, args, kwargs))
                elif c == _C_PY2STR:  # BINSTRING, SHORT_BINSTRING, STRING: decoded as the VM does
                    n = len(arg)
                    alloc += n
                    if alloc > max_alloc:
                        self.limit("max_alloc_bytes", offset, NAMES[code], f"{alloc} bytes of strings and bytes")
                    if n >= _BLOB_MIN and code != 0x53 and bytes(arg[:6]).startswith(BLOB_MAGICS):
                        out.blobs.append((end - n, n))
                    if encoding != "bytes":
                        try:
                            arg = arg.decode(encoding, self.judge.errors)
                        except (UnicodeDecodeError, LookupError) as e:
                            raise self.malformed(offset, NAMES[code], "bad-argument",
                                                 f"py2 string could not be decoded with encoding={encoding!r}: "
                                                 f"{e}") from None
                    push(arg)
                elif code == 0x8B:  # LONG4
                    alloc += end - offset
                    if alloc > max_alloc:
                        self.limit("max_alloc_bytes", offset, "LONG4", f"{alloc} bytes of strings and bytes")
                    push(arg)
                elif code == 0x30:  # POP
                    if marks and marks[-1] == len(stack):
                        marks.pop()
                        fence = marks[-1] if marks else 0
                    elif len(stack) <= fence:
                        raise self.malformed(offset, "POP", "stack-underflow", "unpickling stack underflow")
                    else:
                        stack.pop()
                elif code == 0x32:  # DUP
                    if len(stack) <= fence:
                        raise self.malformed(offset, "DUP", "stack-underflow", "unpickling stack underflow")
                    push(stack[-1])
                elif code == 0x69:  # INST
                    if not marks:
                        raise self.malformed(offset, "INST", "no-mark", "could not find MARK")
                    k = marks.pop()
                    fence = marks[-1] if marks else 0
                    args = tuple(stack[k:])
                    del stack[k:]
                    s = self.site(offset, "INST", arg[0], arg[1])
                    s.uses.append(("constructed", offset))
                    push(Made(s, s, args))
                elif code == 0x82 or code == 0x83 or code == 0x84:  # EXT1, EXT2, EXT4
                    push(self._extension(offset, NAMES[code], arg))
                elif code == 0x51 or code == 0x50:  # BINPERSID, PERSID
                    if code == 0x51:
                        if len(stack) <= fence:
                            raise self.malformed(offset, "BINPERSID", "stack-underflow", "unpickling stack underflow")
                        pid = stack.pop()
                    else:
                        pid = arg
                    push(self._persistent(offset, NAMES[code], pid))
                elif code == 0x97:  # NEXT_BUFFER
                    rep.buffers.append(offset)
                    push(Opaque("out-of-band buffer"))
                elif code == 0x98:  # READONLY_BUFFER
                    if len(stack) <= fence:
                        raise self.malformed(offset, "READONLY_BUFFER", "stack-underflow",
                                             "unpickling stack underflow")
                    top = stack[-1]
                    if type(top) is bytearray:
                        stack[-1] = Built("memoryview")
                    elif vm_built(top) and type(top) is not bytes \
                            and not (type(top) is Built and top.kind == "memoryview"):
                        raise self.malformed(offset, "READONLY_BUFFER", "bad-argument",
                                             f"READONLY_BUFFER on a {describe(top)}, not a buffer")
                else:  # the decoder yields only the table's opcodes; one it does not know here is a bug
                    raise self.malformed(offset, NAMES[code], "internal",
                                         f"the scanner does not handle {NAMES[code]}")
            return -1  # not reached: the decoder ends with STOP or raises
        finally:
            rep.opcodes = ops
            self.alloc = alloc

    def _past_max_ops(self, it: Any, budget: int) -> Any:
        """The opcodes of ``it``; the first one past the ``budget`` left under
        ``max_ops`` is reported (the walk counts them, never checks them)."""
        yield from islice(it, max(budget, 0))
        for op in it:
            self.limit("max_ops", op[0], NAMES[op[1]], f"more than {self.limits.max_ops} opcodes")
            yield op
            yield from it

    # -- opcodes with more to say ---------------------------------------------------

    def _stack_global(self, offset: int, module: Any, name: Any) -> Any:
        if type(module) is str and type(name) is str:
            return GlobalValue(self.site(offset, "STACK_GLOBAL", module, name))
        if (vm_built(module) and type(module) is not str) or (vm_built(name) and type(name) is not str):
            raise self.malformed(offset, "STACK_GLOBAL", "bad-argument", "STACK_GLOBAL requires str module and name")
        s = Site(self.rep.part, offset, "STACK_GLOBAL", None, None,
                 module if type(module) is str else None, name if type(name) is str else None,
                 rule="dynamic-global", message="module or name computed at load time")
        self.rep.sites.append(s)
        self.violation("dynamic-global", offset, "STACK_GLOBAL", "dynamic-global",
                       f"STACK_GLOBAL takes its module and name from values computed at load time "
                       f"(module {describe(module)}, name {describe(name)}): scan cannot tell which global "
                       "the load would resolve")
        return GlobalValue(s)

    def _extension(self, offset: int, opcode: str, code: int) -> Any:
        if code <= 0:
            raise self.malformed(offset, opcode, "bad-argument", f"EXT specifies code {code} <= 0")
        mapped = self.judge.extension(code)
        if isinstance(mapped, ForbiddenGlobal):
            self.rep.extensions.append(Extension(self.rep.part, offset, code, None))
            self.violation("extension", offset, opcode, mapped.rule or "extension",
                           f"extension code {code} refused: {mapped.detail}")
            raise _Stop()  # the VM stops here
        module, name = mapped
        s = self.site(offset, opcode, module, name)
        self.rep.extensions.append(Extension(self.rep.part, offset, code, s.qualified))
        return GlobalValue(s)

    def _persistent(self, offset: int, opcode: str, pid: Any) -> Any:
        shown = describe(pid)
        self.rep.persistent_ids.append(PersistentId(self.rep.part, offset, opcode, shown))
        if not self.judge.runtime.persistent_ids:
            self.violation("persistent-id", offset, opcode, "persistent-id",
                           f"persistent id {shown} refused: policy {self.judge.policy_name!r} does not enable "
                           "persistent ids")
        return Made(None, None, (pid,))

    def _refuse_use(self, offset: int, opcode: str, rule: str, target: Any, what: str) -> None:
        if type(target) is GlobalValue:
            name = target.site.qualified
            msg = f"{what} on the global {name} itself: the VM only acts on objects an allowed call produced"
        else:
            name = None
            msg = f"{what} on {describe(target)}, an object the VM built itself: never allowed"
        self.violation("use", offset, opcode, rule, msg, name)

    def _reduce(self, offset: int, func: Any, args: Any) -> Any:
        if vm_built(args) and type(args) is not tuple:
            raise self.malformed(offset, "REDUCE", "bad-argument",
                                 f"REDUCE arguments must be a tuple, not {describe(args)}")
        if type(func) is GlobalValue:
            s = func.site
            s.uses.append(("called", offset))
            cls = s
            if s.module == "copyreg" and s.qualified in _CALL_WRAPPERS and type(args) is tuple and args \
                    and type(args[0]) is GlobalValue:
                cls = args[0].site
                cls.uses.append(("constructed", offset))
            return Made(s, cls, args)
        if vm_built(func):
            self._refuse_use(offset, "REDUCE", "call-target", func, "REDUCE")
        return Made(None, None, args)

    def _newobj(self, offset: int, opcode: str, cls: Any, args: Any, kwargs: Any) -> Any:
        if vm_built(cls):
            raise self.malformed(offset, opcode, "bad-argument",
                                 f"{opcode} class argument must be a type, not {describe(cls)}")
        if vm_built(args) and type(args) is not tuple:
            raise self.malformed(offset, opcode, "bad-argument",
                                 f"{opcode} args argument must be a tuple, not {describe(args)}")
        if kwargs is not None and vm_built(kwargs) and type(kwargs) is not DictValue:
            raise self.malformed(offset, opcode, "bad-argument",
                                 f"{opcode} kwargs argument must be a dict, not {describe(kwargs)}")
        if type(cls) is GlobalValue:
            cls.site.uses.append(("constructed", offset))
            return Made(cls.site, cls.site, args)
        return Made(None, None, args)

    def _collect(self, offset: int, opcode: str, code: int, items: list) -> Any:
        """TUPLE, LIST, DICT, FROZENSET, OBJ: the value built from ``items``."""
        if code == 0x74:
            return tuple(items)
        if code == 0x6C:
            return ListValue(len(items))
        if code == 0x64:
            if len(items) & 1:
                raise self.malformed(offset, opcode, "bad-stack", "odd number of items for DICT")
            self._check_keys(offset, opcode, items[::2])
            d = DictValue()
            d.put_pairs(items)
            return d
        if code == 0x91:
            self._check_keys(offset, opcode, items)
            return Built("frozenset")
        # OBJ: the class just above the mark, then its arguments
        if not items:
            raise self.malformed(offset, opcode, "stack-underflow", "unpickling stack underflow")
        cls = items[0]
        if type(cls) is GlobalValue:
            cls.site.uses.append(("constructed", offset))
            return Made(cls.site, cls.site, tuple(items[1:]))
        if vm_built(cls):
            self._refuse_use(offset, opcode, "call-target", cls, "OBJ")
        return Made(None, None, tuple(items[1:]))

    def _check_keys(self, offset: int, opcode: str, keys: list) -> None:
        """Refuse, as the VM would, keys or set items it could not hash."""
        for key in keys:
            if type(key) not in _PLAIN_KEYS:
                self._check_key(offset, opcode, key)

    def _check_key(self, offset: int, opcode: str, key: Any) -> None:
        problem = key_problem(key, self.limits.max_depth)
        if problem == "unhashable":
            raise self.malformed(offset, opcode, "bad-argument", f"unhashable key or set item: {describe(key)}")
        if problem == "deep":
            self.limit("max_depth", offset, opcode, "a key made of tuples nested deeper than max_depth")

    def _fill(self, offset: int, code: int, target: Any, items: list) -> None:
        """APPEND(S), SETITEM(S), ADDITEMS (by opcode byte) into ``target``."""
        n = len(items)
        t = type(target)
        opcode = NAMES[code]
        max_container = self.limits.max_container
        if code == 0x61 or code == 0x65:  # APPEND, APPENDS
            if t is ListValue:
                target.n += n
                if target.n > max_container:
                    self.limit("max_container", offset, opcode, f"{target.n} items in one list")
            elif n or code == 0x61:
                self._use_on(offset, opcode, "append-target", target, "APPEND")
            return
        if code == 0x73 or code == 0x75:  # SETITEM, SETITEMS
            if n & 1:
                raise self.malformed(offset, opcode, "bad-stack", "odd number of items for SETITEMS")
            if t is DictValue:
                if n // 2 > max_container:
                    self.limit("max_container", offset, opcode, f"{n // 2} items in one dict")
                self._check_keys(offset, opcode, items[::2])
                target.put_pairs(items)
            elif n:
                self._use_on(offset, opcode, "setitem-target", target, "SETITEM")
            return
        # ADDITEMS
        if t is Built and target.kind == "set":
            if n > max_container:
                self.limit("max_container", offset, opcode, f"{n} items in one set")
            self._check_keys(offset, opcode, items)
        elif n:
            self._use_on(offset, opcode, "additems-target", target, "ADDITEMS")

    def _use_on(self, offset: int, opcode: str, rule: str, target: Any, what: str) -> None:
        if vm_built(target) or type(target) is GlobalValue:
            self._refuse_use(offset, opcode, rule, target, what)
        elif type(target) is Made and target.cls is not None:
            target.cls.uses.append(("filled", offset))

    def _build(self, offset: int, end: int, frame_end: int, target: Any, state: Any) -> int | None:
        """BUILD: record the use; in joblib mode, skip the array that follows
        a ``NumpyArrayWrapper`` and return where decoding resumes."""
        if vm_built(target) or type(target) is GlobalValue:
            self._refuse_use(offset, "BUILD", "build-target", target, "BUILD")
            return None
        if type(target) is not Made:
            return None
        target.state = state
        if target.cls is None:
            return None
        target.cls.uses.append(("built", offset))
        if not _is_joblib_wrapper(target.cls):
            return None
        self.out.joblib_wrappers += 1
        if not self.joblib:
            return None
        if frame_end > end:
            self.violation("container", offset, "BUILD", "joblib-array-in-frame",
                           "a joblib array wrapper inside a pickle frame: joblib would read the array from "
                           "after the frame, which the scanner does not follow")
            raise _Stop()
        return self._skip_joblib_array(offset, end, state)

    def _skip_joblib_array(self, offset: int, end: int, state: Any) -> int:
        """Where joblib's ``NumpyArrayWrapper.read`` leaves the file."""
        info = _joblib_array(state)
        if isinstance(info, str):
            self.violation("container", offset, "BUILD", "joblib-array",
                           f"joblib array at offset {offset}: {info}; the rest of the stream cannot be followed")
            raise _Stop()
        nbytes, has_object, aligned = info
        self.stack[-1] = Opaque("array read by joblib")
        pos = end
        if has_object:
            if self.depth >= 8:
                self.violation("container", offset, "BUILD", "joblib-nesting",
                               "joblib object arrays nested more than 8 deep")
                raise _Stop()
            nested = analyze(self.buf, pos, self.judge, part=self.rep.part, view="joblib object array",
                             _depth=self.depth + 1)
            self.out.nested.append(nested)
            if not nested.report.complete:
                raise self.malformed(pos, None, "joblib-array", "the pickle of a joblib object array is broken")
            return nested.report.end
        if aligned:
            if pos >= len(self.buf):
                raise self.malformed(pos, None, "truncated", "joblib array padding runs past the end of the data")
            pos += 1 + self.buf[pos]
        if pos + nbytes > len(self.buf):
            raise self.malformed(pos, None, "truncated",
                                 f"joblib array of {nbytes} bytes runs past the end of the data")
        self.rep.notes.append(f"joblib array data: {nbytes} bytes at offset {pos}")
        return pos + nbytes


_DTYPE_STR = re.compile(r"([biufcmMOSUV])([0-9]*)\Z")
_FIXED_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8, 16), "c": (8, 16, 32),
                "m": (8,), "M": (8,), "O": (8,)}


def _joblib_array(state: Any) -> tuple[int, bool, bool] | str:
    """(bytes of array data, object dtype?, alignment padding?) from the BUILD
    state of a joblib ``NumpyArrayWrapper``, or why it cannot be told."""
    if type(state) is not DictValue:
        return "its BUILD state is not a plain dict"
    items = state.items
    shape = items.get("shape")
    if type(shape) is not tuple or not all(type(x) is int and x >= 0 for x in shape):
        return "its shape is not a tuple of non-negative ints"
    dtype = items.get("dtype")
    if type(dtype) is not Made or dtype.site is None or dtype.site.name != "dtype" \
            or not (dtype.site.module or "").startswith("numpy"):
        return "its dtype is not a numpy dtype built in the stream"
    args = dtype.args
    if type(args) is not tuple or not args or type(args[0]) is not str:
        return "its dtype arguments are not known"
    m = _DTYPE_STR.match(args[0])
    if not m:
        return f"dtype {args[0]!r} is not understood"
    kind, digits = m.group(1), m.group(2)
    size = int(digits) if digits else 0
    dstate = dtype.state
    elsize = -1
    flags = 0
    if dstate is not None:
        if type(dstate) is not tuple or len(dstate) < 8 or type(dstate[5]) is not int or type(dstate[7]) is not int:
            return "its dtype state is not understood"
        elsize, flags = dstate[5], dstate[7]
    has_object = kind == "O" or bool(flags & 1)
    if kind in _FIXED_SIZES:
        if size not in _FIXED_SIZES[kind] or elsize not in (-1, size):
            return f"dtype {args[0]!r} has an unexpected size"
        itemsize = size
    elif elsize > 0:
        itemsize = elsize
    elif kind == "U":
        itemsize = 4 * size
    else:
        itemsize = size
    if itemsize <= 0 and not has_object:
        return f"dtype {args[0]!r} has no size"
    count = 1
    for x in shape:
        count *= x
    aligned = items.get("numpy_array_alignment_bytes") is not None
    return count * itemsize, has_object, aligned
