"""The VM's hot loop: one ``while`` over the input buffer.

Shape (chosen for speed, interpreted and compiled alike): an integer
position, an ``if``/``elif`` chain on the opcode byte with the frequent
opcodes first, locals only, a list memo (with a dict for sparse indices), a
mark stack of stack heights.  Anything that touches an object the VM did not
build itself goes through :class:`~safepickle.vm.actions.LoadContext`, which
asks the policy.

Invariants kept on every path:

* every argument is read completely, and checked against the bytes really
  present (``bound``: the end of the current frame, or of the data), before
  the stack, the memo or anything else changes, so a truncated opcode can be
  retried after the stream reader fetched more bytes;
* no opcode reads below the topmost MARK (``fence``), as in CPython;
* ``max_depth`` (open MARKs, and tuples inside tuples: hashing a tuple
  recurses in C without a guard, so a million nested 1-tuples used as a dict
  key would overflow the C stack), ``max_memo``, ``max_container``,
  ``max_alloc_bytes`` are checked before the allocation they guard;
  ``max_ops`` and ``max_seconds`` every ``CHECK_EVERY`` opcodes and inside
  long opcodes.

The opcode set handled here is exactly the codec's table
(``safepickle.codec.opcodes``); a test proves it.
"""

from __future__ import annotations

from struct import Struct
from typing import Any

try:
    import cython
except ImportError:  # Cython is only a build requirement: interpreted, the annotations do nothing
    from ._cython_shim import cython

from ..codec.opcodes import BY_NAME, NAMES
from ..codec.readers import BadArgument, Truncated
from ..errors import InternalError, LimitExceeded, MalformedPickle, SafePickleError
from . import costs
from .actions import LoadContext, brief_exception

if cython.compiled:
    # The compiled build takes the per-container fills from the compiled copy
    # of the same actions.py (setup.py builds both), and reads floats and
    # strings with the C functions that ``struct`` and ``str`` use.
    from cython.cimports.cpython.bytearray import PyByteArray_FromStringAndSize
    from cython.cimports.cpython.bytes import PyBytes_FromStringAndSize
    from cython.cimports.cpython.float import PyFloat_Unpack8
    from cython.cimports.cpython.unicode import PyUnicode_DecodeUTF8
    from cython.cimports.safepickle.vm._actions_c import fill_dict, fill_set  # C-level calls (actions.pxd)
else:
    from .actions import fill_dict, fill_set

__all__ = ["run", "CHECK_EVERY"]

CHECK_EVERY = costs.CHECK_EVERY

_U2 = Struct("<H").unpack_from
_U4 = Struct("<I").unpack_from
_I4 = Struct("<i").unpack_from
_U8 = Struct("<Q").unpack_from
_F8 = Struct(">d").unpack_from

# The shared argument readers of the codec, for the opcodes that are not hot.
_READ_INT = BY_NAME["INT"].arg.read
_READ_LONG = BY_NAME["LONG"].arg.read
_READ_FLOAT = BY_NAME["FLOAT"].arg.read
_READ_STRING = BY_NAME["STRING"].arg.read
_READ_BINSTRING = BY_NAME["BINSTRING"].arg.read
_READ_SHORT_BINSTRING = BY_NAME["SHORT_BINSTRING"].arg.read
_READ_UNICODE = BY_NAME["UNICODE"].arg.read
_READ_LONG4 = BY_NAME["LONG4"].arg.read
_READ_MEMO_KEY = BY_NAME["GET"].arg.read
_READ_PAIR = BY_NAME["GLOBAL"].arg.read
_READ_PID = BY_NAME["PERSID"].arg.read
_READ_EXT4 = BY_NAME["EXT4"].arg.read

_MISSING = object()

# What the containers the VM builds cost against max_alloc_bytes (see costs.py).
# (Compiled: C constants, not module globals looked up at every use.)
_REF = cython.declare(cython.longlong, costs.REF)
_ENTRY = cython.declare(cython.longlong, costs.ENTRY)
_LIST = cython.declare(cython.longlong, costs.LIST)
_DICT = cython.declare(cython.longlong, costs.DICT)
_SET = cython.declare(cython.longlong, costs.SET)


# Compiled build only: fixed-width integers read straight from the typed view.
# Callers have checked that the bytes are inside ``bound`` (so inside the view).
@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _le16(p: cython.p_const_uchar) -> cython.longlong:
    """The little-endian unsigned 16-bit integer at ``p`` (what ``_U2`` reads)."""
    return p[0] | (cython.cast(cython.longlong, p[1]) << 8)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _le32(p: cython.p_const_uchar) -> cython.longlong:
    """The little-endian unsigned 32-bit integer at ``p`` (what ``_U4`` reads)."""
    return (p[0] | (cython.cast(cython.longlong, p[1]) << 8) | (cython.cast(cython.longlong, p[2]) << 16)
            | (cython.cast(cython.longlong, p[3]) << 24))


@cython.cfunc
@cython.inline
def _pop_to(stack: list, k: cython.longlong) -> None:
    """Compiled build only: ``del stack[k:]``.  A few items go as pops from the
    top (the same items released in the same order, last first), which reuse
    the list's storage where ``del`` of a slice allocates a scratch buffer and
    shrinks it (12% of a load of small records); many items go with ``del``,
    as pops would fall off Cython's fast path once the list is half empty."""
    if len(stack) - k > 64:
        del stack[k:]
        return
    while len(stack) > k:
        stack.pop()


#: Payloads of at least this many bytes that a file holds whole are read
#: straight into their object (see ``StreamFeeder.read_payload``).
LARGE_PAYLOAD = 1 << 20


def _large_payload(data: Any, op_start: int, code: int, feeder: Any) -> tuple[int, int] | None:
    """``(size, offset of the payload from op_start)`` when the truncated
    opcode at ``op_start`` is a BINBYTES, BINBYTES8 or BYTEARRAY8 of at least
    :data:`LARGE_PAYLOAD` bytes that ``feeder`` can read whole; else None."""
    if code == 0x42:
        width = 4
    elif code == 0x8E or code == 0x96:
        width = 8
    else:
        return None
    if op_start + 1 + width > len(data):
        return None  # the length itself is not read yet
    size = (_U4 if width == 4 else _U8)(data, op_start + 1)[0]
    if size < LARGE_PAYLOAD or not feeder.can_read_payload(len(data) - op_start - 1 - width, size):
        return None
    return size, 1 + width


def _underflow() -> MalformedPickle:
    return MalformedPickle("unpickling stack underflow", rule="stack-underflow")


def _no_mark() -> MalformedPickle:
    return MalformedPickle("could not find MARK", rule="no-mark")


def memo_put(memo: list, sparse: dict, idx: int, value: Any, max_memo: int) -> None:
    """memo[idx] = value.  Dense indices live in the list, others in ``sparse``
    (all of whose keys stay above ``len(memo)``), so a lying index costs no
    allocation."""
    n = len(memo)
    if idx < n:
        memo[idx] = value
        return
    if idx >= max_memo:
        raise LimitExceeded("max_memo", idx + 1, max_memo, message=f"memo index {idx} beyond limit max_memo")
    if idx == n:
        memo.append(value)
        if sparse:
            sparse.pop(idx, None)
            while len(memo) in sparse:
                memo.append(sparse.pop(len(memo)))
        return
    if idx not in sparse and n + len(sparse) >= max_memo:
        raise LimitExceeded("max_memo", n + len(sparse) + 1, max_memo)
    sparse[idx] = value


def memo_get(memo: list, sparse: dict, idx: int) -> Any:
    if idx < len(memo):
        return memo[idx]
    value = sparse.get(idx, _MISSING)
    if value is _MISSING:
        raise MalformedPickle(f"Memo value not found at index {idx}", rule="memo-missing")
    return value


# C types of the compiled build.  Every integer typed here is a position in
# the data, a count, a limit, or an argument of at most 4 bytes, so it fits in
# 64 bits; 8-byte lengths (``size``) and text memo keys (``key``) stay Python
# ints, because the stream can make them any size.
@cython.locals(
    pos=cython.longlong, end=cython.longlong, base=cython.longlong, bound=cython.longlong,
    frame_end=cython.longlong, op_start=cython.longlong, next_pos=cython.longlong,
    start=cython.longlong, n=cython.longlong, k=cython.longlong, fence=cython.longlong,
    width=cython.longlong, code=cython.int, ptr=cython.p_const_char,
    alloc=cython.longlong, ops=cython.longlong, check_at=cython.longlong,
    max_depth=cython.longlong, max_memo=cython.longlong, max_ops=cython.longlong,
    max_container=cython.longlong, max_alloc=cython.longlong,
    stack=list, marks=list, memo=list, sparse=dict,
)
def run(data: Any, pos: int, ctx: LoadContext, feeder: Any = None) -> tuple[Any, int]:
    """Execute the pickle that starts at ``data[pos]`` up to its STOP.

    ``data`` is bytes or a flat unsigned-byte memoryview.  ``feeder`` (stream
    loads only) supplies more bytes when an opcode runs past the end of
    ``data``; without it that is a truncated pickle.  Returns the result and
    the absolute offset just after STOP.
    """
    view: cython.const[cython.uchar][::1] = data  # compiled: a typed view of the same bytes
    end = len(data)
    base = 0  # absolute offset of data[0]: the feeder drops consumed bytes
    bound = end  # reads may not pass this: the end of the frame, or of the data
    frame_end = -1
    stack: list = []
    marks: list = []
    fence = 0
    memo: list = []
    sparse: dict = {}
    limits = ctx.limits
    max_depth = limits.max_depth
    max_memo = limits.max_memo
    max_ops = limits.max_ops
    max_container = limits.max_container
    max_alloc = limits.max_alloc_bytes
    alloc = 0
    ops = 0
    check_at = min(CHECK_EVERY, max_ops)
    op_start = pos
    code = -1
    try:
        while True:
            try:
                while True:
                    if pos == frame_end:
                        frame_end = -1
                        bound = end
                    op_start = pos
                    if pos >= bound:
                        ops += 1  # counted like every opcode: the retry below takes it back
                        raise Truncated(pos + 1)
                    code = view[pos]
                    ops += 1
                    if ops > check_at:
                        if ops > max_ops:
                            raise LimitExceeded("max_ops", ops, max_ops)
                        ctx.check_deadline()
                        # References held by the stack and the memo count
                        # too: a byte of NONE or GET pushes eight.
                        if alloc + _REF * (len(stack) + len(memo) + len(sparse)) > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc + _REF * (len(stack) + len(memo)),
                                                max_alloc)
                        check_at = min(ops + CHECK_EVERY, max_ops)

                    if code == 0x8C:  # SHORT_BINUNICODE
                        if pos + 2 > bound:
                            raise Truncated(pos + 2)
                        n = view[pos + 1]
                        start = pos + 2
                        pos = start + n
                        if pos > bound:
                            raise Truncated(pos)
                        alloc += n
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        if cython.compiled:
                            stack.append(PyUnicode_DecodeUTF8(
                                cython.cast(cython.p_const_char, cython.address(view[start])), n, "surrogatepass")
                                if n else "")
                        else:
                            stack.append(str(data[start:pos], "utf-8", "surrogatepass"))
                    elif code == 0x94:  # MEMOIZE
                        if len(stack) <= fence:
                            raise _underflow()
                        if not sparse and len(memo) < max_memo:
                            memo.append(stack[-1])
                        else:
                            memo_put(memo, sparse, len(memo) + len(sparse), stack[-1], max_memo)
                        pos += 1
                    elif code == 0x58:  # BINUNICODE
                        if pos + 5 > bound:
                            raise Truncated(pos + 5)
                        if cython.compiled:
                            n = _le32(cython.address(view[pos + 1]))
                        else:
                            n = _U4(data, pos + 1)[0]
                        start = pos + 5
                        pos = start + n
                        if pos > bound:
                            raise Truncated(pos)
                        alloc += n
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        if cython.compiled:
                            stack.append(PyUnicode_DecodeUTF8(
                                cython.cast(cython.p_const_char, cython.address(view[start])), n, "surrogatepass")
                                if n else "")
                        else:
                            stack.append(str(data[start:pos], "utf-8", "surrogatepass"))
                    elif code == 0x4B:  # BININT1
                        if pos + 2 > bound:
                            raise Truncated(pos + 2)
                        stack.append(view[pos + 1])
                        pos += 2
                    elif code == 0x68:  # BINGET
                        if pos + 2 > bound:
                            raise Truncated(pos + 2)
                        n = view[pos + 1]
                        stack.append(memo[n] if n < len(memo) else memo_get(memo, sparse, n))
                        pos += 2
                    elif code == 0x71:  # BINPUT
                        if pos + 2 > bound:
                            raise Truncated(pos + 2)
                        if len(stack) <= fence:
                            raise _underflow()
                        memo_put(memo, sparse, view[pos + 1], stack[-1], max_memo)
                        pos += 2
                    elif code == 0x28:  # MARK
                        if len(marks) >= max_depth:
                            raise LimitExceeded("max_depth", len(marks) + 1, max_depth,
                                                message=f"more than {max_depth} nested MARKs: limit max_depth")
                        fence = len(stack)
                        marks.append(fence)
                        pos += 1
                    elif code == 0x75:  # SETITEMS
                        if not marks:
                            raise _no_mark()
                        k = marks.pop()
                        fence = marks[-1] if marks else 0
                        if k <= fence:
                            raise _underflow()
                        target = stack[k - 1]
                        n = len(stack) - k
                        if type(target) is dict:
                            if n & 1:
                                raise MalformedPickle("odd number of items for SETITEMS", rule="bad-stack")
                            if len(target) + (n >> 1) > max_container:
                                raise LimitExceeded("max_container", len(target) + (n >> 1), max_container)
                            alloc += _ENTRY * n
                            if alloc > max_alloc:
                                raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                            fill_dict(ctx, target, stack, k)
                        elif n:
                            ctx.set_items(target, stack[k:], 0)
                        if cython.compiled:
                            _pop_to(stack, k)
                        else:
                            del stack[k:]
                        pos += 1
                    elif code == 0x7D:  # EMPTY_DICT
                        alloc += _DICT
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        stack.append({})
                        pos += 1
                    elif code == 0x5D:  # EMPTY_LIST
                        alloc += _LIST
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        stack.append([])
                        pos += 1
                    elif code == 0x65:  # APPENDS
                        if not marks:
                            raise _no_mark()
                        k = marks.pop()
                        fence = marks[-1] if marks else 0
                        if k <= fence:
                            raise _underflow()
                        target = stack[k - 1]
                        if type(target) is list:
                            if len(target) + len(stack) - k > max_container:
                                raise LimitExceeded("max_container", len(target) + len(stack) - k, max_container)
                            alloc += _REF * (len(stack) - k)
                            if alloc > max_alloc:
                                raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                            target.extend(stack[k:])
                        elif len(stack) > k:
                            ctx.append_items(target, stack[k:])
                        if cython.compiled:
                            _pop_to(stack, k)
                        else:
                            del stack[k:]
                        pos += 1
                    elif code == 0x4A:  # BININT
                        if pos + 5 > bound:
                            raise Truncated(pos + 5)
                        if cython.compiled:
                            n = _le32(cython.address(view[pos + 1]))
                            stack.append(n - 0x100000000 if n >= 0x80000000 else n)
                        else:
                            stack.append(_I4(data, pos + 1)[0])
                        pos += 5
                    elif code == 0x95:  # FRAME
                        if pos + 9 > bound:
                            raise Truncated(pos + 9)
                        if frame_end >= 0:
                            raise MalformedPickle("a new frame begins before the end of the current frame",
                                                  rule="frame-nested")
                        size = _U8(data, pos + 1)[0]
                        if pos + 9 + size > end:
                            raise Truncated(pos + 9 + size)
                        pos += 9
                        frame_end = pos + size
                        bound = frame_end
                    elif code == 0x61:  # APPEND
                        if len(stack) - 1 <= fence:
                            raise _underflow()
                        value = stack.pop()
                        target = stack[-1]
                        if type(target) is list:
                            if len(target) >= max_container:
                                raise LimitExceeded("max_container", len(target) + 1, max_container)
                            target.append(value)
                        else:
                            ctx.append_items(target, [value])
                        pos += 1
                    elif code == 0x73:  # SETITEM
                        if len(stack) - 2 <= fence:
                            raise _underflow()
                        value = stack.pop()
                        key = stack.pop()
                        target = stack[-1]
                        if type(target) is dict:
                            if len(target) >= max_container:
                                raise LimitExceeded("max_container", len(target) + 1, max_container)
                            fill_dict(ctx, target, [key, value], 0)
                        else:
                            ctx.set_items(target, [key, value], 0)
                        pos += 1
                    elif code == 0x86:  # TUPLE2
                        if len(stack) - 2 < fence:
                            raise _underflow()
                        value = (stack[-2], stack[-1])
                        if type(value[0]) is tuple or type(value[1]) is tuple:
                            ctx.nest_tuple(value)
                        if cython.compiled:  # the same, without a slice assignment
                            stack.pop()
                            stack[-1] = value
                        else:
                            stack[-2:] = [value]
                        pos += 1
                    elif code == 0x85:  # TUPLE1
                        if len(stack) - 1 < fence:
                            raise _underflow()
                        value = (stack[-1],)
                        if type(value[0]) is tuple:
                            ctx.nest_tuple(value)
                        stack[-1] = value
                        pos += 1
                    elif code == 0x87:  # TUPLE3
                        if len(stack) - 3 < fence:
                            raise _underflow()
                        value = (stack[-3], stack[-2], stack[-1])
                        if type(value[0]) is tuple or type(value[1]) is tuple or type(value[2]) is tuple:
                            ctx.nest_tuple(value)
                        if cython.compiled:  # the same, without a slice assignment
                            stack.pop()
                            stack.pop()
                            stack[-1] = value
                        else:
                            stack[-3:] = [value]
                        pos += 1
                    elif code == 0x29:  # EMPTY_TUPLE
                        stack.append(())
                        pos += 1
                    elif code == 0x4E:  # NONE
                        stack.append(None)
                        pos += 1
                    elif code == 0x88:  # NEWTRUE
                        stack.append(True)
                        pos += 1
                    elif code == 0x89:  # NEWFALSE
                        stack.append(False)
                        pos += 1
                    elif code == 0x47:  # BINFLOAT
                        if pos + 9 > bound:
                            raise Truncated(pos + 9)
                        if cython.compiled:
                            stack.append(PyFloat_Unpack8(  # 0: big-endian, as _F8
                                cython.cast(cython.p_const_uchar, cython.address(view[pos + 1])), 0))
                        else:
                            stack.append(_F8(data, pos + 1)[0])
                        pos += 9
                    elif code == 0x4D:  # BININT2
                        if pos + 3 > bound:
                            raise Truncated(pos + 3)
                        if cython.compiled:
                            stack.append(_le16(cython.address(view[pos + 1])))
                        else:
                            stack.append(_U2(data, pos + 1)[0])
                        pos += 3
                    elif code == 0x43 or code == 0x42 or code == 0x8E or code == 0x96:
                        # SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8
                        if code == 0x43:
                            width = 1
                        elif code == 0x42:
                            width = 4
                        else:
                            width = 8
                        if pos + 1 + width > bound:
                            raise Truncated(pos + 1 + width)
                        if cython.compiled and width != 8:
                            # The same steps with the 1- or 4-byte length in a
                            # C integer (``size`` is a Python int, for 8 bytes).
                            if width == 1:
                                n = view[pos + 1]
                            else:
                                n = _le32(cython.address(view[pos + 1]))
                            start = pos + 1 + width
                            if start + n > bound:
                                raise Truncated(start + n)
                            pos = start + n
                            alloc += n
                        else:
                            if width == 1:
                                size = view[pos + 1]
                            elif width == 4:
                                size = _U4(data, pos + 1)[0]
                            else:
                                size = _U8(data, pos + 1)[0]
                            start = pos + 1 + width
                            if start + size > bound:
                                raise Truncated(start + size)
                            pos = start + size
                            alloc += size
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        if cython.compiled:
                            # One copy, straight from the view (slicing ``data``
                            # copies, and bytearray() of that copies again); no
                            # pointer for no bytes (``view[start]`` may be past the end).
                            ptr = cython.cast(cython.p_const_char, cython.address(view[start])) if pos > start \
                                else cython.NULL
                            if code == 0x96:
                                stack.append(PyByteArray_FromStringAndSize(ptr, pos - start))
                            else:
                                stack.append(PyBytes_FromStringAndSize(ptr, pos - start))
                        elif code == 0x96:
                            # through a view: slicing bytes first would copy twice
                            with memoryview(data) as whole:
                                stack.append(bytearray(whole[start:pos]))
                        else:
                            stack.append(bytes(data[start:pos]))
                    elif code == 0x8D:  # BINUNICODE8
                        if pos + 9 > bound:
                            raise Truncated(pos + 9)
                        size = _U8(data, pos + 1)[0]
                        start = pos + 9
                        if start + size > bound:
                            raise Truncated(start + size)
                        pos = start + size
                        alloc += size
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        stack.append(str(data[start:pos], "utf-8", "surrogatepass"))
                    elif code == 0x93:  # STACK_GLOBAL
                        if len(stack) - 2 < fence:
                            raise _underflow()
                        name = stack.pop()
                        module = stack.pop()
                        stack.append(ctx.find_global(module, name, base + op_start))
                        pos += 1
                    elif code == 0x52:  # REDUCE
                        if len(stack) - 2 < fence:
                            raise _underflow()
                        args = stack.pop()
                        ctx.alloc = alloc
                        stack[-1] = ctx.call(stack[-1], args)
                        alloc = ctx.alloc
                        pos += 1
                    elif code == 0x62:  # BUILD
                        if len(stack) - 2 < fence:
                            raise _underflow()
                        state = stack.pop()
                        ctx.alloc = alloc
                        ctx.build(stack[-1], state)
                        alloc = ctx.alloc
                        pos += 1
                    elif code == 0x81 or code == 0x92:  # NEWOBJ, NEWOBJ_EX
                        n = 2 if code == 0x81 else 3
                        if len(stack) - n < fence:
                            raise _underflow()
                        kwargs = stack.pop() if code == 0x92 else None
                        args = stack.pop()
                        cls = stack.pop()
                        ctx.alloc = alloc
                        stack.append(ctx.new_object(cls, args, kwargs, "NEWOBJ" if code == 0x81 else "NEWOBJ_EX"))
                        alloc = ctx.alloc
                        pos += 1
                    elif code == 0x6A:  # LONG_BINGET
                        if pos + 5 > bound:
                            raise Truncated(pos + 5)
                        if cython.compiled:
                            n = _le32(cython.address(view[pos + 1]))
                            stack.append(memo[n] if n < len(memo) else memo_get(memo, sparse, n))
                        else:
                            stack.append(memo_get(memo, sparse, _U4(data, pos + 1)[0]))
                        pos += 5
                    elif code == 0x72:  # LONG_BINPUT
                        if pos + 5 > bound:
                            raise Truncated(pos + 5)
                        if len(stack) <= fence:
                            raise _underflow()
                        if cython.compiled:
                            memo_put(memo, sparse, _le32(cython.address(view[pos + 1])), stack[-1], max_memo)
                        else:
                            memo_put(memo, sparse, _U4(data, pos + 1)[0], stack[-1], max_memo)
                        pos += 5
                    elif code == 0x2E:  # STOP
                        if len(stack) <= fence:
                            raise _underflow()
                        return stack.pop(), base + pos + 1
                    elif code == 0x80:  # PROTO
                        if pos + 2 > bound:
                            raise Truncated(pos + 2)
                        n = view[pos + 1]
                        if n > 5:
                            raise MalformedPickle(f"unsupported pickle protocol: {n}", rule="bad-argument")
                        ctx.proto = n
                        pos += 2
                    elif code == 0x8A:  # LONG1
                        if pos + 2 > bound:
                            raise Truncated(pos + 2)
                        n = view[pos + 1]
                        start = pos + 2
                        pos = start + n
                        if pos > bound:
                            raise Truncated(pos)
                        stack.append(int.from_bytes(data[start:pos], "little", signed=True))
                    elif code == 0x74 or code == 0x6C or code == 0x64 or code == 0x91 or code == 0x90 \
                            or code == 0x31 or code == 0x6F:
                        # TUPLE, LIST, DICT, FROZENSET, ADDITEMS, POP_MARK, OBJ: everything above the MARK
                        if not marks:
                            raise _no_mark()
                        k = marks.pop()
                        fence = marks[-1] if marks else 0
                        n = len(stack) - k
                        if n > max_container:
                            raise LimitExceeded("max_container", n, max_container)
                        alloc += _LIST + _ENTRY * n
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        if code == 0x74:
                            value = tuple(stack[k:])
                            ctx.nest_tuple(value)
                        elif code == 0x6C:
                            value = stack[k:]
                        elif code == 0x64:
                            if n & 1:
                                raise MalformedPickle("odd number of items for DICT", rule="bad-stack")
                            value = {}
                            fill_dict(ctx, value, stack, k)
                        elif code == 0x91:
                            value = set()
                            fill_set(ctx, value, stack[k:])
                            value = frozenset(value)
                        elif code == 0x90:  # ADDITEMS
                            if k <= fence:
                                raise _underflow()
                            target = stack[k - 1]
                            if type(target) is set:
                                if len(target) + n > max_container:
                                    raise LimitExceeded("max_container", len(target) + n, max_container)
                                fill_set(ctx, target, stack[k:])
                            elif n:
                                ctx.alloc = alloc
                                ctx.add_items(target, stack[k:])
                            if cython.compiled:
                                _pop_to(stack, k)
                            else:
                                del stack[k:]
                            pos += 1
                            continue
                        elif code == 0x31:  # POP_MARK
                            if cython.compiled:
                                _pop_to(stack, k)
                            else:
                                del stack[k:]
                            pos += 1
                            continue
                        else:  # OBJ
                            if n < 1:
                                raise _underflow()
                            ctx.alloc = alloc
                            value = ctx.instantiate(stack[k], tuple(stack[k + 1:]), "OBJ")
                            alloc = ctx.alloc
                        if cython.compiled:
                            _pop_to(stack, k)
                        else:
                            del stack[k:]
                        stack.append(value)
                        pos += 1
                    elif code == 0x8F:  # EMPTY_SET
                        alloc += _SET
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        stack.append(set())
                        pos += 1
                    elif code == 0x30:  # POP
                        if marks and marks[-1] == len(stack):
                            marks.pop()
                            fence = marks[-1] if marks else 0
                        elif len(stack) <= fence:
                            raise _underflow()
                        else:
                            stack.pop()
                        pos += 1
                    elif code == 0x32:  # DUP
                        if len(stack) <= fence:
                            raise _underflow()
                        stack.append(stack[-1])
                        pos += 1
                    elif code == 0x63:  # GLOBAL
                        (module, name), pos = _READ_PAIR(data, pos + 1, bound)
                        stack.append(ctx.find_global(module, name, base + op_start))
                    elif code == 0x69:  # INST
                        (module, name), pos = _READ_PAIR(data, pos + 1, bound)
                        if not (module.isascii() and name.isascii()):
                            raise MalformedPickle("INST module and name must be ASCII", rule="bad-argument")
                        if not marks:
                            raise _no_mark()
                        k = marks.pop()
                        fence = marks[-1] if marks else 0
                        args = tuple(stack[k:])
                        if cython.compiled:
                            _pop_to(stack, k)
                        else:
                            del stack[k:]
                        cls = ctx.find_global(module, name, base + op_start)
                        ctx.alloc = alloc
                        stack.append(ctx.instantiate(cls, args, "INST"))
                        alloc = ctx.alloc
                    elif code == 0x49:  # INT
                        value, pos = _READ_INT(data, pos + 1, bound)
                        stack.append(value)
                    elif code == 0x4C:  # LONG
                        value, pos = _READ_LONG(data, pos + 1, bound)
                        stack.append(value)
                    elif code == 0x46:  # FLOAT
                        value, pos = _READ_FLOAT(data, pos + 1, bound)
                        stack.append(value)
                    elif code == 0x56:  # UNICODE
                        value, pos = _READ_UNICODE(data, pos + 1, bound)
                        alloc += len(value)
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        stack.append(value)
                    elif code == 0x53 or code == 0x54 or code == 0x55:  # STRING, BINSTRING, SHORT_BINSTRING
                        if code == 0x53:
                            value, pos = _READ_STRING(data, pos + 1, bound)
                        elif code == 0x54:
                            value, pos = _READ_BINSTRING(data, pos + 1, bound)
                        else:
                            value, pos = _READ_SHORT_BINSTRING(data, pos + 1, bound)
                        alloc += len(value)
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        stack.append(ctx.py2_string(value))
                    elif code == 0x8B:  # LONG4
                        value, pos = _READ_LONG4(data, pos + 1, bound)
                        alloc += pos - op_start
                        if alloc > max_alloc:
                            raise LimitExceeded("max_alloc_bytes", alloc, max_alloc)
                        stack.append(value)
                    elif code == 0x67:  # GET
                        key, pos = _READ_MEMO_KEY(data, pos + 1, bound)
                        stack.append(memo_get(memo, sparse, key))
                    elif code == 0x70:  # PUT
                        key, next_pos = _READ_MEMO_KEY(data, pos + 1, bound)
                        if len(stack) <= fence:
                            raise _underflow()
                        memo_put(memo, sparse, key, stack[-1], max_memo)
                        pos = next_pos
                    elif code == 0x82 or code == 0x83 or code == 0x84:  # EXT1, EXT2, EXT4
                        if code == 0x82:
                            if pos + 2 > bound:
                                raise Truncated(pos + 2)
                            n = view[pos + 1]
                            next_pos = pos + 2
                        elif code == 0x83:
                            if pos + 3 > bound:
                                raise Truncated(pos + 3)
                            n = _U2(data, pos + 1)[0]
                            next_pos = pos + 3
                        else:
                            n, next_pos = _READ_EXT4(data, pos + 1, bound)
                        stack.append(ctx.extension(n, base + op_start))
                        pos = next_pos
                    elif code == 0x51:  # BINPERSID
                        if len(stack) <= fence:
                            raise _underflow()
                        stack[-1] = ctx.persistent(stack[-1])
                        pos += 1
                    elif code == 0x50:  # PERSID
                        value, next_pos = _READ_PID(data, pos + 1, bound)
                        stack.append(ctx.persistent(value))
                        pos = next_pos
                    elif code == 0x97:  # NEXT_BUFFER
                        stack.append(ctx.next_buffer())
                        pos += 1
                    elif code == 0x98:  # READONLY_BUFFER
                        if len(stack) <= fence:
                            raise _underflow()
                        stack[-1] = ctx.readonly(stack[-1])
                        pos += 1
                    else:
                        raise MalformedPickle(f"invalid load key {code:#04x}", rule="unknown-opcode")
            except Truncated as t:
                if frame_end >= 0:
                    raise MalformedPickle("opcode straddles the end of its frame", rule="frame-straddle") from None
                if feeder is None:
                    raise MalformedPickle("pickle data was truncated", rule="truncated") from None
                payload = _large_payload(data, op_start, code, feeder)
                if payload is not None:
                    # A large BINBYTES/BINBYTES8/BYTEARRAY8 the file holds whole:
                    # read straight into the object pushed, as pickle.load does
                    # (buffering it first would hold it twice).
                    size, after = payload
                    alloc += size
                    if alloc > max_alloc:
                        raise LimitExceeded("max_alloc_bytes", alloc, max_alloc) from None
                    stack.append(feeder.read_payload(data, op_start + after, size, code == 0x96))
                    data = view = b""
                    base += op_start + after + size
                    pos = end = bound = 0
                    continue
                # Fetch more and run the same opcode again: nothing changed yet,
                # and it will be counted again.
                ops -= 1
                data = feeder.more(data, op_start, t.need)
                view = data
                base += op_start
                pos = 0
                end = bound = len(data)
    except SafePickleError as e:
        raise e.located(base + op_start, NAMES[code] if code >= 0 else None, ctx.policy_name) from e.__cause__
    except BadArgument as e:
        raise MalformedPickle(str(e), offset=base + op_start, opcode=NAMES[code], rule="bad-argument") from None
    except UnicodeDecodeError as e:
        raise MalformedPickle(f"string is not UTF-8: {e.reason}", offset=base + op_start, opcode=NAMES[code],
                              rule="bad-argument") from None
    except MemoryError:
        raise LimitExceeded("max_alloc_bytes", "MemoryError", message="the load ran out of memory",
                            offset=base + op_start, opcode=NAMES[code] if code >= 0 else None) from None
    except RecursionError:
        raise LimitExceeded("max_depth", "RecursionError", message="the load recursed too deep",
                            offset=base + op_start, opcode=NAMES[code] if code >= 0 else None) from None
    except Exception as e:
        raise InternalError(f"internal error in the VM: {brief_exception(e)}", offset=base + op_start,
                            opcode=NAMES[code] if code >= 0 else None, rule="internal") from e
