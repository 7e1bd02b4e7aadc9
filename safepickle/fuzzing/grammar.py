"""The grammar-aware generator: opcode programs built on the codec's encoder.

A program is a list of items, each ``(opcode name, argument)`` (encoded with
:func:`safepickle.codec.encode_op`) or raw ``bytes`` (a deliberately broken
opcode).  :class:`Grammar` first writes a *valid* program of a protocol 0-5:
it tracks what it pushed, so every container, memo reference, recursion and
call it writes is well formed.  Values include the globals the policy under
test allows (called through REDUCE, NEWOBJ, NEWOBJ_EX, INST and OBJ with
hostile arguments, then BUILD with hostile state), hostile globals,
*templates* (real programs that ``pickle.dumps`` writes for the policy's
types, see :mod:`.samples`, with some arguments replaced), out-of-band
buffers, extension codes and persistent ids.  Then, for about half of the
cases, it applies structural mutations: dropped, duplicated, swapped and
inserted opcodes, wrong argument types and lengths, lying FRAME sizes,
MARK/stack confusion, memo indices out of range, deep nesting, huge declared
lengths, streams without STOP, Python 2 names.

Every choice goes through a :class:`Chooser`, so the same generator runs on
a seeded :class:`random.Random` and as a hypothesis strategy
(:func:`pickle_cases`), whose choices hypothesis (or a coverage-guided
fuzzer feeding :meth:`fuzz_one_input`) controls.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Protocol

from ..codec.decode import decode
from ..codec.encode import encode_op
from ..codec.opcodes import BY_NAME, OPCODES
from ..errors import MalformedPickle
from .case import FuzzCase
from .names import CLASSIC_GADGETS, HOSTILE_GLOBALS, PY2_MODULES, RANDOM_MODULES

__all__ = ["Chooser", "RandomChooser", "DrawChooser", "Grammar", "Template", "pickle_cases", "templates_for"]


class Chooser(Protocol):
    """The source of every decision the generators make."""

    def integer(self, lo: int, hi: int) -> int: ...

    def chance(self, p: float) -> bool: ...

    def pick(self, seq: Any) -> Any: ...

    def blob(self, n: int) -> bytes: ...


class RandomChooser:
    """Decisions from a seeded :class:`random.Random`."""

    def __init__(self, rng: Any) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, seq: Any) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def blob(self, n: int) -> bytes:
        return self.rng.randbytes(n)


class DrawChooser:
    """Decisions drawn from hypothesis (inside ``st.composite``)."""

    _strategies: dict[tuple, Any] = {}  # building a strategy costs more than drawing from it

    def __init__(self, draw: Any) -> None:
        self._draw = draw

    @classmethod
    def _ints(cls, lo: int, hi: int) -> Any:
        key = ("i", lo, hi)
        strat = cls._strategies.get(key)
        if strat is None:
            from hypothesis import strategies as st

            strat = cls._strategies[key] = st.integers(lo, hi)
        return strat

    def integer(self, lo: int, hi: int) -> int:
        return self._draw(self._ints(lo, hi))

    def chance(self, p: float) -> bool:
        return self._draw(self._ints(0, 9999)) < p * 10000

    def pick(self, seq: Any) -> Any:
        return seq[self._draw(self._ints(0, len(seq) - 1))]

    def blob(self, n: int) -> bytes:
        key = ("b", n)
        strat = self._strategies.get(key)
        if strat is None:
            from hypothesis import strategies as st

            strat = self._strategies[key] = st.binary(min_size=n, max_size=n)
        return self._draw(strat)


# -- values ---------------------------------------------------------------------

INTS = (0, 1, -1, 2, 127, 128, 255, 256, -128, -129, 32767, 32768, 65535, 65536, 2**31 - 1, -(2**31), 2**31,
        2**32, 2**63 - 1, 2**63, -(2**63), 2**64, 10**18, -(10**30), 2**1000, 10**12, 2**62)
FLOATS = (0.0, -0.0, 1.5, -2.25, math.nan, math.inf, -math.inf, 1e308, 5e-324, 1e-310, math.pi)
STRS = ("", "a", "abc", "\x00", "\n", "\\", "\u00e9", "\u20ac", "\U0001f600", "\udc80", "\ud800", "x" * 300,
        "__reduce__", "__class__", "__dict__", "__setstate__", "__init__", "latin1", "latin-1", "utf-16",
        "rot13", "hex", "zlib", "bz2", "base64", "ascii", "os", "system", "builtins", "eval", "O", "f8",
        "<f8", "|O", "i4", "M8[D]", "U3", "V0")
PY2STRS = (b"", b"abc", b"\xff\xfe", b"\x80", b"\\x", b"'", b'"', b"\x00\n", b"caf\xe9")
BYTES = (b"", b"\x00", b"\xff" * 3, b"abc", bytes(range(16)), b"\x00" * 64, b"\x01" * 8)
HOSTILE_ARGS: tuple[Any, ...] = (10**12, 2**63, -1, 0, 2**31, "rot13", "hex", "utf-16", "zlib", "latin1",
                                 "x" * 1000, b"\x00" * 1000, None, (), [], {}, 1.5e300)

_TEXT_GARBAGE = (b"0x10", b" 1", b"1_000", b"010", b"+", b"-", b"", b"1e5", b"nan(", b"'abc", b"'a\\q'",
                 b"\xff\xfe", b"123L", b"9" * 5000, b"00", b"01", b"-0", b"inf", b"1.", b".5", b"'\\x4'",
                 b"\"a'", b"L", b"\\u12", b"os\nsystem")

_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})


def _arg_for(kind: str, ch: Chooser) -> Any:
    """A random argument of an argument kind (for inserted opcodes)."""
    if kind in ("uint1",):
        return ch.integer(0, 255)
    if kind == "uint2":
        return ch.integer(0, 0xFFFF)
    if kind == "uint4":
        return ch.pick((0, 1, 255, 256, 2**31 - 1, 2**32 - 1, ch.integer(0, 2**32 - 1)))
    if kind == "int4":
        return ch.pick((0, 1, -1, 2**31 - 1, -(2**31), ch.integer(-(2**31), 2**31 - 1)))
    if kind == "uint8":
        return ch.pick((0, 1, 8, 2**62, 2**64 - 1, ch.integer(0, 64)))
    if kind in ("float8", "floatnl"):
        return ch.pick(FLOATS)
    if kind in ("long1", "long4", "decimalnl_long", "decimalnl_short"):
        return ch.pick(INTS)
    if kind == "decimalnl_memo":
        return ch.pick((0, 1, 255, 2**31, ch.integer(0, 10)))
    if kind in ("string1", "string4", "stringnl"):
        return ch.pick(PY2STRS)
    if kind in ("bytes1", "bytes4", "bytes8"):
        return ch.pick(BYTES)
    if kind == "bytearray8":
        return bytearray(ch.pick(BYTES))
    if kind in ("unicodestring1", "unicodestring4", "unicodestring8", "unicodestringnl"):
        s = ch.pick(STRS)
        return s[:60] if kind == "unicodestring1" else s
    if kind == "stringnl_noescape":
        return ch.pick(("0", "abc", "pid", "1 2"))
    if kind == "stringnl_noescape_pair":
        return ch.pick(HOSTILE_GLOBALS[:30])
    raise ValueError(kind)


def _lying(ch: Chooser, huge: bool) -> bytes:
    """An opcode whose declared length does not match its payload."""
    name = ch.pick(("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "BINUNICODE", "SHORT_BINUNICODE",
                    "BINUNICODE8", "BINSTRING", "SHORT_BINSTRING", "LONG1", "LONG4", "FRAME"))
    op = BY_NAME[name]
    width = op.arg.width
    payload = ch.blob(ch.integer(0, 12))
    if huge:
        declared = ch.pick((2**31 - 1, 2**32 - 1, 2**62, 2**63, 2**64 - 1, -1, -(2**31)))
    else:
        declared = len(payload) + ch.pick((-2, -1, 1, 2, 7))
    signed = op.arg.name in ("string4", "long4")
    if width == 1:
        head = bytes((declared & 0xFF,))
    elif width == 4:
        fmt = "<i" if signed else "<I"
        lo, hi = (-(2**31), 2**31 - 1) if signed else (0, 2**32 - 1)
        head = struct.pack(fmt, min(max(declared, lo), hi))
    else:
        head = struct.pack("<Q", declared % 2**64)
    return op.char + head + payload


class Template:
    """A real program for one sample value: its ops (without PROTO, FRAME and
    STOP), how many memo entries it writes, and its out-of-band buffers."""

    __slots__ = ("name", "proto", "ops", "memo_puts", "buffers")

    def __init__(self, name: str, proto: int, ops: list, memo_puts: int, buffers: tuple[bytes, ...]) -> None:
        self.name = name
        self.proto = proto
        self.ops = ops
        self.memo_puts = memo_puts
        self.buffers = buffers


def templates_for(runtime: Any) -> list[Template]:
    """Templates of every sample value the policy admits (see :mod:`.samples`)."""
    from .samples import admitted, pickled_samples

    out = []
    for sample in pickled_samples():
        if not admitted(sample, runtime):
            continue
        try:
            ops = [(op.opcode.name, op.arg) for op in decode(sample.data)]
        except MalformedPickle:
            continue
        body = [o for o in ops if o[0] not in ("PROTO", "FRAME", "STOP")]
        puts = sum(1 for o in body if o[0] in _MEMO_PUTS)
        out.append(Template(sample.name, sample.proto, body, puts, sample.buffers or ()))
    return out


class _Program:
    """The program being written and what the writer knows about its stack."""

    def __init__(self, proto: int, loose: bool, budget: int) -> None:
        self.proto = proto
        self.loose = loose  # opcodes of higher protocols allowed too
        self.items: list = []
        self.memo: list[bool] = []  # per memo index: is the value hashable
        self.buffers: list[bytes] = []  # one per NEXT_BUFFER, in stream order
        self.budget = budget

    def emit(self, name: str, arg: Any = None) -> None:
        self.items.append((name, arg))
        self.budget -= 1

    def has(self, name: str) -> bool:
        return self.loose or BY_NAME[name].proto <= self.proto


class Grammar:
    """Writes fuzz cases for one policy under test."""

    def __init__(self, allowed: list[tuple[str, str]], extensions: dict[int, tuple[str, str]] | None = None,
                 templates: list[Template] | None = None, max_depth: int = 5) -> None:
        self.allowed = list(allowed)
        self.extensions = dict(extensions or {})
        self.templates = list(templates or [])
        self.max_depth = max_depth

    @classmethod
    def for_policy(cls, put: Any) -> Grammar:
        """A grammar for a :class:`~safepickle.fuzzing.policyspec.PolicyUnderTest`."""
        return cls(put.allowed, put.extensions, templates_for(put.runtime))

    # -- the case --------------------------------------------------------------

    def case(self, ch: Chooser, origin: str = "grammar") -> FuzzCase:
        proto = ch.integer(0, 5)
        prog = _Program(proto, loose=ch.chance(0.1), budget=ch.integer(4, 160))
        if proto >= 2 or ch.chance(0.1):
            prog.emit("PROTO", proto if ch.chance(0.95) else ch.pick((0, 5, 6, 255)))
        if ch.chance(0.15):
            self._junk(ch, prog)
        if ch.chance(0.25):
            self.global_use(ch, prog, 0)
        else:
            self.value(ch, prog, 0)
        if ch.chance(0.1):
            self._junk(ch, prog)
        prog.emit("STOP")
        mutated = ch.chance(0.5)
        if mutated:
            for _ in range(ch.integer(1, 3)):
                ch.pick(_MUTATORS)(self, ch, prog)
        data = self.assemble(ch, prog, lie=mutated and ch.chance(0.2))
        if mutated and ch.chance(0.1):
            data = data[: ch.integer(0, len(data))]
        return FuzzCase(
            data=data,
            buffers=self._buffers(ch, prog),
            encoding=ch.pick(("ASCII",) * 6 + ("latin1", "bytes", "utf-8", "koi8_r")),
            errors=ch.pick(("strict",) * 6 + ("ignore", "replace", "surrogateescape")),
            fix_imports=ch.chance(0.9),
            origin=origin,
        )

    def _buffers(self, ch: Chooser, prog: _Program) -> tuple[bytes, ...] | None:
        bufs = list(prog.buffers)
        if not bufs:
            return tuple(ch.blob(ch.integer(0, 16)) for _ in range(ch.integer(1, 3))) if ch.chance(0.03) else None
        roll = ch.integer(0, 9)
        if roll == 0:
            return None
        if roll == 1:
            return tuple(bufs[: ch.integer(0, len(bufs) - 1)])
        if roll == 2:
            return (*bufs, ch.blob(4))
        return tuple(bufs)

    # -- values ----------------------------------------------------------------

    def value(self, ch: Chooser, prog: _Program, depth: int, hashable: bool = False) -> bool:
        """Write ops that push exactly one value; return whether it is hashable."""
        if prog.budget <= 0 or depth >= self.max_depth:
            return self.scalar(ch, prog, hashable)
        roll = ch.integer(0, 99)
        if hashable:
            if roll < 55:
                return self.scalar(ch, prog, True)
            if roll < 70:
                return self.tuple_(ch, prog, depth, True)
            if roll < 80 and prog.has("FROZENSET"):
                return self.frozenset_(ch, prog, depth)
            if roll < 90 and any(prog.memo):
                return self.ref(ch, prog, True)
            return self.scalar(ch, prog, True)
        if roll < 28:
            return self.scalar(ch, prog, False)
        if roll < 35:
            return self.list_(ch, prog, depth)
        if roll < 42:
            return self.tuple_(ch, prog, depth, False)
        if roll < 49:
            return self.dict_(ch, prog, depth)
        if roll < 52:
            return self.set_(ch, prog, depth)
        if roll < 58:
            return self.ref(ch, prog, False)
        if roll < 80:  # globals and their uses: where the policy does its work
            return self.global_use(ch, prog, depth)
        if roll < 92 and self.templates:
            return self.template(ch, prog)
        return self.special(ch, prog, depth)

    def _memoize(self, ch: Chooser, prog: _Program, hashable: bool) -> None:
        if not ch.chance(0.3):
            return
        idx = len(prog.memo)
        if prog.memo and ch.chance(0.05):
            idx = ch.integer(0, len(prog.memo) - 1)  # overwrite an entry
            prog.memo[idx] = hashable and prog.memo[idx]
        else:
            prog.memo.append(hashable)
        if prog.has("MEMOIZE") and idx == len(prog.memo) - 1 and ch.chance(0.5):
            prog.emit("MEMOIZE")
        elif prog.has("BINPUT") and idx < 256 and ch.chance(0.7):
            prog.emit("BINPUT", idx)
        elif prog.has("LONG_BINPUT") and ch.chance(0.5):
            prog.emit("LONG_BINPUT", idx)
        else:
            prog.emit("PUT", idx)

    def scalar(self, ch: Chooser, prog: _Program, hashable: bool) -> bool:
        kinds = ["int", "int", "float", "str", "str", "py2str", "bytes", "const"]
        if not hashable:
            kinds.append("bytearray")
        kind = ch.pick(kinds)
        if kind == "int":
            names = [n for n in ("INT", "LONG", "BININT", "BININT1", "BININT2", "LONG1", "LONG4") if prog.has(n)]
            name = ch.pick(names)
            if name == "BININT1":
                prog.emit(name, ch.integer(0, 255))
            elif name == "BININT2":
                prog.emit(name, ch.integer(0, 0xFFFF))
            elif name == "BININT":
                prog.emit(name, ch.pick((0, -1, 2**31 - 1, -(2**31), ch.integer(-(2**31), 2**31 - 1))))
            elif name == "INT" and ch.chance(0.2):
                prog.emit(name, ch.chance(0.5))  # 01 / 00: the booleans of protocol 0
            elif name == "INT":
                prog.emit(name, ch.pick((*INTS[:20], ch.integer(-(10**6), 10**6))))
            else:
                prog.emit(name, ch.pick((*INTS, ch.integer(-(2**40), 2**40))))
        elif kind == "float":
            prog.emit(ch.pick(["FLOAT", "BINFLOAT"] if prog.has("BINFLOAT") else ["FLOAT"]), ch.pick(FLOATS))
        elif kind == "str":
            names = [n for n in ("UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8") if prog.has(n)]
            name = ch.pick(names)
            s = ch.pick(STRS) if ch.chance(0.7) else ch.blob(ch.integer(0, 12)).decode("latin-1")
            if name == "SHORT_BINUNICODE":
                s = s[:60]
            prog.emit(name, s)
        elif kind == "py2str":
            names = [n for n in ("STRING", "BINSTRING", "SHORT_BINSTRING") if prog.has(n)]
            prog.emit(ch.pick(names), ch.pick(PY2STRS))
        elif kind == "bytes":
            names = [n for n in ("SHORT_BINBYTES", "BINBYTES", "BINBYTES8") if prog.has(n)]
            if not names:
                return self.scalar(ch, prog, hashable)
            prog.emit(ch.pick(names), ch.pick(BYTES) if ch.chance(0.7) else ch.blob(ch.integer(0, 40)))
        elif kind == "bytearray":
            if not prog.has("BYTEARRAY8"):
                return self.scalar(ch, prog, hashable)
            prog.emit("BYTEARRAY8", bytearray(ch.pick(BYTES)))
            self._memoize(ch, prog, False)
            return False
        else:
            names = [n for n in ("NONE", "NEWTRUE", "NEWFALSE") if prog.has(n)]
            prog.emit(ch.pick(names))
        self._memoize(ch, prog, True)
        return True

    def _items(self, ch: Chooser, prog: _Program, depth: int, hashable: bool, n: int) -> bool:
        ok = True
        for _ in range(n):
            ok = self.value(ch, prog, depth + 1, hashable) and ok
        return ok

    def list_(self, ch: Chooser, prog: _Program, depth: int) -> bool:
        n = ch.integer(0, 5)
        if prog.has("EMPTY_LIST") and ch.chance(0.7):
            prog.emit("EMPTY_LIST")
        else:
            prog.emit("MARK")
            if ch.chance(0.4):  # the whole list at once
                self._items(ch, prog, depth, False, n)
                prog.emit("LIST")
                self._memoize(ch, prog, False)
                return False
            prog.emit("LIST")
        self._memoize(ch, prog, False)  # before the items: they may refer to the list (recursion)
        if prog.has("APPENDS") and ch.chance(0.6):
            prog.emit("MARK")
            self._items(ch, prog, depth, False, n)
            prog.emit("APPENDS")
        else:
            for _ in range(n):
                self.value(ch, prog, depth + 1)
                prog.emit("APPEND")
        return False

    def tuple_(self, ch: Chooser, prog: _Program, depth: int, hashable: bool) -> bool:
        n = ch.integer(0, 5)
        if n == 0 and prog.has("EMPTY_TUPLE") and ch.chance(0.7):
            prog.emit("EMPTY_TUPLE")
            ok = True
        elif 1 <= n <= 3 and prog.has("TUPLE1") and ch.chance(0.6):
            ok = self._items(ch, prog, depth, hashable, n)
            prog.emit(("TUPLE1", "TUPLE2", "TUPLE3")[n - 1])
        else:
            prog.emit("MARK")
            ok = self._items(ch, prog, depth, hashable, n)
            prog.emit("TUPLE")
        self._memoize(ch, prog, ok)
        return ok

    def dict_(self, ch: Chooser, prog: _Program, depth: int) -> bool:
        n = ch.integer(0, 4)
        if prog.has("DICT") and ch.chance(0.25):
            prog.emit("MARK")
            for _ in range(n):
                self.value(ch, prog, depth + 1, True)
                self.value(ch, prog, depth + 1)
            prog.emit("DICT")
            self._memoize(ch, prog, False)
            return False
        if prog.has("EMPTY_DICT"):
            prog.emit("EMPTY_DICT")
        else:
            prog.emit("MARK")
            prog.emit("DICT")
        self._memoize(ch, prog, False)
        if prog.has("SETITEMS") and ch.chance(0.6):
            prog.emit("MARK")
            for _ in range(n):
                self.value(ch, prog, depth + 1, True)
                self.value(ch, prog, depth + 1)
            prog.emit("SETITEMS")
        else:
            for _ in range(n):
                self.value(ch, prog, depth + 1, True)
                self.value(ch, prog, depth + 1)
                prog.emit("SETITEM")
        return False

    def set_(self, ch: Chooser, prog: _Program, depth: int) -> bool:
        if not prog.has("EMPTY_SET"):
            return self.dict_(ch, prog, depth)
        prog.emit("EMPTY_SET")
        self._memoize(ch, prog, False)
        if ch.chance(0.8):
            prog.emit("MARK")
            self._items(ch, prog, depth, True, ch.integer(0, 4))
            prog.emit("ADDITEMS")
        return False

    def frozenset_(self, ch: Chooser, prog: _Program, depth: int) -> bool:
        prog.emit("MARK")
        self._items(ch, prog, depth, True, ch.integer(0, 4))
        prog.emit("FROZENSET")
        self._memoize(ch, prog, True)
        return True

    def ref(self, ch: Chooser, prog: _Program, hashable: bool) -> bool:
        choices = [i for i, h in enumerate(prog.memo) if h or not hashable]
        if not choices:
            return self.scalar(ch, prog, hashable)
        idx = ch.pick(choices)
        if prog.has("BINGET") and idx < 256 and ch.chance(0.6):
            prog.emit("BINGET", idx)
        elif prog.has("LONG_BINGET") and ch.chance(0.5):
            prog.emit("LONG_BINGET", idx)
        else:
            prog.emit("GET", idx)
        return prog.memo[idx]

    # -- globals, calls and state -------------------------------------------------

    def _name(self, ch: Chooser) -> tuple[str, str]:
        roll = ch.integer(0, 99)
        if roll < 55 and self.allowed:
            return ch.pick(self.allowed)
        if roll < 72:
            return ch.pick(CLASSIC_GADGETS)
        if roll < 90:
            return ch.pick(HOSTILE_GLOBALS)
        return ch.pick(RANDOM_MODULES), ch.pick(("x", "loads", "system", "set", "object", "Decimal", "ndarray"))

    def push_global(self, ch: Chooser, prog: _Program, module: str, name: str) -> None:
        roll = ch.integer(0, 99)
        codes = [c for c, mn in self.extensions.items() if mn == (module, name)]
        if prog.has("EXT1") and ((codes and roll < 50) or roll < 2):
            code = ch.pick(codes) if codes else ch.pick((0, 1, 255, 256, 65535, 2**31 - 1, -1))
            if 0 < code < 256 and ch.chance(0.6):
                prog.emit("EXT1", code)
            elif 0 <= code < 65536 and ch.chance(0.6):
                prog.emit("EXT2", code)
            else:
                prog.emit("EXT4", max(min(code, 2**31 - 1), -(2**31)))
        elif roll < 45 and prog.has("STACK_GLOBAL"):
            for text in (module, name):
                if ch.chance(0.15) and prog.has("MEMOIZE"):
                    # the name goes through the memo: scan must still follow it
                    prog.emit("SHORT_BINUNICODE", text[:200])
                    prog.memo.append(True)
                    prog.emit("MEMOIZE")
                    prog.emit("POP")
                    prog.emit("BINGET" if len(prog.memo) <= 256 else "LONG_BINGET", len(prog.memo) - 1)
                else:
                    prog.emit("SHORT_BINUNICODE" if len(text.encode("utf-8", "surrogatepass")) < 256
                              else "BINUNICODE", text)
            prog.emit("STACK_GLOBAL")
        else:
            if "\n" in module or "\n" in name:
                module, name = module.replace("\n", ""), name.replace("\n", "")
            if ch.chance(0.1) and prog.proto < 3:
                module = ch.pick(PY2_MODULES)
            prog.emit("GLOBAL", (module, name))

    def _args_tuple(self, ch: Chooser, prog: _Program, depth: int) -> None:
        n = ch.integer(0, 3)
        if ch.chance(0.5) or not prog.has("TUPLE1"):
            prog.emit("MARK")
            for _ in range(n):
                self._hostile_arg(ch, prog, depth)
            prog.emit("TUPLE")
        else:
            for _ in range(n):
                self._hostile_arg(ch, prog, depth)
            prog.emit(("EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3")[n])

    def _hostile_arg(self, ch: Chooser, prog: _Program, depth: int) -> None:
        if ch.chance(0.35):
            v = ch.pick(HOSTILE_ARGS)
            if isinstance(v, bool) or v is None:
                prog.emit("NONE")
            elif isinstance(v, int):
                prog.emit("LONG1" if prog.has("LONG1") else "LONG", v)
            elif isinstance(v, float):
                prog.emit("FLOAT", v)
            elif isinstance(v, str):
                prog.emit("BINUNICODE" if prog.has("BINUNICODE") else "UNICODE", v)
            elif isinstance(v, bytes) and prog.has("BINBYTES"):
                prog.emit("BINBYTES", v)
            elif isinstance(v, tuple):
                prog.emit("MARK")
                prog.emit("TUPLE")
            elif isinstance(v, list):
                prog.emit("MARK")
                prog.emit("LIST")
            else:
                prog.emit("MARK")
                prog.emit("DICT")
        else:
            self.value(ch, prog, depth + 1)

    def global_use(self, ch: Chooser, prog: _Program, depth: int) -> bool:
        module, name = self._name(ch)
        use = ch.integer(0, 9)
        if use == 0 and "\n" not in module + name:  # INST: MARK args INST module name
            prog.emit("MARK")
            for _ in range(ch.integer(0, 2)):
                self._hostile_arg(ch, prog, depth)
            prog.emit("INST", (module, name))
        elif use == 1 and prog.has("OBJ"):
            prog.emit("MARK")
            self.push_global(ch, prog, module, name)
            for _ in range(ch.integer(0, 2)):
                self._hostile_arg(ch, prog, depth)
            prog.emit("OBJ")
        else:
            self.push_global(ch, prog, module, name)
            if use <= 3:
                self._memoize(ch, prog, True)
                return True  # the global itself is the value
            if use <= 6 or not prog.has("NEWOBJ"):
                self._args_tuple(ch, prog, depth)
                prog.emit("REDUCE")
            elif use <= 8 or not prog.has("NEWOBJ_EX"):
                self._args_tuple(ch, prog, depth)
                prog.emit("NEWOBJ")
            else:
                self._args_tuple(ch, prog, depth)
                prog.emit("EMPTY_DICT")
                if ch.chance(0.5):
                    prog.emit("SHORT_BINUNICODE", ch.pick(("a", "maxlen", "tz", "__class__", "dtype")))
                    self._hostile_arg(ch, prog, depth)
                    prog.emit("SETITEM")
                prog.emit("NEWOBJ_EX")
        self._memoize(ch, prog, False)
        self._after_object(ch, prog, depth)
        return False

    def _after_object(self, ch: Chooser, prog: _Program, depth: int) -> None:
        """BUILD state, or items, on the object just made."""
        roll = ch.integer(0, 9)
        if roll < 3:
            kind = ch.integer(0, 3)
            if kind == 0:  # a __dict__ update
                prog.emit("EMPTY_DICT" if prog.has("EMPTY_DICT") else "NONE")
                if prog.has("EMPTY_DICT"):
                    for _ in range(ch.integer(0, 2)):
                        prog.emit("SHORT_BINUNICODE" if prog.has("SHORT_BINUNICODE") else "UNICODE",
                                  ch.pick(("a", "__class__", "__dict__", "_x", "__reduce__", "maxlen")))
                        self._hostile_arg(ch, prog, depth)
                        prog.emit("SETITEM")
            elif kind == 1 and prog.has("TUPLE2"):  # (dict state, slot state)
                prog.emit("NONE")
                prog.emit("EMPTY_DICT")
                prog.emit("SHORT_BINUNICODE" if prog.has("SHORT_BINUNICODE") else "UNICODE",
                          ch.pick(("__class__", "__dict__", "x", "_data")))
                self._hostile_arg(ch, prog, depth)
                prog.emit("SETITEM")
                prog.emit("TUPLE2")
            else:
                self.value(ch, prog, depth + 1)
            prog.emit("BUILD")
        elif roll == 3 and prog.has("APPENDS"):
            prog.emit("MARK")
            self._items(ch, prog, depth, False, ch.integer(0, 2))
            prog.emit("APPENDS")
        elif roll == 4 and prog.has("SETITEMS"):
            prog.emit("MARK")
            for _ in range(ch.integer(0, 2)):
                self.value(ch, prog, depth + 1, True)
                self.value(ch, prog, depth + 1)
            prog.emit("SETITEMS")
        elif roll == 5 and prog.has("ADDITEMS"):
            prog.emit("MARK")
            self._items(ch, prog, depth, True, ch.integer(0, 2))
            prog.emit("ADDITEMS")

    def template(self, ch: Chooser, prog: _Program) -> bool:
        t = ch.pick(self.templates)
        base = len(prog.memo)
        hostile = ch.chance(0.35)
        for name, arg in t.ops:
            if (name in _MEMO_PUTS and name != "MEMOIZE") or name in _MEMO_GETS:
                idx = arg + base
                if name in ("BINPUT", "BINGET") and idx > 255:
                    name = "LONG_" + name
                arg = idx
            elif hostile and arg is not None and ch.chance(0.15):
                arg = _hostile_like(ch, name, arg)
            prog.items.append((name, arg))
        prog.memo.extend([False] * t.memo_puts)
        prog.buffers.extend(t.buffers)
        prog.budget -= len(t.ops)
        if t.proto > prog.proto:
            prog.loose = True
        return False

    def special(self, ch: Chooser, prog: _Program, depth: int) -> bool:
        roll = ch.integer(0, 9)
        if roll <= 5 and prog.has("NEXT_BUFFER"):
            prog.emit("NEXT_BUFFER")
            prog.buffers.append(ch.blob(ch.integer(0, 24)))
            if ch.chance(0.5):
                prog.emit("READONLY_BUFFER")
            self._memoize(ch, prog, False)
            return False
        if roll == 6:
            prog.emit("PERSID", ch.pick(("0", "pid", "x y")))
            return False
        if roll == 7 and prog.has("BINPERSID"):
            self.scalar(ch, prog, True)
            prog.emit("BINPERSID")
            return False
        if self.extensions and prog.has("EXT1"):
            code = ch.pick(sorted(self.extensions))
            prog.emit("EXT4" if code > 0xFFFF else "EXT2" if code > 0xFF else "EXT1", code)
            return True
        return self.scalar(ch, prog, False)

    def _junk(self, ch: Chooser, prog: _Program) -> None:
        """Stack traffic that leaves the stack as it was."""
        roll = ch.integer(0, 3)
        if roll == 0:
            self.value(ch, prog, self.max_depth - 1)
            prog.emit("POP")
        elif roll == 1 and prog.has("POP_MARK"):
            prog.emit("MARK")
            self.value(ch, prog, self.max_depth - 1)
            self.value(ch, prog, self.max_depth - 1)
            prog.emit("POP_MARK")
        elif roll == 2:
            prog.emit("MARK")
            prog.emit("POP")
        else:
            self.value(ch, prog, self.max_depth - 1)
            prog.emit("DUP")
            prog.emit("POP")
            prog.emit("POP")

    # -- bytes -----------------------------------------------------------------------

    def assemble(self, ch: Chooser, prog: _Program, lie: bool = False) -> bytes:
        """Encode the items; protocol 4+ programs are framed, honestly unless
        ``lie`` (then some frame sizes are off)."""
        pieces = []
        for item in prog.items:
            if isinstance(item, (bytes, bytearray)):
                pieces.append(bytes(item))
            else:
                try:
                    pieces.append(encode_op(*item))
                except (ValueError, OverflowError, struct.error, UnicodeEncodeError, TypeError):
                    pieces.append(BY_NAME[item[0]].char)  # an argument the writer cannot spell: drop it
        if prog.proto < 4 or not pieces or ch.chance(0.2):
            return b"".join(pieces)
        head = 1 if prog.items and prog.items[0][0] == "PROTO" else 0
        out = [*pieces[:head]]
        body = pieces[head:]
        i = 0
        while i < len(body):
            n = len(body) - i if ch.chance(0.6) else ch.integer(1, len(body) - i)
            chunk = b"".join(body[i:i + n])
            size = len(chunk)
            if lie and ch.chance(0.5):
                size = max(0, size + ch.pick((-3, -1, 1, 2, 1 << 20, 2**62)))
            out.append(encode_op("FRAME", size) + chunk)
            i += n
        return b"".join(out)


def _hostile_like(ch: Chooser, name: str, arg: Any) -> Any:
    """A different argument of the same type for a template opcode."""
    if isinstance(arg, bool):
        return not arg
    if isinstance(arg, int):
        if name == "BININT1":
            return ch.pick((0, 1, 255, 127))
        if name == "BININT2":
            return ch.pick((0, 1, 65535, 256))
        if name in ("BININT", "EXT4"):
            return ch.pick((0, -1, 2**31 - 1, -(2**31)))
        if name in ("EXT1", "PROTO"):
            return ch.pick((0, 1, 255))
        if name == "EXT2":
            return ch.pick((0, 1, 65535))
        return ch.pick(INTS)
    if isinstance(arg, float):
        return ch.pick(FLOATS)
    if isinstance(arg, str):
        return ch.pick(STRS)[: 60 if name == "SHORT_BINUNICODE" else None]
    if isinstance(arg, bytearray):
        return bytearray(arg[: ch.integer(0, len(arg))] + ch.blob(ch.integer(0, 9)))
    if isinstance(arg, bytes):
        if ch.chance(0.5):
            return arg[: ch.integer(0, len(arg))]
        return (arg + ch.blob(ch.integer(1, 9)))[:255 if name in ("SHORT_BINBYTES", "SHORT_BINSTRING") else None]
    if isinstance(arg, tuple) and len(arg) == 2:
        return ch.pick(HOSTILE_GLOBALS) if ch.chance(0.5) else arg
    return arg


# -- structural mutations ---------------------------------------------------------


def _pos(ch: Chooser, prog: _Program, extra: int = 0) -> int:
    return ch.integer(0, max(0, len(prog.items) - 1 + extra))


def _m_drop(g: Grammar, ch: Chooser, prog: _Program) -> None:
    if prog.items:
        del prog.items[_pos(ch, prog)]


def _m_dup(g: Grammar, ch: Chooser, prog: _Program) -> None:
    if prog.items:
        i = _pos(ch, prog)
        prog.items.insert(i, prog.items[i])


def _m_swap(g: Grammar, ch: Chooser, prog: _Program) -> None:
    if len(prog.items) > 1:
        i, j = _pos(ch, prog), _pos(ch, prog)
        prog.items[i], prog.items[j] = prog.items[j], prog.items[i]


def _m_insert_op(g: Grammar, ch: Chooser, prog: _Program) -> None:
    op = ch.pick(OPCODES)
    arg = _arg_for(op.arg.name, ch) if op.arg is not None else None
    prog.items.insert(_pos(ch, prog, 1), (op.name, arg))


def _m_wrong_arg(g: Grammar, ch: Chooser, prog: _Program) -> None:
    """Replace an argument by one of the wrong type, length or grammar."""
    with_args = [i for i, it in enumerate(prog.items) if isinstance(it, tuple) and BY_NAME[it[0]].arg is not None]
    if not with_args:
        return _m_lying_length(g, ch, prog)
    i = ch.pick(with_args)
    op = BY_NAME[prog.items[i][0]]
    if op.arg.width is None:  # a text line: garbage, with or without its newline
        line = ch.pick(_TEXT_GARBAGE)
        tail = b"\n" if ch.chance(0.85) else b""
        second = (ch.pick(_TEXT_GARBAGE) + b"\n") if op.arg.name == "stringnl_noescape_pair" else b""
        prog.items[i] = op.char + line + tail + second
    elif op.arg.prefixed:
        prog.items[i] = _lying(ch, huge=False) if ch.chance(0.5) else op.char + ch.blob(ch.integer(0, op.arg.width))
    else:  # a fixed-width argument cut short
        prog.items[i] = op.char + ch.blob(ch.integer(0, op.arg.width - 1))


def _m_lying_length(g: Grammar, ch: Chooser, prog: _Program) -> None:
    prog.items.insert(_pos(ch, prog, 1), _lying(ch, huge=ch.chance(0.5)))


def _m_mark_confusion(g: Grammar, ch: Chooser, prog: _Program) -> None:
    name = ch.pick(("MARK", "MARK", "POP_MARK", "POP", "DUP", "APPENDS", "SETITEMS", "TUPLE", "DICT", "LIST",
                    "FROZENSET", "ADDITEMS", "OBJ", "STOP"))
    prog.items.insert(_pos(ch, prog, 1), (name, None))


def _m_memo_range(g: Grammar, ch: Chooser, prog: _Program) -> None:
    idx = ch.pick((len(prog.memo), len(prog.memo) + 1, 255, 256, 2**31 - 1, 2**32 - 1, 1 << 24, (1 << 24) + 1,
                   1_000_001))
    memo_ops = [i for i, it in enumerate(prog.items) if isinstance(it, tuple) and it[0] in (_MEMO_GETS | _MEMO_PUTS)]
    name = ch.pick(("LONG_BINGET", "LONG_BINPUT", "GET", "PUT"))
    if memo_ops and ch.chance(0.5):
        i = ch.pick(memo_ops)
        prog.items[i] = (name, idx)
    else:
        prog.items.insert(_pos(ch, prog, 1), (name, idx))


def _m_deep(g: Grammar, ch: Chooser, prog: _Program) -> None:
    """Deep nesting: many MARKs, or containers nested without any MARK, some
    of them hashed (a dict key, a frozenset item), which recurses in C."""
    n = ch.pick((999, 1001, 5000, 20000)) if ch.chance(0.95) else 150_000
    kind = ch.integer(0, 5)
    if kind == 0:
        piece = b"(" * n
    elif kind == 1:
        piece = b"]" * n + b"a" * (n - 1)  # a list nested n deep
    elif kind == 2:
        piece = b")" + b"\x85" * n  # a tuple nested n deep, no MARK at all
    elif kind == 3:
        piece = b"}" + b")" + b"\x85" * n + b"Ns"  # ... used as a dict key
    elif kind == 4:
        piece = b"(" + b")" + b"\x85" * n + b"\x91"  # ... as a frozenset item
    else:
        piece = b"(" * n + b"t" * n
    prog.items.insert(_pos(ch, prog, 1), piece)


def _m_no_stop(g: Grammar, ch: Chooser, prog: _Program) -> None:
    prog.items = [it for it in prog.items if not (isinstance(it, tuple) and it[0] == "STOP")]


def _m_py2_name(g: Grammar, ch: Chooser, prog: _Program) -> None:
    name = ch.pick(("eval", "set", "getattr", "object", "_reconstructor", "Exception", "UserDict"))
    prog.items.insert(_pos(ch, prog, 1), ("GLOBAL", (ch.pick(PY2_MODULES), name)))


def _m_extension(g: Grammar, ch: Chooser, prog: _Program) -> None:
    name = ch.pick(("EXT1", "EXT2", "EXT4"))
    code = ch.pick((0, 1, 2, 255)) if name != "EXT4" else ch.pick((0, -1, 1, 2**31 - 1, -(2**31)))
    prog.items.insert(_pos(ch, prog, 1), (name, code))


def _m_persistent(g: Grammar, ch: Chooser, prog: _Program) -> None:
    if ch.chance(0.5):
        prog.items.insert(_pos(ch, prog, 1), ("PERSID", ch.pick(("0", "x"))))
    else:
        prog.items.insert(_pos(ch, prog, 1), ("BINPERSID", None))


def _m_buffer(g: Grammar, ch: Chooser, prog: _Program) -> None:
    prog.items.insert(_pos(ch, prog, 1), ("NEXT_BUFFER", None))
    if ch.chance(0.5):
        prog.buffers.append(ch.blob(ch.integer(0, 8)))
    if ch.chance(0.5):
        prog.items.insert(_pos(ch, prog, 1), ("READONLY_BUFFER", None))


def _m_proto(g: Grammar, ch: Chooser, prog: _Program) -> None:
    prog.items.insert(_pos(ch, prog, 1), ("PROTO", ch.pick((0, 1, 2, 3, 4, 5, 6, 255))))


_MUTATORS = (_m_drop, _m_dup, _m_swap, _m_insert_op, _m_wrong_arg, _m_lying_length, _m_mark_confusion,
             _m_memo_range, _m_deep, _m_no_stop, _m_py2_name, _m_extension, _m_persistent, _m_buffer, _m_proto)


# -- hypothesis ---------------------------------------------------------------------


def pickle_cases(policy: Any = "data-only", grammar: Grammar | None = None) -> Any:
    """A hypothesis strategy of :class:`FuzzCase` for ``policy`` (a built-in
    name, a file path, a Policy, or a prepared ``PolicyUnderTest``)::

        @given(pickle_cases("stdlib"))
        def test_only_refusals_escape(case):
            try:
                safepickle.loads(case.data, policy="stdlib", **case.load_kwargs())
            except safepickle.SafePickleError:
                pass
    """
    from hypothesis import strategies as st

    if grammar is None:
        from .policyspec import PolicyUnderTest, prepare

        put = policy if isinstance(policy, PolicyUnderTest) else prepare(policy)
        grammar = Grammar.for_policy(put)

    @st.composite
    def cases(draw: Any) -> FuzzCase:
        return grammar.case(DrawChooser(draw))

    return cases()
