"""A corpus of hostile pickle streams, written opcode by opcode with raw bytes.

Every stream is assembled here from opcode bytes and ``struct`` (never with
safepickle's own encoder, so a bug in the codec cannot hide a case).  Each
:class:`HostileCase` says which :class:`safepickle.SafePickleError` subclass a
load under ``policy`` must raise, and where it can, the opcode that must be
the one refused (``at``), the limit that must be named (``limit``), and the
global that CPython's own unpickler would be asked for (``reaches``: proof that
the stream is dangerous under ``pickle.loads``).

Used by ``tests/test_hostile.py`` and by the web tests; ``CASES`` is the list.
The payloads are harmless if they ever ran (``true``, a file under /tmp), and
the tests watch them with :class:`safepickle.audit.AuditRecorder` anyway.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from safepickle.errors import ForbiddenGlobal, LimitExceeded, MalformedPickle, SafePickleError

__all__ = ["CASES", "HostileCase"]

FG, LE, MP = ForbiddenGlobal, LimitExceeded, MalformedPickle


@dataclass(frozen=True)
class HostileCase:
    """One hostile stream and the refusal it must get.

    ``policy``: a built-in policy name, or a dict for ``Policy.model_validate``
    (small limits).  ``kwargs``: extra keyword arguments of ``loads``/``load``.
    ``at``: the opcode name the error must carry (None: not checked).
    ``limit``: for ``LimitExceeded``, the limit it must name.
    ``reaches``: the first ``(module, name)`` CPython's ``find_class`` is asked
    for on these bytes.  ``copyreg_extension``: ``(module, name, code)`` to
    register with ``copyreg.add_extension`` while the case runs.
    """

    name: str
    data: bytes
    expect: type[SafePickleError]
    policy: str | dict[str, Any] = "data-only"
    kwargs: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    at: str | None = None
    limit: str | None = None
    reaches: tuple[str, str] | None = None
    needs_opcode: bool = True
    copyreg_extension: tuple[str, str, int] | None = None


# -- opcode bytes ----------------------------------------------------------

MARK, STOP, POP, POP_MARK, DUP = b"(", b".", b"0", b"1", b"2"
NONE, NEWTRUE, NEWFALSE = b"N", b"\x88", b"\x89"
REDUCE, BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX = b"R", b"b", b"i", b"o", b"\x81", b"\x92"
GLOBAL, STACK_GLOBAL = b"c", b"\x93"
APPEND, APPENDS, LIST, EMPTY_LIST = b"a", b"e", b"l", b"]"
SETITEM, SETITEMS, DICT, EMPTY_DICT = b"s", b"u", b"d", b"}"
TUPLE, EMPTY_TUPLE, TUPLE1, TUPLE2 = b"t", b")", b"\x85", b"\x86"
EMPTY_SET, ADDITEMS, FROZENSET = b"\x8f", b"\x90", b"\x91"
PERSID, BINPERSID = b"P", b"Q"
EXT1, EXT2, EXT4 = b"\x82", b"\x83", b"\x84"
MEMOIZE, FRAME = b"\x94", b"\x95"
NEXT_BUFFER, READONLY_BUFFER = b"\x97", b"\x98"
BINGET, LONG_BINGET, BINPUT, LONG_BINPUT = b"h", b"j", b"q", b"r"
BINBYTES, BINBYTES8, BYTEARRAY8, BINSTRING = b"B", b"\x8e", b"\x96", b"T"
BINUNICODE, BINUNICODE8, LONG1, LONG4 = b"X", b"\x8d", b"\x8a", b"\x8b"


def proto(n: int) -> bytes:
    return b"\x80" + bytes([n])


def uni(s: str) -> bytes:
    """BINUNICODE (protocol 1+)."""
    raw = s.encode("utf-8")
    return BINUNICODE + struct.pack("<I", len(raw)) + raw


def suni(s: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4+)."""
    raw = s.encode("utf-8")
    return b"\x8c" + struct.pack("<B", len(raw)) + raw


def sbytes(b: bytes) -> bytes:
    """SHORT_BINBYTES (protocol 3+)."""
    return b"C" + struct.pack("<B", len(b)) + b


def string0(s: str) -> bytes:
    """STRING, protocol 0 (a quoted repr on one line)."""
    return b"S'" + s.encode("ascii") + b"'\n"


def gbl(module: str, name: str) -> bytes:
    """GLOBAL: ``module\\nname\\n`` (any protocol)."""
    return GLOBAL + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n"


def sgbl(module: str, name: str) -> bytes:
    """STACK_GLOBAL from two short strings (protocol 4+)."""
    return suni(module) + suni(name) + STACK_GLOBAL


def long1(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True) if n else b""
    return LONG1 + struct.pack("<B", len(raw)) + raw


def integer(n: int) -> bytes:
    """The shortest binary int opcode for ``n`` (protocol 1+, LONG1 needs 2+)."""
    if 0 <= n < 256:
        return b"K" + struct.pack("<B", n)
    if 0 <= n < 65536:
        return b"M" + struct.pack("<H", n)
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    return long1(n)


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def call(fn: bytes, *args: bytes) -> bytes:
    """``fn(*args)`` through REDUCE."""
    return fn + tup(*args) + REDUCE


def call0(fn: bytes, *args: bytes) -> bytes:
    """``fn(*args)`` through REDUCE, protocol 0 (STRING arguments)."""
    return fn + MARK + b"".join(args) + TUPLE + REDUCE


def frame(payload: bytes) -> bytes:
    return FRAME + struct.pack("<Q", len(payload)) + payload


def pad20(head: bytes) -> bytes:
    """Pad a stream with NONE bytes to 20 bytes (a tiny input declaring a lot)."""
    assert len(head) <= 20
    return head + NONE * (20 - len(head))


def policy(name: str, base: str = "data-only", **limits: float) -> dict[str, Any]:
    """A policy dict extending ``base`` with small limits."""
    return {"name": name, "description": "hostile corpus", "extends": [base], "limits": limits}


P2, P4 = proto(2), proto(4)
TRUE_CMD = "true"
MARKER = "/tmp/safepickle-hostile-marker"

CASES: list[HostileCase] = []


def case(name: str, data: bytes, expect: type[SafePickleError], note: str, **kw: Any) -> None:
    CASES.append(HostileCase(name=name, data=data, expect=expect, note=note, **kw))


# -- code execution through every global-taking opcode ---------------------

case("global-os-system-p0", call0(gbl("os", "system"), string0(TRUE_CMD)) + STOP, FG,
     "the classic: GLOBAL os.system + REDUCE, protocol 0", at="GLOBAL", reaches=("os", "system"))
case("global-posix-system-p1", call(gbl("posix", "system"), uni(TRUE_CMD)) + STOP, FG,
     "os.system under its real module name", at="GLOBAL", reaches=("posix", "system"))
case("global-nt-system-p2", P2 + call(gbl("nt", "system"), uni(TRUE_CMD)) + STOP, FG,
     "Windows' os module: refused before any import is tried", at="GLOBAL", reaches=("nt", "system"))
case("global-os-popen-p2", P2 + call(gbl("os", "popen"), uni(TRUE_CMD)) + STOP, FG,
     "os.popen", at="GLOBAL", reaches=("os", "popen"))
case("global-builtins-eval-p2",
     P2 + call(gbl("builtins", "eval"), uni("__import__('os').system('true')")) + STOP, FG,
     "eval of a source string", at="GLOBAL", reaches=("builtins", "eval"))
case("global-builtins-exec-p3", proto(3) + call(gbl("builtins", "exec"), uni("import os")) + STOP, FG,
     "exec of a source string", at="GLOBAL", reaches=("builtins", "exec"))
case("global-builtins-compile-p2", P2 + call(gbl("builtins", "compile"), uni("1"), uni("x"), uni("eval")) + STOP,
     FG, "compile", at="GLOBAL", reaches=("builtins", "compile"))
case("global-builtins-getattr-p2",
     P2 + call(gbl("builtins", "getattr"), gbl("builtins", "set"), uni("mro")) + STOP, FG,
     "getattr walks from an allowed object to anything", at="GLOBAL", reaches=("builtins", "getattr"))
case("global-builtins-setattr-p2",
     P2 + call(gbl("builtins", "setattr"), gbl("builtins", "set"), uni("x"), NONE) + STOP, FG,
     "setattr on a class", at="GLOBAL", reaches=("builtins", "setattr"))
case("global-builtins-import-p2", P2 + call(gbl("builtins", "__import__"), uni("os")) + STOP, FG,
     "__import__", at="GLOBAL", reaches=("builtins", "__import__"))
case("global-builtins-open-p2", P2 + call(gbl("builtins", "open"), uni(MARKER), uni("w")) + STOP, FG,
     "open a file for writing", at="GLOBAL", reaches=("builtins", "open"))
case("global-builtins-breakpoint-p2", P2 + call(gbl("builtins", "breakpoint")) + STOP, FG,
     "breakpoint() would start a debugger", at="GLOBAL", reaches=("builtins", "breakpoint"))
case("global-builtins-type-p2",
     P2 + call(gbl("builtins", "type"), uni("X"), tup(), EMPTY_DICT) + STOP, FG,
     "type(name, bases, ns) creates classes", at="GLOBAL", reaches=("builtins", "type"))
case("stack-global-subprocess-popen-p4",
     P4 + call(sgbl("subprocess", "Popen"), EMPTY_LIST + MARK + suni(TRUE_CMD) + APPENDS) + STOP, FG,
     "STACK_GLOBAL subprocess.Popen", at="STACK_GLOBAL", reaches=("subprocess", "Popen"))
case("stack-global-subprocess-tree-p4",
     P4 + call(sgbl("subprocess.evil", "run"), suni(TRUE_CMD)) + STOP, FG,
     "a submodule of a denied tree is denied without import", at="STACK_GLOBAL",
     reaches=("subprocess.evil", "run"))
case("stack-global-posixsubprocess-p4", P4 + call(sgbl("_posixsubprocess", "fork_exec")) + STOP, FG,
     "the C helper behind subprocess", at="STACK_GLOBAL", reaches=("_posixsubprocess", "fork_exec"))
case("stack-global-multiprocessing-p4", P4 + call(sgbl("multiprocessing.popen_fork", "Popen"), NONE) + STOP, FG,
     "process creation through multiprocessing", at="STACK_GLOBAL",
     reaches=("multiprocessing.popen_fork", "Popen"))
case("inst-os-system-p0", MARK + string0(TRUE_CMD) + INST + b"os\nsystem\n" + STOP, FG,
     "INST calls the class it names with the marked items", at="INST", reaches=("os", "system"))
case("inst-subprocess-check-output-p0",
     MARK + string0(TRUE_CMD) + INST + b"subprocess\ncheck_output\n" + STOP, FG,
     "INST with a function", at="INST", reaches=("subprocess", "check_output"))
case("obj-os-system-p1", MARK + gbl("os", "system") + uni(TRUE_CMD) + OBJ + STOP, FG,
     "OBJ calls the first marked item with the rest", at="GLOBAL", reaches=("os", "system"))
case("newobj-subprocess-popen-p2", P2 + gbl("subprocess", "Popen") + tup(uni(TRUE_CMD)) + NEWOBJ + STOP, FG,
     "NEWOBJ: cls.__new__(cls, *args)", at="GLOBAL", reaches=("subprocess", "Popen"))
case("newobj-ex-subprocess-popen-p4",
     P4 + sgbl("subprocess", "Popen") + tup(suni(TRUE_CMD)) + EMPTY_DICT + suni("shell") + NEWTRUE + SETITEM
     + NEWOBJ_EX + STOP, FG, "NEWOBJ_EX with keyword arguments", at="STACK_GLOBAL",
     reaches=("subprocess", "Popen"))
case("reduce-pty-spawn-p2", P2 + call(gbl("pty", "spawn"), uni(TRUE_CMD)) + STOP, FG,
     "pty.spawn", at="GLOBAL", reaches=("pty", "spawn"))

# -- extension codes ---------------------------------------------------------

case("ext1-unregistered-p2", P2 + EXT1 + b"\x01" + STOP, FG,
     "EXT1 with no policy table", at="EXT1")
case("ext2-unregistered-p2", P2 + EXT2 + struct.pack("<H", 1000) + STOP, FG,
     "EXT2 with no policy table", at="EXT2")
case("ext4-unregistered-p2", P2 + EXT4 + struct.pack("<i", 2**30) + STOP, FG,
     "EXT4 with no policy table", at="EXT4")
case("ext1-registered-in-copyreg", P2 + EXT1 + b"\xf0" + tup(uni(TRUE_CMD)) + REDUCE + STOP, FG,
     "copyreg maps code 0xf0 to os.system in this process: codes must come from the policy",
     at="EXT1", reaches=("os", "system"), copyreg_extension=("os", "system", 0xF0))
case("ext4-registered-in-copyreg", P2 + EXT4 + struct.pack("<i", 0x7FFF0001) + tup(uni("1")) + REDUCE + STOP, FG,
     "copyreg maps a 4-byte code to builtins.eval", at="EXT4", reaches=("builtins", "eval"),
     copyreg_extension=("builtins", "eval", 0x7FFF0001))
case("ext1-not-in-policy-table", P2 + EXT1 + b"\x02" + STOP, FG,
     "the policy maps code 1 only", at="EXT1",
     policy={"name": "ext-table", "extends": ["data-only"], "extensions": {1: "builtins:set"}})
case("ext1-code-zero", P2 + EXT1 + b"\x00" + STOP, MP, "extension code 0 is invalid", at="EXT1")
case("ext4-negative-code", P2 + EXT4 + struct.pack("<i", -1) + STOP, MP,
     "negative extension code", at="EXT4")

# -- Python 2 names (mapped by fix_imports, then checked) --------------------

case("py2-builtin-eval-p0", call0(gbl("__builtin__", "eval"), string0("1")) + STOP, FG,
     "__builtin__ maps to builtins", at="GLOBAL", reaches=("__builtin__", "eval"))
case("py2-builtin-getattr-p2",
     P2 + call(gbl("__builtin__", "getattr"), gbl("__builtin__", "set"), uni("mro")) + STOP, FG,
     "py2 getattr", at="GLOBAL", reaches=("__builtin__", "getattr"))
case("py2-commands-getoutput-p1", call(gbl("commands", "getoutput"), uni(TRUE_CMD)) + STOP, FG,
     "commands maps to subprocess", at="GLOBAL", reaches=("commands", "getoutput"))
case("py2-cpickle-loads-p2", P2 + call(gbl("cPickle", "loads"), uni("x")) + STOP, FG,
     "cPickle maps to pickle", at="GLOBAL", reaches=("cPickle", "loads"))
case("py2-urllib2-urlopen-p2", P2 + call(gbl("urllib2", "urlopen"), uni("http://127.0.0.1:9/")) + STOP, FG,
     "urllib2 maps to urllib.request", at="GLOBAL", reaches=("urllib2", "urlopen"))
case("py2-builtin-eval-no-fix-imports", P2 + call(gbl("__builtin__", "eval"), uni("1")) + STOP, FG,
     "unmapped py2 name", at="GLOBAL", kwargs={"fix_imports": False}, reaches=("__builtin__", "eval"))
case("py2-builtin-eval-p3", proto(3) + call(gbl("__builtin__", "eval"), uni("1")) + STOP, FG,
     "py2 names are not mapped at protocol 3", at="GLOBAL", reaches=("__builtin__", "eval"))

# -- attribute walking, private and dunder names, bad names -----------------

case("walk-posixpath-os-system-p4", P4 + call(sgbl("posixpath", "os.system"), suni(TRUE_CMD)) + STOP, FG,
     "posixpath imports os: walking posixpath.os.system must not reach it", at="STACK_GLOBAL",
     reaches=("posixpath", "os.system"))
case("walk-posixpath-global-p4", P4 + call(gbl("posixpath", "os.system"), suni(TRUE_CMD)) + STOP, FG,
     "same walk through GLOBAL at protocol 4", at="GLOBAL", reaches=("posixpath", "os.system"))
case("walk-numpy-core-p4", P4 + sgbl("numpy", "core.multiarray._reconstruct") + STOP, FG,
     "a dotted walk into a submodule", at="STACK_GLOBAL", policy="numpy-only",
     reaches=("numpy", "core.multiarray._reconstruct"))
case("walk-object-subclasses-p4", P4 + call(sgbl("builtins", "object.__subclasses__")) + STOP, FG,
     "object.__subclasses__ lists every class in the process", at="STACK_GLOBAL",
     reaches=("builtins", "object.__subclasses__"))
case("walk-ordereddict-globals-p4", P4 + sgbl("collections", "OrderedDict.__init__.__globals__") + STOP, FG,
     "a method's __globals__ is a module namespace", at="STACK_GLOBAL", policy="stdlib",
     reaches=("collections", "OrderedDict.__init__.__globals__"))
case("walk-set-dunder-method-p4", P4 + sgbl("builtins", "set.__reduce_ex__") + STOP, FG,
     "a dunder method of an allowed class", at="STACK_GLOBAL", reaches=("builtins", "set.__reduce_ex__"))
case("walk-codecs-self-p4", P4 + sgbl("_codecs", "encode.__self__") + STOP, FG,
     "a builtin function's __self__ is its module", at="STACK_GLOBAL", reaches=("_codecs", "encode.__self__"))
case("walk-dotted-at-p2", P2 + gbl("builtins", "set.mro") + STOP, FG,
     "dotted names only exist from protocol 4", at="GLOBAL", reaches=("builtins", "set.mro"))
case("private-copyreg-registry-p4", P4 + sgbl("copyreg", "_extension_registry") + STOP, FG,
     "a private module global", at="STACK_GLOBAL", reaches=("copyreg", "_extension_registry"))
case("private-collections-sys-p4", P4 + sgbl("collections", "_sys") + STOP, FG,
     "a private alias of a module", at="STACK_GLOBAL", policy="stdlib", reaches=("collections", "_sys"))
case("dunder-copyreg-builtins-p4", P4 + sgbl("copyreg", "__builtins__") + STOP, FG,
     "a module's __builtins__", at="STACK_GLOBAL", reaches=("copyreg", "__builtins__"))
case("dunder-builtins-loader-p4", P4 + sgbl("builtins", "__loader__") + STOP, FG,
     "a module's __loader__", at="STACK_GLOBAL", reaches=("builtins", "__loader__"))
case("main-module-global-p2", P2 + gbl("__main__", "run") + STOP, FG,
     "__main__ is never implied", at="GLOBAL", reaches=("__main__", "run"))
case("locals-qualname-p4", P4 + sgbl("collections", "namedtuple.<locals>.x") + STOP, FG,
     "<locals> names are never resolvable", at="STACK_GLOBAL", reaches=("collections", "namedtuple.<locals>.x"))
case("relative-module-p2", P2 + gbl(".os", "system") + STOP, FG,
     "a relative module name", at="GLOBAL", reaches=(".os", "system"))
case("empty-module-p4", P4 + sgbl("", "eval") + STOP, FG, "an empty module name", at="STACK_GLOBAL",
     reaches=("", "eval"))
case("nul-in-module-p4", P4 + sgbl("os\x00", "system") + STOP, FG, "a NUL byte in a module name",
     at="STACK_GLOBAL", reaches=("os\x00", "system"))
case("wildcard-module-object-p4", P4 + sgbl("collections", "abc") + STOP, FG,
     "module:* admits objects defined in that module, never a submodule",
     at="STACK_GLOBAL", policy={"name": "collections-wild", "extends": ["data-only"], "allow": ["collections:*"]},
     reaches=("collections", "abc"))
case("global-non-utf8-p0", GLOBAL + b"\xff\xfe\nx\n" + STOP, MP, "GLOBAL names are UTF-8", at="GLOBAL")
case("stack-global-non-str-p4", P4 + integer(1) + integer(2) + STACK_GLOBAL + STOP, MP,
     "STACK_GLOBAL takes two str", at="STACK_GLOBAL")

# -- nested loaders and resolvers behind allowed-looking callables ----------

_INNER = call0(gbl("os", "system"), string0(TRUE_CMD)) + STOP
for _mod, _name, _arg, _pol in [
    ("pickle", "loads", sbytes(_INNER), "data-only"),
    ("_pickle", "loads", sbytes(_INNER), "data-only"),
    ("pickle", "Unpickler", sbytes(_INNER), "data-only"),
    ("marshal", "loads", sbytes(b"\xe9\x01\x00\x00\x00"), "data-only"),
    ("numpy", "load", suni(MARKER), "numpy-only"),
    ("numpy.lib.format", "read_array", suni(MARKER), "numpy-only"),
    ("numpy", "fromfile", suni(MARKER), "numpy-only"),
    ("numpy", "memmap", suni(MARKER), "numpy-only"),
    ("torch", "load", suni(MARKER), "numpy-only"),
    ("joblib", "load", suni(MARKER), "numpy-only"),
    ("dill", "loads", sbytes(_INNER), "data-only"),
    ("shelve", "open", suni(MARKER), "stdlib"),
    ("pkgutil", "resolve_name", suni("os:system"), "stdlib"),
    ("pydoc", "locate", suni("os.system"), "stdlib"),
    ("importlib", "import_module", suni("os"), "stdlib"),
    ("functools", "partial", gbl("os", "system"), "stdlib"),
    ("operator", "attrgetter", suni("__class__"), "stdlib"),
    ("operator", "itemgetter", integer(0), "stdlib"),
    ("operator", "methodcaller", suni("system"), "stdlib"),
    ("safepickle", "loads", sbytes(_INNER), "data-only"),
    ("runpy", "run_path", suni(MARKER), "stdlib"),
    ("timeit", "timeit", suni("import os"), "stdlib"),
    ("logging.config", "dictConfig", EMPTY_DICT, "stdlib"),
    ("ctypes", "CDLL", NONE, "stdlib"),
    ("socket", "create_connection", tup(suni("127.0.0.1"), integer(9)), "stdlib"),
    ("webbrowser", "open", suni("http://127.0.0.1:9/"), "stdlib"),
    ("shutil", "rmtree", suni(MARKER), "stdlib"),
    ("sys", "modules", NONE, "stdlib"),
]:
    case(f"loader-{_mod}-{_name}", P4 + call(sgbl(_mod, _name), _arg) + STOP, FG,
         f"{_mod}.{_name} would run code, load again or touch the system", at="STACK_GLOBAL",
         policy=_pol, reaches=(_mod, _name))

# -- BUILD on what it must never touch ------------------------------------

_STATE = EMPTY_DICT + suni("x") + integer(1) + SETITEM
case("build-on-class-p4", P4 + sgbl("builtins", "set") + _STATE + BUILD + STOP, FG,
     "BUILD on an allowed class would set class attributes", at="BUILD", reaches=("builtins", "set"))
case("build-on-class-slotstate-p4",
     P4 + sgbl("builtins", "bytearray") + tup(NONE, _STATE) + BUILD + STOP, FG,
     "slot state (setattr) on a class", at="BUILD", reaches=("builtins", "bytearray"))
case("build-on-builtin-function-p4", P4 + sgbl("_codecs", "encode") + _STATE + BUILD + STOP, FG,
     "BUILD on a function", at="BUILD", reaches=("_codecs", "encode"))
case("build-on-python-function-p4",
     P4 + sgbl("copyreg", "_reconstructor") + tup(NONE, EMPTY_DICT + suni("__kwdefaults__") + EMPTY_DICT + SETITEM)
     + BUILD + STOP, FG, "BUILD replacing a function's defaults", at="BUILD",
     reaches=("copyreg", "_reconstructor"))
case("build-on-module-p4", P4 + sgbl("numpy", "ma") + _STATE + BUILD + STOP, FG,
     "a module is never handed over, so never built on", at="STACK_GLOBAL", policy="numpy-only",
     reaches=("numpy", "ma"))
case("build-on-allowed-constant-p4", P4 + sgbl("builtins", "Ellipsis") + _STATE + BUILD + STOP, FG,
     "an allowed global the load did not create", at="BUILD", reaches=("builtins", "Ellipsis"))
case("build-on-int-p2", P2 + integer(7) + EMPTY_DICT + uni("x") + integer(1) + SETITEM + BUILD + STOP, FG,
     "BUILD on an int", at="BUILD")
case("build-on-object-instance-p2",
     P2 + call(gbl("copyreg", "_reconstructor"), gbl("builtins", "object"), gbl("builtins", "object"), NONE)
     + EMPTY_DICT + uni("x") + integer(1) + SETITEM + BUILD + STOP, FG,
     "a bare object() is no allowed type", at="BUILD", reaches=("copyreg", "_reconstructor"))
_OD = call(sgbl("collections", "OrderedDict"))
case("build-slotstate-class-swap-p4",
     P4 + _OD + tup(NONE, EMPTY_DICT + suni("__class__") + sgbl("collections", "defaultdict") + SETITEM)
     + BUILD + STOP, FG, "slot state assigning __class__", at="BUILD", policy="stdlib",
     reaches=("collections", "OrderedDict"))
case("build-slotstate-dict-replace-p4",
     P4 + _OD + tup(NONE, EMPTY_DICT + suni("__dict__") + EMPTY_DICT + SETITEM) + BUILD + STOP, FG,
     "slot state replacing __dict__", at="BUILD", policy="stdlib", reaches=("collections", "OrderedDict"))

case("build-setstate-hijack-p4",
     P4 + _OD + EMPTY_DICT + suni("__setstate__") + sgbl("builtins", "bytearray") + SETITEM + BUILD
     + integer(10**12) + BUILD + STOP, FG,
     "an instance-dict __setstate__ is never called: the second BUILD is refused (rule build-setstate)",
     at="BUILD", policy="stdlib", reaches=("collections", "OrderedDict"))

# -- item assignment / append / add on non-containers -----------------------

case("setitem-on-class-p2", P2 + gbl("builtins", "set") + integer(1) + integer(2) + SETITEM + STOP, FG,
     "SETITEM on a class", at="SETITEM", reaches=("builtins", "set"))
case("setitems-on-class-p2",
     P2 + gbl("builtins", "bytearray") + MARK + integer(1) + integer(2) + SETITEMS + STOP, FG,
     "SETITEMS on a class", at="SETITEMS", reaches=("builtins", "bytearray"))
case("setitem-on-int-p2", P2 + integer(5) + integer(1) + integer(2) + SETITEM + STOP, FG,
     "SETITEM on an int", at="SETITEM")
case("setitem-on-function-p2", P2 + gbl("_codecs", "encode") + integer(1) + integer(2) + SETITEM + STOP, FG,
     "SETITEM on a function", at="SETITEM", reaches=("_codecs", "encode"))
case("append-on-class-p2", P2 + gbl("builtins", "set") + integer(1) + APPEND + STOP, FG,
     "APPEND on a class", at="APPEND", reaches=("builtins", "set"))
case("appends-on-allowed-constant-p2",
     P2 + gbl("builtins", "Ellipsis") + MARK + integer(1) + APPENDS + STOP, FG,
     "APPENDS on an allowed global constant", at="APPENDS", reaches=("builtins", "Ellipsis"))
case("appends-on-object-instance-p2",
     P2 + call(gbl("copyreg", "_reconstructor"), gbl("builtins", "object"), gbl("builtins", "object"), NONE)
     + MARK + integer(1) + APPENDS + STOP, FG, "APPENDS on a bare object()", at="APPENDS",
     reaches=("copyreg", "_reconstructor"))
case("additems-on-class-p4", P4 + sgbl("builtins", "frozenset") + MARK + integer(1) + ADDITEMS + STOP, FG,
     "ADDITEMS on a class", at="ADDITEMS", reaches=("builtins", "frozenset"))
case("additems-on-int-p4", P4 + integer(3) + MARK + integer(1) + ADDITEMS + STOP, FG,
     "ADDITEMS on an int", at="ADDITEMS")

# -- calling what no policy handed over -------------------------------------

case("reduce-on-list-p2", P2 + EMPTY_LIST + EMPTY_TUPLE + REDUCE + STOP, FG,
     "REDUCE whose callable is a list", at="REDUCE")
case("reduce-on-call-result-p2",
     P2 + call(gbl("_codecs", "encode"), uni("a"), uni("latin1")) + EMPTY_TUPLE + REDUCE + STOP, FG,
     "REDUCE whose callable is the result of another call", at="REDUCE", reaches=("_codecs", "encode"))
case("reduce-on-str-p2", P2 + uni("os.system") + tup(uni(TRUE_CMD)) + REDUCE + STOP, FG,
     "REDUCE whose callable is a str", at="REDUCE")
case("newobj-on-list-p2", P2 + EMPTY_LIST + EMPTY_TUPLE + NEWOBJ + STOP, FG,
     "NEWOBJ whose class is a list", at="NEWOBJ")
case("newobj-ex-on-list-p4", P4 + EMPTY_LIST + EMPTY_TUPLE + EMPTY_DICT + NEWOBJ_EX + STOP, FG,
     "NEWOBJ_EX whose class is a list", at="NEWOBJ_EX")
case("obj-on-list-p1", MARK + EMPTY_LIST + integer(1) + OBJ + STOP, FG,
     "OBJ whose class is a list", at="OBJ")

# -- memo tricks -------------------------------------------------------------

case("binget-unset-p2", P2 + BINGET + b"\x05" + STOP, MP, "GET of a memo index never PUT", at="BINGET")
case("get-text-unset-p0", b"g7\n" + STOP, MP, "text GET of an unset index", at="GET")
case("long-binget-unset-p2", P2 + integer(1) + LONG_BINPUT + struct.pack("<I", 0) + LONG_BINGET
     + struct.pack("<I", 1000) + STOP, MP, "LONG_BINGET of an unset index", at="LONG_BINGET")
case("long-binput-huge-index-p2", P2 + integer(1) + LONG_BINPUT + struct.pack("<I", 2**32 - 1) + STOP, LE,
     "a memo index far beyond max_memo", at="LONG_BINPUT", limit="max_memo")
case("put-text-huge-index-p0", b"I1\np99999999999999999999\n" + STOP, LE,
     "a text PUT index beyond any memo", at="PUT", limit="max_memo")
case("put-negative-index-p0", b"I1\np-1\n" + STOP, MP, "negative PUT index", at="PUT")
case("sparse-memo-default-limit-p2", P2 + integer(1) + LONG_BINPUT + struct.pack("<I", 2**25) + STOP, LE,
     "one sparse index above the default max_memo (2**24)", at="LONG_BINPUT", limit="max_memo")
case("sparse-memo-tight-limit-p2", P2 + integer(1) + LONG_BINPUT + struct.pack("<I", 5000) + STOP, LE,
     "a sparse index above a small max_memo", at="LONG_BINPUT", limit="max_memo",
     policy=policy("tight-memo", max_memo=1000))
case("memo-bomb-memoize-p4", P4 + (integer(1) + MEMOIZE + POP) * 200 + NONE + STOP, LE,
     "more memo entries than max_memo", at="MEMOIZE", limit="max_memo",
     policy=policy("tight-memo", max_memo=100))
_laughs = P2 + EMPTY_LIST + LONG_BINPUT + struct.pack("<I", 0)
for _i in range(1, 2001):
    _prev = struct.pack("<I", _i - 1)
    _laughs += MARK + LONG_BINGET + _prev + LONG_BINGET + _prev + LIST + LONG_BINPUT + struct.pack("<I", _i)
case("billion-laughs-p2", _laughs + STOP, LE,
     "GET-doubling: 2000 levels of lists of two references (2**2000 leaves)",
     limit="max_ops", policy=policy("tight-ops", max_ops=1000))
case("dup-bomb-p2", P2 + integer(1) + DUP * 100_000 + STOP, LE,
     "100k DUPs under a small op budget", at="DUP", limit="max_ops", policy=policy("tight-ops", max_ops=1000))

# -- frames ------------------------------------------------------------------

case("frame-straddle-p4", P4 + FRAME + struct.pack("<Q", 3) + b"J\x01\x00\x00\x00" + STOP, MP,
     "BININT crosses the end of its frame", at="BININT")
case("frame-in-frame-p4", P4 + frame(integer(1) + frame(integer(2) + STOP)), MP,
     "a FRAME while the current one has bytes left", at="FRAME")
case("frame-longer-than-data-p4", P4 + FRAME + struct.pack("<Q", 255) + integer(1) + STOP, MP,
     "the frame declares more than the input has", at="FRAME")
case("frame-2-62-p4", pad20(P4 + FRAME + struct.pack("<Q", 2**62)), MP,
     "a 20-byte input declaring a 4 EiB frame", at="FRAME")
case("frame-unknown-opcode-p4", P4 + frame(integer(1) + b"\xff" + STOP), MP,
     "an unknown opcode inside a frame", at=None)

# -- huge declared lengths on a 20-byte input --------------------------------

for _label, _op, _fmt, _n, _pr in [
    ("binbytes8-2-62", BINBYTES8, "<Q", 2**62, 4),
    ("binunicode8-2-62", BINUNICODE8, "<Q", 2**62, 4),
    ("bytearray8-2-62", BYTEARRAY8, "<Q", 2**62, 5),
    ("binbytes8-2-31", BINBYTES8, "<Q", 2**31 - 1, 4),
    ("binunicode8-2-31", BINUNICODE8, "<Q", 2**31 - 1, 4),
    ("bytearray8-2-31", BYTEARRAY8, "<Q", 2**31 - 1, 5),
    ("binstring-2-31", BINSTRING, "<i", 2**31 - 1, 1),
    ("long4-2-31", LONG4, "<i", 2**31 - 1, 2),
    ("binbytes-2-32", BINBYTES, "<I", 2**32 - 1, 3),
    ("binunicode-2-32", BINUNICODE, "<I", 2**32 - 1, 1),
]:
    _names = {BINBYTES8: "BINBYTES8", BINUNICODE8: "BINUNICODE8", BYTEARRAY8: "BYTEARRAY8",
              BINSTRING: "BINSTRING", LONG4: "LONG4", BINBYTES: "BINBYTES", BINUNICODE: "BINUNICODE"}
    case(f"huge-{_label}", pad20(proto(_pr) + _op + struct.pack(_fmt, _n)), MP,
         f"declares {_n} bytes, has 20: checked before allocating", at=_names[_op])
case("binstring-negative-p1", pad20(BINSTRING + struct.pack("<i", -1)), MP, "negative BINSTRING length",
     at="BINSTRING")
case("long4-negative-p2", pad20(P2 + LONG4 + struct.pack("<i", -5)), MP, "negative LONG4 length", at="LONG4")

# -- deep nesting ------------------------------------------------------------

case("million-marks", MARK * 1_000_000 + STOP, LE, "1,000,000 open MARKs", at="MARK", limit="max_depth")
case("marks-over-tight-depth", P2 + MARK * 11 + NONE + STOP, LE, "11 MARKs over max_depth 10",
     at="MARK", limit="max_depth", policy=policy("tight-depth", max_depth=10))

# -- hash-colliding keys: all of i * (2**61 - 1) hash to 0 ------------------

_M61 = 2**61 - 1
_COLLIDING = 30_000
case("hash-collide-setitems-p4",
     P4 + EMPTY_DICT + MARK + b"".join(long1(i * _M61) + NONE for i in range(_COLLIDING)) + SETITEMS + STOP,
     LE, "30k colliding int keys in one SETITEMS (seconds of CPU in one opcode)", at="SETITEMS",
     limit="max_seconds", policy=policy("tight-time", max_seconds=0.5))
case("hash-collide-frozenset-p4",
     P4 + MARK + b"".join(long1(i * _M61) for i in range(_COLLIDING)) + FROZENSET + STOP,
     LE, "30k colliding int keys in one FROZENSET", at="FROZENSET",
     limit="max_seconds", policy=policy("tight-time", max_seconds=0.5))

# -- amplifying arguments ----------------------------------------------------

_TERA = 10**12
case("bytearray-int-amplify-p2", P2 + call(gbl("builtins", "bytearray"), integer(_TERA)) + STOP, FG,
     "bytearray(10**12): 9 bytes asking for a terabyte", at="REDUCE", reaches=("builtins", "bytearray"))
case("bytes-int-amplify-p2", P2 + call(gbl("builtins", "bytes"), integer(_TERA)) + STOP, FG,
     "bytes(int) allocates", at="REDUCE", reaches=("builtins", "bytes"))
case("newobj-bytes-int-amplify-p2", P2 + gbl("builtins", "bytes") + tup(integer(_TERA)) + NEWOBJ + STOP, FG,
     "bytes.__new__(bytes, 10**12) allocates too: guards cover NEWOBJ", at="NEWOBJ",
     reaches=("builtins", "bytes"))
case("reconstructor-bytearray-int-p2",
     P2 + call(gbl("copyreg", "_reconstructor"), gbl("builtins", "bytearray"), gbl("builtins", "bytearray"),
               integer(_TERA)) + STOP, FG,
     "_reconstructor calls bytearray.__init__(obj, 10**12)", at="REDUCE", reaches=("copyreg", "_reconstructor"))
case("codecs-encode-rot13-p2", P2 + call(gbl("_codecs", "encode"), uni("abc"), uni("rot13")) + STOP, FG,
     "_codecs.encode is admitted for latin-1 only", at="REDUCE", reaches=("_codecs", "encode"))
case("codecs-encode-utf7-p2", P2 + call(gbl("_codecs", "encode"), uni("abc"), uni("utf-7")) + STOP, FG,
     "_codecs.encode with another codec", at="REDUCE", reaches=("_codecs", "encode"))
case("bytearray-str-utf7-p2", P2 + call(gbl("builtins", "bytearray"), uni("abc"), uni("utf-7")) + STOP, FG,
     "bytearray(str, codec) with a codec other than latin-1", at="REDUCE", reaches=("builtins", "bytearray"))
_RECON = sgbl("numpy._core.multiarray", "_reconstruct")
case("numpy-reconstruct-huge-shape-p4",
     P4 + call(_RECON, sgbl("numpy", "ndarray"), tup(integer(_TERA)), sbytes(b"b")) + STOP, LE,
     "an empty-array constructor asked for 10**12 elements", at="REDUCE", policy="numpy-only",
     reaches=("numpy._core.multiarray", "_reconstruct"))
case("numpy1-reconstruct-huge-shape-p2",
     P2 + call(gbl("numpy.core.multiarray", "_reconstruct"), gbl("numpy", "ndarray"), tup(integer(_TERA)),
               call(gbl("_codecs", "encode"), uni("b"), uni("latin1"))) + STOP, LE,
     "the same under the NumPy 1.x module name", at="REDUCE", policy="numpy-only",
     reaches=("numpy.core.multiarray", "_reconstruct"))
case("numpy-mareconstruct-huge-shape-p4",
     P4 + call(sgbl("numpy.ma.core", "_mareconstruct"), sgbl("numpy.ma", "MaskedArray"),
               sgbl("numpy", "ndarray"), tup(integer(_TERA)), sbytes(b"b")) + STOP, LE,
     "masked-array constructor with a huge base shape", at="REDUCE", policy="numpy-only",
     reaches=("numpy.ma.core", "_mareconstruct"))
_DTYPE_O = (call(sgbl("numpy", "dtype"), suni("O8"), NEWFALSE, NEWTRUE)
            + tup(integer(3), suni("|"), NONE, NONE, NONE, integer(-1), integer(-1), integer(63)) + BUILD)
case("numpy-setstate-huge-object-shape-p4",
     P4 + call(_RECON, sgbl("numpy", "ndarray"), tup(integer(0)), sbytes(b"b"))
     + tup(integer(1), tup(integer(_TERA)), _DTYPE_O, NEWFALSE, EMPTY_LIST + MARK + integer(1) + APPENDS)
     + BUILD + STOP, LE, "ndarray state declaring 10**12 object slots for 1 item", at="BUILD",
     policy="numpy-only", reaches=("numpy._core.multiarray", "_reconstruct"))
case("fraction-huge-exponent-p4", P4 + call(sgbl("fractions", "Fraction"), suni("1e10000000")) + STOP, FG,
     "Fraction('1e10000000') computes 10**10**7 (seconds of CPU, in C); real pickles write 'n/d'",
     at="REDUCE", policy="stdlib", reaches=("fractions", "Fraction"))

# -- hash collisions inside one call of an allowed constructor --------------
# The VM cannot interrupt one C call: the guard must build incrementally or refuse.

_COLLIDING_CALL = 20_000
_KEYS = b"".join(long1(i * _M61) for i in range(_COLLIDING_CALL))
_KEY_LIST = EMPTY_LIST + MARK + _KEYS + APPENDS
_PAIR_LIST = EMPTY_LIST + MARK + b"".join(tup(long1(i * _M61), NONE) for i in range(_COLLIDING_CALL)) + APPENDS
for _mod, _name, _arg, _base in [
    ("builtins", "frozenset", _KEY_LIST, "data-only"),
    ("builtins", "set", _KEY_LIST, "data-only"),
    ("collections", "Counter", _KEY_LIST, "stdlib"),
    ("collections", "OrderedDict", _PAIR_LIST, "stdlib"),
]:
    case(f"hash-collide-call-{_mod}-{_name}-p4", P4 + call(sgbl(_mod, _name), _arg) + STOP, LE,
         f"{_mod}.{_name}(20k colliding ints) is one C call of seconds", at="REDUCE", limit="max_seconds",
         policy=policy("tight-time", _base, max_seconds=0.5), reaches=(_mod, _name))

_TWO_HASHES = EMPTY_LIST + MARK + b"".join(long1(i * _M61 + i % 2) for i in range(30000)) + APPENDS
case("hash-collide-call-two-hashes-p4", P4 + call(sgbl("builtins", "frozenset"), _TWO_HASHES) + STOP, LE,
     "30000 keys in two colliding groups (hashes 0 and 1): seconds of comparisons inside one C call, refused "
     "before the call (measured: two groups cost what the two would cost apart, so the estimate sums them)",
     at="REDUCE", limit="max_seconds", policy=policy("tight-time", max_seconds=0.5),
     reaches=("builtins", "frozenset"))

# -- uninitialized memory: NumPy allocates without zeroing -----------------

case("numpy-reconstruct-uninitialized-p4",
     P4 + call(_RECON, sgbl("numpy", "ndarray"), tup(integer(64)), sbytes(b"b")) + STOP, FG,
     "_reconstruct with a non-empty shape and no BUILD returns 64 bytes of heap (pointers, secrets)",
     at="REDUCE", policy="numpy-only", reaches=("numpy._core.multiarray", "_reconstruct"))
case("numpy-mareconstruct-uninitialized-p4",
     P4 + call(sgbl("numpy.ma.core", "_mareconstruct"), sgbl("numpy.ma", "MaskedArray"), sgbl("numpy", "ndarray"),
               tup(integer(64)), sbytes(b"b")) + STOP, FG,
     "_mareconstruct with a non-empty base shape returns uninitialized heap", at="REDUCE", policy="numpy-only",
     reaches=("numpy.ma.core", "_mareconstruct"))
case("numpy-ndarray-call-uninitialized-p4", P4 + call(sgbl("numpy", "ndarray"), tup(integer(64))) + STOP, FG,
     "numpy.ndarray(shape) is np.empty: real pickles never call it", at="REDUCE", policy="numpy-only",
     reaches=("numpy", "ndarray"))
case("numpy-ndarray-newobj-uninitialized-p4", P4 + sgbl("numpy", "ndarray") + tup(tup(integer(64))) + NEWOBJ + STOP,
     FG, "ndarray.__new__(ndarray, shape) through NEWOBJ", at="NEWOBJ", policy="numpy-only",
     reaches=("numpy", "ndarray"))
case("numpy-reconstructor-uninitialized-p2",
     P2 + call(gbl("copyreg", "_reconstructor"), gbl("numpy", "ndarray"), gbl("numpy", "ndarray"), tup(integer(64)))
     + STOP, FG, "copyreg._reconstructor calls ndarray.__new__(ndarray, shape)", at="REDUCE", policy="numpy-only",
     reaches=("copyreg", "_reconstructor"))

# -- NumPy states that corrupt memory in NumPy itself (must stay refused) ----

case("numpy-setstate-short-object-list-p4",
     P4 + call(_RECON, sgbl("numpy", "ndarray"), tup(integer(0)), sbytes(b"b"))
     + tup(integer(1), tup(integer(3)), _DTYPE_O, NEWFALSE, EMPTY_LIST + MARK + integer(1) + APPENDS)
     + BUILD + STOP, FG, "3 object slots, 1 item: NumPy reads 2 wild pointers (segfault)", at="BUILD",
     policy="numpy-only", reaches=("numpy._core.multiarray", "_reconstruct"))
_V8 = call(sgbl("numpy", "dtype"), suni("V8"), NEWFALSE, NEWTRUE)
_FORGED_DTYPE = (_V8 + tup(integer(3), suni("|"), NONE, tup(suni("a")),
                           EMPTY_DICT + suni("a") + tup(_DTYPE_O, integer(0)) + SETITEM,
                           integer(8), integer(1), integer(0)) + BUILD)
case("numpy-dtype-forged-flags-p4",
     P4 + call(_RECON, sgbl("numpy", "ndarray"), tup(integer(0)), sbytes(b"b"))
     + tup(integer(1), tup(integer(1)), _FORGED_DTYPE, NEWFALSE, sbytes(b"A" * 8)) + BUILD + STOP, FG,
     "a dtype with an object field whose state claims no objects: raw bytes become a PyObject* (segfault)",
     at="BUILD", policy="numpy-only", reaches=("numpy._core.multiarray", "_reconstruct"))
_OBJ_FIELD = (_V8 + tup(integer(3), suni("|"), NONE, tup(suni("a")),
                        EMPTY_DICT + suni("a") + tup(_DTYPE_O, integer(0)) + SETITEM,
                        integer(8), integer(1), integer(27)) + BUILD)
case("numpy-object-field-raw-bytes-p4",
     P4 + call(_RECON, sgbl("numpy", "ndarray"), tup(integer(0)), sbytes(b"b"))
     + tup(integer(1), tup(integer(1)), _OBJ_FIELD, NEWFALSE, sbytes(b"A" * 8)) + BUILD + STOP, FG,
     "raw bytes for an array whose dtype holds objects", at="BUILD", policy="numpy-only",
     reaches=("numpy._core.multiarray", "_reconstruct"))

# -- refusal messages must not render attacker objects ---------------------
# A tuple doubling 16 times from a 1000-char string: 1.4 KB of stream, 33 MB of repr.
# A list nested 20000 deep: repr/str of it raises RecursionError.


def _doubling(levels: int, base: int = 1000) -> bytes:
    out = uni("x" * base) + LONG_BINPUT + struct.pack("<I", 0) + POP
    for i in range(1, levels):
        prev = struct.pack("<I", i - 1)
        out += LONG_BINGET + prev + LONG_BINGET + prev + TUPLE2 + LONG_BINPUT + struct.pack("<I", i) + POP
    return out + LONG_BINGET + struct.pack("<I", levels - 1)


_BOMB = _doubling(16)
_DEEP_LIST = EMPTY_LIST * 20_000 + APPEND * 19_999
_DEEP_TUPLE = NONE + TUPLE1 * 20_000
case("binpersid-deep-pid-p2", P2 + _DEEP_LIST + BINPERSID + STOP, FG,
     "the refusal of a persistent id must not repr it (RecursionError; a doubling tuple costs minutes)",
     at="BINPERSID")
case("numpy-reconstruct-shape-repr-bomb-p4",
     P4 + call(_RECON, sgbl("numpy", "ndarray"), tup(_BOMB), sbytes(b"b")) + STOP, FG,
     "a shape item that renders to 33 MB", at="REDUCE", policy="numpy-only",
     reaches=("numpy._core.multiarray", "_reconstruct"))
case("numpy-reconstruct-shape-deep-p4",
     P4 + call(_RECON, sgbl("numpy", "ndarray"), tup(_DEEP_LIST), sbytes(b"b")) + STOP, FG,
     "a shape item nested 20000 deep", at="REDUCE", policy="numpy-only",
     reaches=("numpy._core.multiarray", "_reconstruct"))
case("numpy-dtype-byteorder-repr-bomb-p4",
     P4 + call(sgbl("numpy", "dtype"), suni("f8"), NEWFALSE, NEWTRUE)
     + tup(integer(3), _BOMB, NONE, NONE, NONE, integer(-1), integer(-1), integer(0)) + BUILD + STOP, FG,
     "a dtype byte order that renders to 33 MB", at="BUILD", policy="numpy-only", reaches=("numpy", "dtype"))
case("deque-kwarg-repr-bomb-p4",
     P4 + sgbl("collections", "deque") + EMPTY_TUPLE + EMPTY_DICT + _BOMB + NONE + SETITEM + NEWOBJ_EX + STOP, FG,
     "a keyword that renders to 33 MB", at="NEWOBJ_EX", policy="stdlib", reaches=("collections", "deque"))
case("build-slotstate-deep-key-p4",
     P4 + _OD + tup(NONE, EMPTY_DICT + _DEEP_TUPLE + integer(1) + SETITEM) + BUILD + STOP, LE,
     "a slot-state key nested 20000 deep: refused where the tuples nest past max_depth (hashing it, or "
     "rendering it in a message, would recurse 20000 deep)", at="TUPLE1", limit="max_depth", policy="stdlib",
     reaches=("collections", "OrderedDict"))

# -- streams that never reach STOP -------------------------------------------

case("empty-stream", b"", MP, "no bytes at all", needs_opcode=False)
case("no-stop-p4", P4 + integer(1), MP, "ends after a value")
case("no-stop-p0", b"I1\n", MP, "protocol 0 without STOP")
case("only-mark", MARK, MP, "a lone MARK")
case("proto-only-p5", proto(5), MP, "a PROTO and nothing else")
case("unterminated-int-p0", b"I123", MP, "INT without its newline", at="INT")

# -- unknown opcodes, protocol, stack and mark confusion -------------------

case("unknown-opcode-ff-p4", P4 + b"\xff" + STOP, MP, "0xff is no opcode", at=None)
case("unknown-opcode-nul", b"\x00" + STOP, MP, "NUL is no opcode", at=None)
case("unsupported-protocol-6", proto(6) + integer(1) + STOP, MP, "protocol 6 does not exist", at="PROTO")
case("stop-empty-stack", STOP, MP, "STOP with nothing on the stack", at="STOP")
case("stop-after-mark-p2", P2 + integer(1) + MARK + STOP, MP, "STOP on a MARK", at="STOP")
case("appends-without-mark-p1", EMPTY_LIST + integer(1) + APPENDS + STOP, MP, "APPENDS with no MARK",
     at="APPENDS")
case("pop-mark-without-mark", POP_MARK + STOP, MP, "POP_MARK with no MARK", at="POP_MARK")
case("tuple-without-mark", TUPLE + STOP, MP, "TUPLE with no MARK", at="TUPLE")
case("dup-empty", DUP + STOP, MP, "DUP on an empty stack", at="DUP")
case("setitem-short-stack-p1", EMPTY_DICT + integer(1) + SETITEM + STOP, MP, "SETITEM without a value",
     at="SETITEM")
case("reduce-empty", REDUCE + STOP, MP, "REDUCE on an empty stack", at="REDUCE")
case("build-empty", BUILD + STOP, MP, "BUILD on an empty stack", at="BUILD")
case("tuple2-short-p2", P2 + integer(1) + TUPLE2 + STOP, MP, "TUPLE2 with one item", at="TUPLE2")
case("memoize-empty-p4", P4 + MEMOIZE + STOP, MP, "MEMOIZE on an empty stack", at="MEMOIZE")
case("newobj-args-not-tuple-p2", P2 + gbl("builtins", "set") + integer(1) + NEWOBJ + STOP, MP,
     "NEWOBJ arguments must be a tuple", at="NEWOBJ", reaches=("builtins", "set"))
case("reduce-args-not-tuple-p2", P2 + gbl("builtins", "set") + integer(1) + REDUCE + STOP, MP,
     "REDUCE arguments must be a tuple", at="REDUCE", reaches=("builtins", "set"))
case("newobj-ex-kwargs-not-dict-p4", P4 + sgbl("builtins", "set") + EMPTY_TUPLE + integer(1) + NEWOBJ_EX + STOP,
     MP, "NEWOBJ_EX keyword arguments must be a dict", at="NEWOBJ_EX", reaches=("builtins", "set"))
case("string-unquoted-p0", b"Sabc\n" + STOP, MP, "STRING must be quoted", at="STRING")
case("string-mismatched-quotes-p0", b"S'abc\"\n" + STOP, MP, "STRING with mismatched quotes", at="STRING")
case("int-not-decimal-p0", b"Iabc\n" + STOP, MP, "INT that is no number", at="INT")
case("int-5000-digits-p0", b"I" + b"9" * 5000 + b"\n" + STOP, MP,
     "decimal text beyond int's 4300-digit conversion limit (quadratic parse)", at="INT")

# -- persistent ids and out-of-band buffers --------------------------------

case("persid-p0", b"Pfoo\n" + STOP, FG, "a persistent id with no policy for it", at="PERSID")
case("binpersid-p2", P2 + uni("foo") + BINPERSID + STOP, FG, "BINPERSID with no policy for it",
     at="BINPERSID")
case("next-buffer-without-buffers-p5", proto(5) + NEXT_BUFFER + STOP, MP,
     "out-of-band data but no buffers= argument", at="NEXT_BUFFER")
case("next-buffer-exhausted-p5", proto(5) + NEXT_BUFFER + STOP, MP, "buffers=[] has no buffer",
     at="NEXT_BUFFER", kwargs={"buffers": []})
case("readonly-buffer-on-int-p5", proto(5) + integer(1) + READONLY_BUFFER + STOP, MP,
     "READONLY_BUFFER on something that is no buffer", at="READONLY_BUFFER")

# -- the other limits --------------------------------------------------------

case("input-over-max-input-bytes-p2", P2 + uni("x" * 200) + STOP, LE, "a 208-byte input over a 64-byte limit",
     limit="max_input_bytes", policy=policy("tight-input", max_input_bytes=64), needs_opcode=False)
case("container-over-max-container-p2", P2 + EMPTY_LIST + MARK + integer(1) * 20 + APPENDS + STOP, LE,
     "20 items in a list over max_container 10", at="APPENDS", limit="max_container",
     policy=policy("tight-container", max_container=10))
case("alloc-over-max-alloc-bytes-p3",
     proto(3) + (BINBYTES + struct.pack("<I", 800) + b"a" * 800) * 2 + TUPLE2 + STOP, LE,
     "1600 bytes of payload over max_alloc_bytes 1000", at="BINBYTES", limit="max_alloc_bytes",
     policy=policy("tight-alloc", max_alloc_bytes=1000))

assert len({c.name for c in CASES}) == len(CASES), "duplicate case names"
