"""The static decoder: what one pickle stream would ask of the VM, without running it.

:func:`analyze` decodes the opcodes as :func:`safepickle.codec.decode` does
(the same readers and framing rule as the VM; like the VM it reads the
frequent argument kinds in place, in the same loop) and simulates the VM's
stack, mark stack, fence and memo exactly as ``safepickle/vm/engine.py`` does, with
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
from struct import Struct
from typing import Any

try:
    import cython
except ImportError:  # Cython is only a build requirement: interpreted, the annotations do nothing
    from ..vm._cython_shim import cython

from ..codec.decode import as_buffer, read_argument
from ..codec.opcodes import BY_CODE, NAMES
from ..errors import ForbiddenGlobal, MalformedPickle
from ..vm import costs
from .report import Extension, PersistentId, PickleReport, Site, Violation

if cython.compiled:
    # The compiled build (setup.py builds this file as safepickle.scan._static_c)
    # keeps the values of the compiled values.py (the two are chosen together,
    # see _scanner_select), and reads floats and strings with the C functions
    # that ``struct`` and ``str`` use.
    from cython.cimports.cpython.float import PyFloat_Unpack8
    from cython.cimports.cpython.unicode import PyUnicode_DecodeUTF8
    from cython.cimports.libc.string import memchr

    from ._values_c import Built, DictValue, GlobalValue, ListValue, Made, Opaque, describe, key_problem, vm_built
else:
    from .values import Built, DictValue, GlobalValue, ListValue, Made, Opaque, describe, key_problem, vm_built

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
# Values that are always usable as a dict key or set item (``key_problem`` is None).
_PLAIN_KEYS = frozenset({str, int, float, bool, bytes, type(None)})
_MISSING = object()

# What a load charges against max_alloc_bytes, charged as the VM charges it
# (``safepickle/vm/costs.py``): containers by their empty size, a reference or
# a container entry by its share, and every CHECK_EVERY opcodes the references
# that the stack and the memo hold.
_REF_COST = cython.declare(cython.longlong, costs.REF)
_ENTRY_COST = cython.declare(cython.longlong, costs.ENTRY)
_LIST_COST = cython.declare(cython.longlong, costs.LIST)
_DICT_COST = cython.declare(cython.longlong, costs.DICT)
_SET_COST = cython.declare(cython.longlong, costs.SET)
CHECK_EVERY = cython.declare(cython.longlong, costs.CHECK_EVERY)

# In-place readings of the fixed-width arguments (the layouts the codec's
# argument kinds document); the compiled build reads the 4-byte ones itself.
_U4 = Struct("<I").unpack_from
_I4 = Struct("<i").unpack_from
_U8 = Struct("<Q").unpack_from
_F8 = Struct(">d").unpack_from


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _le32(p: cython.p_const_uchar) -> cython.longlong:
    """Compiled build only: the little-endian unsigned 32-bit integer at ``p``
    (what ``_U4`` reads); the caller has checked that the 4 bytes are there."""
    return (p[0] | (cython.cast(cython.longlong, p[1]) << 8) | (cython.cast(cython.longlong, p[2]) << 16)
            | (cython.cast(cython.longlong, p[3]) << 24))


@cython.cfunc
def _newline(view: cython.const[cython.uchar][::1], start: cython.longlong,
             stop: cython.longlong) -> cython.longlong:
    """Compiled build only: the offset of the first newline in
    ``view[start:stop]``, or -1."""
    if start >= stop:
        return -1
    p: cython.p_const_uchar = cython.address(view[start])
    q: cython.p_const_uchar = cython.cast(cython.p_const_uchar, memchr(p, 10, stop - start))
    return -1 if q == cython.NULL else start + (q - p)


@cython.cfunc
def _global_names(view: cython.const[cython.uchar][::1], pos: cython.longlong, limit: cython.longlong) -> Any:
    """Compiled build only: ``(module, name, end)`` of the GLOBAL at ``pos``
    read in place (two newline-ended UTF-8 lines inside ``limit``), or None
    when the shared reader must read it (and say why it refuses it)."""
    mid: cython.longlong = _newline(view, pos + 1, limit)
    if mid < 0:
        return None
    stop: cython.longlong = _newline(view, mid + 1, limit)
    if stop < 0:
        return None
    try:
        module = PyUnicode_DecodeUTF8(cython.cast(cython.p_const_char, cython.address(view[pos + 1])),
                                      mid - pos - 1, cython.NULL) if mid > pos + 1 else ""
        name = PyUnicode_DecodeUTF8(cython.cast(cython.p_const_char, cython.address(view[mid + 1])),
                                    stop - mid - 1, cython.NULL) if stop > mid + 1 else ""
    except UnicodeDecodeError:
        return None
    return module, name, stop + 1


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


class Analysis:
    """What :func:`analyze` returns: the report of the stream, and what the
    container layer needs to go on (the value STOP returned when it is an int,
    bytes values that look like pickles or containers, whether a joblib array
    wrapper was seen, the pickles nested in joblib object arrays)."""

    __slots__ = ("report", "result", "blobs", "joblib_wrappers", "nested")

    def __init__(self, report: PickleReport) -> None:
        self.report = report
        self.result: Any = None
        self.blobs: list[tuple[int, int]] = []  # (start, length) within the buffer
        self.joblib_wrappers = 0
        self.nested: list[Analysis] = []


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
    buf = data if type(data) is bytes else as_buffer(data)
    # (all fields positional: a quarter of a small file's scan went to building reports)
    rep = PickleReport(part, start, None, None, 0, primary, view, [], [], [], [], [], [], None, 0)
    out = Analysis(rep)
    _Walker(buf, judge, out, joblib, _depth).run(start)
    return out


@cython.cclass
class _Walker:
    """The simulation of one pickle stream (one object per stream).

    Compiled, an extension type: its state is typed fields, and its helpers
    (``cfunc``) are C calls from the walk, not attribute lookups."""

    buf = cython.declare(object)
    judge = cython.declare(object)
    out = cython.declare(object)
    rep = cython.declare(object)
    joblib = cython.declare(cython.bint)
    depth = cython.declare(cython.int)
    limits = cython.declare(object)
    proto = cython.declare(cython.int)
    reported_limits = cython.declare(set)
    stack = cython.declare(list)
    marks = cython.declare(list)
    memo = cython.declare(dict)
    alloc = cython.declare(cython.longlong)

    def __init__(self, buf: Any, judge: Judge, out: Analysis, joblib: bool, depth: int) -> None:
        self.buf = buf
        self.judge = judge
        self.out = out
        self.rep = out.report
        self.joblib = joblib
        self.depth = depth
        self.limits = judge.limits
        self.proto = 0
        self.reported_limits = set()
        # The VM's state, kept across the joblib array skips of one stream.
        self.stack = []
        self.marks = []
        self.memo = {}
        self.alloc = 0

    # -- recording -------------------------------------------------------------

    @cython.cfunc
    def violation(self, kind: str, offset: int | None, opcode: str | None, rule: str, message: str,
                  name: str | None = None):
        v = Violation(kind, self.rep.part, offset, opcode, rule, message, name)
        self.rep.violations.append(v)
        return v

    @cython.cfunc
    def limit(self, which: str, offset: int, opcode: str, message: str):
        if which in self.reported_limits:
            return
        self.reported_limits.add(which)
        maximum = getattr(self.limits, which)
        self.violation("limit", offset, opcode, f"limits.{which}", f"{message} (limit {which} = {maximum})")

    @cython.cfunc
    def malformed(self, offset: int | None, opcode: str | None, rule: str, message: str):
        v = Violation("malformed", self.rep.part, offset, opcode, rule, message)
        self.rep.malformed = v
        return _Stop()

    @cython.cfunc
    def site(self, offset: int, opcode: str, module: str, name: str):
        verdict = self.judge.check(module, name, self.proto)
        s = Site(self.rep.part, offset, opcode, verdict.module, verdict.name, module, name, [],
                 verdict.allowed, verdict.rule, verdict.message)
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

    @cython.cfunc
    def _decode_error(self, e: MalformedPickle):
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

    @cython.cfunc
    def _declared_length(self, off: int):
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

    @cython.locals(
        pos=cython.longlong, end=cython.longlong, limit=cython.longlong, frame_end=cython.longlong,
        stop=cython.longlong, first=cython.longlong, n=cython.longlong, k=cython.longlong,
        fence=cython.longlong, code=cython.int, offset=cython.longlong, ops=cython.longlong, alloc=cython.longlong,
        report_ops_at=cython.longlong, check_at=cython.longlong, refs=cython.longlong,
        max_depth=cython.longlong, max_memo=cython.longlong,
        max_container=cython.longlong, max_alloc=cython.longlong, stack=list, marks=list, memo=dict,
    )
    def _walk(self, pos: int) -> int:
        """Walk from ``pos``; returns -1 at STOP, or the position to resume
        decoding at after a joblib array was skipped.

        Decodes as :func:`~safepickle.codec.decode.iter_ops` does (the same
        framing rule; the frequent argument kinds read in place, every other
        one, and every in-place reading that fails, by the codec's shared
        reader, :func:`~safepickle.codec.decode.read_argument`), in the same
        loop as the simulation: a generator's cost per opcode was most of a
        small file's scan.
        """
        buf = self.buf
        view: cython.const[cython.uchar][::1] = buf  # compiled: a typed view of the same bytes
        rep = self.rep
        out = self.out
        limits = self.limits
        max_depth = limits.max_depth
        max_memo = limits.max_memo
        max_container = limits.max_container
        max_alloc = limits.max_alloc_bytes
        max_input = limits.max_input_bytes
        stack = self.stack
        marks = self.marks
        memo = self.memo
        fence = marks[-1] if marks else 0
        alloc = self.alloc
        ops = rep.opcodes
        # The first opcode past max_ops is reported (once: ``ops`` grows by one).
        report_ops_at = limits.max_ops + 1
        check_at = ops + CHECK_EVERY
        end = len(buf)
        limit = end  # no opcode may end past this: the current frame's end, or the data's
        frame_end = -1
        # UTF-8 text from a slice (interpreted build): bytes.decode is the quicker call.
        text = bytes.decode if type(buf) is bytes else str
        try:
            while True:
                ops += 1  # taken back below when the opcode cannot be decoded
                if pos >= limit:  # one test per opcode for the frame's end and the data's
                    if pos == frame_end:
                        frame_end = -1
                        limit = end
                    if pos >= end:
                        raise MalformedPickle("pickle data was truncated before STOP", offset=pos, rule="truncated")
                offset = pos
                code = view[pos]
                if ops > check_at:  # as the VM does, every CHECK_EVERY opcodes
                    check_at = ops + CHECK_EVERY
                    refs = _REF_COST * (len(stack) + len(memo))
                    if alloc + refs > max_alloc:
                        self._over_alloc(offset, code, alloc + refs)
                        if refs > max_alloc:  # the simulation's own stack would pass the limit too: stop
                            raise _Stop()
                if ops == report_ops_at:  # as the VM does: before the argument is read
                    self.limit("max_ops", pos, NAMES[code], f"more than {limits.max_ops} opcodes")
                # -- the frequent opcodes, their arguments read in place ------------------------
                if code == 0x8C or code == 0x58:  # SHORT_BINUNICODE, BINUNICODE
                    first = pos + (2 if code == 0x8C else 5)
                    n = -1
                    if first <= limit:
                        if code == 0x8C:
                            n = view[pos + 1]
                        elif cython.compiled:
                            n = _le32(cython.address(view[pos + 1]))
                        else:
                            n = _U4(buf, pos + 1)[0]
                    stop = first + n
                    if n < 0 or stop > limit:
                        arg, stop = read_argument(buf, code, pos, end, limit)
                    else:
                        try:
                            if cython.compiled:
                                arg = PyUnicode_DecodeUTF8(cython.cast(cython.p_const_char, cython.address(
                                    view[first])), n, "surrogatepass") if n else ""
                            else:
                                arg = text(buf[first:stop], "utf-8", "surrogatepass")
                        except UnicodeDecodeError:
                            arg, stop = read_argument(buf, code, pos, end, limit)  # refuses, in the reader's words
                    alloc += stop - first
                    if alloc > max_alloc:
                        self._over_alloc(offset, code, alloc)
                    stack.append(arg)
                    pos = stop
                elif code == 0x94:  # MEMOIZE
                    if len(stack) <= fence:
                        raise self.malformed(offset, "MEMOIZE", "stack-underflow", "unpickling stack underflow")
                    n = len(memo)
                    if n >= max_memo and n not in memo:
                        self.limit("max_memo", offset, "MEMOIZE", f"memo index {n}")
                    memo[n] = stack[-1]
                    pos += 1
                elif code == 0x71 or code == 0x72 or code == 0x68 or code == 0x6A:
                    # BINPUT, LONG_BINPUT, BINGET, LONG_BINGET: a 1- or 4-byte memo index
                    stop = pos + (2 if code == 0x71 or code == 0x68 else 5)
                    if stop > limit:
                        arg, stop = read_argument(buf, code, pos, end, limit)
                    elif stop == pos + 2:
                        arg = view[pos + 1]
                    elif cython.compiled:
                        arg = _le32(cython.address(view[pos + 1]))
                    else:
                        arg = _U4(buf, pos + 1)[0]
                    if code == 0x71 or code == 0x72:
                        if len(stack) <= fence:
                            raise self.malformed(offset, NAMES[code], "stack-underflow", "unpickling stack underflow")
                        if (arg >= max_memo or len(memo) >= max_memo) and arg not in memo:
                            self.limit("max_memo", offset, NAMES[code], f"memo index {arg}")
                        memo[arg] = stack[-1]
                    else:
                        value = memo.get(arg, _MISSING)
                        if value is _MISSING:
                            raise self.malformed(offset, NAMES[code], "memo-missing",
                                                 f"Memo value not found at index {arg}")
                        stack.append(value)
                    pos = stop
                elif code == 0x4B or code == 0x4A or code == 0x4D or code == 0x47:
                    # BININT1, BININT, BININT2, BINFLOAT: the argument is the value
                    stop = pos + (2 if code == 0x4B else 3 if code == 0x4D else 5 if code == 0x4A else 9)
                    if stop > limit:
                        arg, stop = read_argument(buf, code, pos, end, limit)
                    elif code == 0x4B:
                        arg = view[pos + 1]
                    elif code == 0x4D:
                        arg = view[pos + 1] | (view[pos + 2] << 8)
                    elif code == 0x4A:
                        if cython.compiled:
                            n = _le32(cython.address(view[pos + 1]))
                            arg = n - 0x100000000 if n >= 0x80000000 else n
                        else:
                            arg = _I4(buf, pos + 1)[0]
                    elif cython.compiled:
                        arg = PyFloat_Unpack8(cython.cast(cython.p_const_uchar, cython.address(view[pos + 1])), 0)
                    else:
                        arg = _F8(buf, pos + 1)[0]
                    stack.append(arg)
                    pos = stop
                elif code == 0x28:  # MARK
                    if len(marks) >= max_depth:
                        self.limit("max_depth", offset, "MARK", f"more than {max_depth} nested MARKs")
                    fence = len(stack)
                    marks.append(fence)
                    pos += 1
                elif code == 0x85 or code == 0x86 or code == 0x87:  # TUPLE1, TUPLE2, TUPLE3
                    n = code - 0x84
                    if len(stack) - n < fence:
                        raise self.malformed(offset, NAMES[code], "stack-underflow", "unpickling stack underflow")
                    value = tuple(stack[len(stack) - n:])
                    del stack[len(stack) - n:]
                    stack.append(value)
                    pos += 1
                elif code == 0x29:  # EMPTY_TUPLE
                    stack.append(())
                    pos += 1
                elif code == 0x4E:  # NONE
                    stack.append(None)
                    pos += 1
                elif code == 0x88 or code == 0x89:  # NEWTRUE, NEWFALSE
                    stack.append(code == 0x88)
                    pos += 1
                elif code == 0x5D or code == 0x7D or code == 0x8F:  # EMPTY_LIST, EMPTY_DICT, EMPTY_SET
                    alloc += _LIST_COST if code == 0x5D else _DICT_COST if code == 0x7D else _SET_COST
                    if alloc > max_alloc:
                        self._over_alloc(offset, code, alloc)
                    stack.append(ListValue() if code == 0x5D else DictValue() if code == 0x7D else Built("set"))
                    pos += 1
                elif code == 0x43 or code == 0x42 or code == 0x8E or code == 0x96:
                    # SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8: only the length is read
                    first = pos + (2 if code == 0x43 else 5 if code == 0x42 else 9)
                    if first > limit:
                        arg, stop = read_argument(buf, code, pos, end, limit)  # refuses: no room for the length
                    if code == 0x43:
                        size = view[pos + 1]
                    elif code == 0x42:
                        size = _le32(cython.address(view[pos + 1])) if cython.compiled else _U4(buf, pos + 1)[0]
                    else:
                        size = _U8(buf, pos + 1)[0]  # may be any 64-bit number: compared before it is typed
                    if size > limit - first:
                        arg, stop = read_argument(buf, code, pos, end, limit)  # refuses: truncated or straddles
                    n = size
                    stop = first + n
                    alloc += n
                    if alloc > max_alloc:
                        self._over_alloc(offset, code, alloc)
                    if n >= _BLOB_MIN and bytes(buf[first:first + 6]).startswith(BLOB_MAGICS):
                        out.blobs.append((first, n))
                    # Only the value's type and first bytes matter to the simulation (messages
                    # show 80 bytes at most): a large payload is never copied.
                    raw = buf[first:stop] if n <= _PAYLOAD_KEEP else buf[first:first + _PAYLOAD_KEEP]
                    stack.append(bytearray(raw) if code == 0x96 else bytes(raw))
                    pos = stop
                elif code == 0x65 or code == 0x75 or code == 0x90:  # APPENDS, SETITEMS, ADDITEMS
                    if not marks:
                        raise self.malformed(offset, NAMES[code], "no-mark", "could not find MARK")
                    k = marks.pop()
                    fence = marks[-1] if marks else 0
                    if k <= fence:
                        raise self.malformed(offset, NAMES[code], "stack-underflow", "unpickling stack underflow")
                    target = stack[k - 1]
                    n = len(stack) - k
                    # charged as the VM charges them: appended references, dict entries, a set's items
                    if code == 0x65:
                        alloc += _REF_COST * n if type(target) is ListValue else 0
                    elif code == 0x75:
                        alloc += _ENTRY_COST * n if type(target) is DictValue else 0
                    else:
                        alloc += _LIST_COST + _ENTRY_COST * n
                    if alloc > max_alloc:
                        self._over_alloc(offset, code, alloc)
                    if code == 0x65 and type(target) is ListValue:  # APPENDS to a list: only the count matters
                        target.n += n
                        del stack[k:]
                        if target.n > max_container:
                            self.limit("max_container", offset, "APPENDS", f"{target.n} items in one list")
                    else:
                        items = stack[k:]
                        del stack[k:]
                        self._fill(offset, code, target, items)
                    pos += 1
                elif code == 0x61 or code == 0x73:  # APPEND, SETITEM
                    n = 1 if code == 0x61 else 2
                    if len(stack) - n <= fence:
                        raise self.malformed(offset, NAMES[code], "stack-underflow", "unpickling stack underflow")
                    items = stack[len(stack) - n:]
                    del stack[len(stack) - n:]
                    self._fill(offset, code, stack[-1], items)
                    pos += 1
                elif code == 0x74 or code == 0x6C or code == 0x64 or code == 0x91 or code == 0x31 or code == 0x6F:
                    # TUPLE, LIST, DICT, FROZENSET, POP_MARK, OBJ: everything above the MARK
                    if not marks:
                        raise self.malformed(offset, NAMES[code], "no-mark", "could not find MARK")
                    k = marks.pop()
                    fence = marks[-1] if marks else 0
                    n = len(stack) - k
                    if n > max_container:
                        self.limit("max_container", offset, NAMES[code], f"{n} items in one container")
                    alloc += _LIST_COST + _ENTRY_COST * n
                    if alloc > max_alloc:
                        self._over_alloc(offset, code, alloc)
                    items = stack[k:]
                    del stack[k:]
                    if code != 0x31:
                        stack.append(self._collect(offset, NAMES[code], code, items))
                    pos += 1
                elif code == 0x93:  # STACK_GLOBAL
                    if len(stack) - 2 < fence:
                        raise self.malformed(offset, "STACK_GLOBAL", "stack-underflow", "unpickling stack underflow")
                    name = stack.pop()
                    module = stack.pop()
                    stack.append(self._stack_global(offset, module, name))
                    pos += 1
                elif code == 0x52:  # REDUCE
                    if len(stack) - 2 < fence:
                        raise self.malformed(offset, "REDUCE", "stack-underflow", "unpickling stack underflow")
                    args = stack.pop()
                    stack[-1] = self._reduce(offset, stack[-1], args)
                    pos += 1
                elif code == 0x62:  # BUILD
                    if len(stack) - 2 < fence:
                        raise self.malformed(offset, "BUILD", "stack-underflow", "unpickling stack underflow")
                    state = stack.pop()
                    pos += 1
                    resume = self._build(offset, pos, frame_end, stack[-1], state)
                    if resume is not None:
                        return resume
                elif code == 0x2E:  # STOP
                    if len(stack) <= fence:
                        raise self.malformed(offset, "STOP", "stack-underflow", "unpickling stack underflow")
                    value = stack.pop()
                    if type(value) is int:
                        out.result = value
                    rep.end = pos + 1
                    return -1
                elif code == 0x81 or code == 0x92:  # NEWOBJ, NEWOBJ_EX
                    n = 2 if code == 0x81 else 3
                    if len(stack) - n < fence:
                        raise self.malformed(offset, NAMES[code], "stack-underflow", "unpickling stack underflow")
                    kwargs = stack.pop() if code == 0x92 else None
                    args = stack.pop()
                    cls = stack.pop()
                    stack.append(self._newobj(offset, NAMES[code], cls, args, kwargs))
                    pos += 1
                elif code == 0x30:  # POP
                    if marks and marks[-1] == len(stack):
                        marks.pop()
                        fence = marks[-1] if marks else 0
                    elif len(stack) <= fence:
                        raise self.malformed(offset, "POP", "stack-underflow", "unpickling stack underflow")
                    else:
                        stack.pop()
                    pos += 1
                elif code == 0x32:  # DUP
                    if len(stack) <= fence:
                        raise self.malformed(offset, "DUP", "stack-underflow", "unpickling stack underflow")
                    stack.append(stack[-1])
                    pos += 1
                elif code == 0x97:  # NEXT_BUFFER
                    rep.buffers.append(offset)
                    stack.append(Opaque("out-of-band buffer"))
                    pos += 1
                elif code == 0x98:  # READONLY_BUFFER
                    if len(stack) <= fence:
                        raise self.malformed(offset, "READONLY_BUFFER", "stack-underflow",
                                             "unpickling stack underflow")
                    self._readonly(offset, stack)
                    pos += 1
                elif code == 0x51:  # BINPERSID
                    if len(stack) <= fence:
                        raise self.malformed(offset, "BINPERSID", "stack-underflow", "unpickling stack underflow")
                    stack.append(self._persistent(offset, "BINPERSID", stack.pop()))
                    pos += 1
                # -- the rest: every argument through the codec's shared reader ------------------
                else:
                    stop = -1
                    if code == 0x80 and pos + 2 <= limit:  # PROTO
                        arg = view[pos + 1]
                        stop = pos + 2
                    elif code == 0x95 and pos + 9 <= limit:  # FRAME
                        arg = _U8(buf, pos + 1)[0]
                        stop = pos + 9
                    elif code == 0x63 and cython.compiled:  # GLOBAL
                        arg = _global_names(view, pos, limit)
                        if arg is not None:
                            stop = arg[2]
                    if stop < 0:
                        arg, stop = read_argument(buf, code, pos, end, limit)  # refuses an unknown opcode too
                    pos = stop
                    if code == 0x80:  # PROTO
                        if arg > 5:
                            raise self.malformed(offset, "PROTO", "bad-argument", f"unsupported pickle protocol: {arg}")
                        if rep.protocol is None:
                            rep.protocol = arg
                        self.proto = arg
                    elif code == 0x95:  # FRAME
                        if frame_end >= 0:
                            raise MalformedPickle("a new frame begins before the end of the current frame",
                                                  offset=offset, opcode="FRAME", rule="frame-nested")
                        if arg > end - pos:
                            raise MalformedPickle(f"frame of {arg} bytes runs past the end of the data",
                                                  offset=offset, opcode="FRAME", rule="frame-truncated")
                        if arg > max_input:
                            self.limit("max_input_bytes", offset, "FRAME", f"frame of {arg} bytes")
                        frame_end = limit = pos + arg
                    elif code == 0x63:  # GLOBAL
                        stack.append(GlobalValue(self.site(offset, "GLOBAL", arg[0], arg[1])))
                    elif code == 0x49 or code == 0x4C or code == 0x8A or code == 0x46:  # INT LONG LONG1 FLOAT
                        stack.append(arg)
                    elif code == 0x8D or code == 0x56:  # BINUNICODE8, UNICODE
                        alloc += len(arg) if code == 0x56 else pos - offset - 9
                        if alloc > max_alloc:
                            self._over_alloc(offset, code, alloc)
                        stack.append(arg)
                    elif code == 0x70:  # PUT
                        if len(stack) <= fence:
                            raise self.malformed(offset, "PUT", "stack-underflow", "unpickling stack underflow")
                        if (arg >= max_memo or len(memo) >= max_memo) and arg not in memo:
                            self.limit("max_memo", offset, "PUT", f"memo index {arg}")
                        memo[arg] = stack[-1]
                    elif code == 0x67:  # GET
                        value = memo.get(arg, _MISSING)
                        if value is _MISSING:
                            raise self.malformed(offset, "GET", "memo-missing", f"Memo value not found at index {arg}")
                        stack.append(value)
                    elif code == 0x54 or code == 0x55 or code == 0x53:  # BINSTRING, SHORT_BINSTRING, STRING
                        alloc += len(arg)
                        if alloc > max_alloc:
                            self._over_alloc(offset, code, alloc)
                        stack.append(self._py2_string(offset, code, arg, pos))
                    elif code == 0x8B:  # LONG4
                        alloc += pos - offset
                        if alloc > max_alloc:
                            self._over_alloc(offset, code, alloc)
                        stack.append(arg)
                    elif code == 0x69:  # INST
                        if not marks:
                            raise self.malformed(offset, "INST", "no-mark", "could not find MARK")
                        k = marks.pop()
                        fence = marks[-1] if marks else 0
                        args = tuple(stack[k:])
                        del stack[k:]
                        s = self.site(offset, "INST", arg[0], arg[1])
                        s.uses.append(("constructed", offset))
                        stack.append(Made(s, s, args))
                    elif code == 0x82 or code == 0x83 or code == 0x84:  # EXT1, EXT2, EXT4
                        stack.append(self._extension(offset, NAMES[code], arg))
                    elif code == 0x50:  # PERSID
                        stack.append(self._persistent(offset, "PERSID", arg))
                    else:  # the shared reader knows only the table's opcodes; one not handled here is a bug
                        raise self.malformed(offset, NAMES[code], "internal",
                                             f"the scanner does not handle {NAMES[code]}")
        except MalformedPickle:
            ops -= 1  # ``opcodes`` counts the opcodes decoded
            raise
        finally:
            rep.opcodes = ops
            self.alloc = alloc

    @cython.cfunc
    def _over_alloc(self, offset: int, code: int, total: int):
        self.limit("max_alloc_bytes", offset, NAMES[code],
                   f"{total} bytes of strings, bytes, containers and references (counted as the VM counts them)")

    @cython.cfunc
    def _readonly(self, offset: int, stack: list):
        """READONLY_BUFFER on the top of ``stack``."""
        top = stack[-1]
        if type(top) is bytearray:
            stack[-1] = Built("memoryview")
        elif vm_built(top) and type(top) is not bytes and not (type(top) is Built and top.kind == "memoryview"):
            raise self.malformed(offset, "READONLY_BUFFER", "bad-argument",
                                 f"READONLY_BUFFER on a {describe(top)}, not a buffer")

    @cython.cfunc
    def _py2_string(self, offset: int, code: int, raw: bytes, end: int):
        """BINSTRING, SHORT_BINSTRING, STRING: the value the VM would push (decoded with ``encoding``)."""
        n = len(raw)
        if n >= _BLOB_MIN and code != 0x53 and raw[:6].startswith(BLOB_MAGICS):
            self.out.blobs.append((end - n, n))
        encoding = self.judge.encoding
        if encoding == "bytes":
            return raw
        try:
            return raw.decode(encoding, self.judge.errors)
        except (UnicodeDecodeError, LookupError) as e:
            raise self.malformed(offset, NAMES[code], "bad-argument",
                                 f"py2 string could not be decoded with encoding={encoding!r}: {e}") from None

    # -- opcodes with more to say ---------------------------------------------------

    @cython.cfunc
    def _stack_global(self, offset: int, module: Any, name: Any):
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

    @cython.cfunc
    def _extension(self, offset: int, opcode: str, code: int):
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

    @cython.cfunc
    def _persistent(self, offset: int, opcode: str, pid: Any):
        shown = describe(pid)
        self.rep.persistent_ids.append(PersistentId(self.rep.part, offset, opcode, shown))
        if not self.judge.runtime.persistent_ids:
            self.violation("persistent-id", offset, opcode, "persistent-id",
                           f"persistent id {shown} refused: policy {self.judge.policy_name!r} does not enable "
                           "persistent ids")
        return Made(None, None, (pid,))

    @cython.cfunc
    def _refuse_use(self, offset: int, opcode: str, rule: str, target: Any, what: str):
        if type(target) is GlobalValue:
            name = target.site.qualified
            msg = f"{what} on the global {name} itself: the VM only acts on objects an allowed call produced"
        else:
            name = None
            msg = f"{what} on {describe(target)}, an object the VM built itself: never allowed"
        self.violation("use", offset, opcode, rule, msg, name)

    @cython.cfunc
    def _reduce(self, offset: int, func: Any, args: Any):
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

    @cython.cfunc
    def _newobj(self, offset: int, opcode: str, cls: Any, args: Any, kwargs: Any):
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

    @cython.cfunc
    def _collect(self, offset: int, opcode: str, code: int, items: list):
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

    @cython.cfunc
    def _check_keys(self, offset: int, opcode: str, keys: list):
        """Refuse, as the VM would, keys or set items it could not hash."""
        for key in keys:
            if type(key) not in _PLAIN_KEYS:
                self._check_key(offset, opcode, key)

    @cython.cfunc
    def _check_key(self, offset: int, opcode: str, key: Any):
        problem = key_problem(key, self.limits.max_depth)
        if problem == "unhashable":
            raise self.malformed(offset, opcode, "bad-argument", f"unhashable key or set item: {describe(key)}")
        if problem == "deep":
            self.limit("max_depth", offset, opcode, "a key made of tuples nested deeper than max_depth")

    @cython.cfunc
    def _fill(self, offset: int, code: int, target: Any, items: list):
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

    @cython.cfunc
    def _use_on(self, offset: int, opcode: str, rule: str, target: Any, what: str):
        if vm_built(target) or type(target) is GlobalValue:
            self._refuse_use(offset, opcode, rule, target, what)
        elif type(target) is Made and target.cls is not None:
            target.cls.uses.append(("filled", offset))

    @cython.cfunc
    def _build(self, offset: int, end: int, frame_end: int, target: Any, state: Any):
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

    @cython.cfunc
    def _skip_joblib_array(self, offset: int, end: int, state: Any):
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
