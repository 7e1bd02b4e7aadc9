"""Every built-in policy against real pickles: its types at every protocol
0-5 load with ``safepickle.loads`` exactly as ``pickle.loads`` gives them
(same values, same types, same sharing), and what it must refuse is refused
with the right error."""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import ipaddress
import pathlib
import pickle
import struct
import uuid
import warnings
from typing import Any

import pytest

import safepickle
from safepickle import ForbiddenGlobal, SafePickleError

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def _shared_and_recursive() -> dict[str, Any]:
    inner = [1, 2]
    rec: list[Any] = []
    rec.append(rec)
    d: dict[str, Any] = {}
    d["self"] = d
    return {"shared": [inner, inner, (inner,)], "recursive-list": rec, "recursive-dict": d}


DATA: dict[str, Any] = {
    "none": None,
    "bools": [True, False],
    "ints": [0, 1, -1, 255, 256, 2**31, -(2**31) - 1, 2**64, -(2**100)],
    "floats": [0.0, -1.5, 1e308, float("inf")],
    "str": ["", "ascii", "h\xe9", "\U0001f600", "a\nb\\c\x00"],
    "bytes": [b"", b"abc", bytes(range(256))],
    "bytearray": [bytearray(), bytearray(b"ab\xff")],
    "complex": [1 + 2j, complex(0, -0.0)],
    "tuple": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
    "list-dict": [[], [1, [2, [3]]], {}, {"a": 1, 2: [3], (4, 5): None}],
    "set": [set(), {1, 2, 3}, frozenset(), frozenset({"a"})],
    "singletons": [Ellipsis, NotImplemented],
    **_shared_and_recursive(),
}

STDLIB: dict[str, Any] = {
    "date": datetime.date(2020, 1, 2),
    "time": datetime.time(1, 2, 3, 4, tzinfo=datetime.UTC),
    "datetime": datetime.datetime(2020, 1, 2, 3, 4, 5, 6),
    "datetime-tz": datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2), "X")),
    "timedelta": datetime.timedelta(days=-1, seconds=5, microseconds=7),
    "timezone": datetime.timezone(datetime.timedelta(hours=-3)),
    "decimal": [decimal.Decimal("1.5"), decimal.Decimal("-Infinity"), decimal.Decimal("1e-30")],
    "fraction": [fractions.Fraction(1, 3), fractions.Fraction(-7)],
    "uuid": uuid.UUID(int=2**100 + 5),
    "uuid-safe": uuid.UUID(int=5, is_safe=uuid.SafeUUID.safe),
    "ordereddict": collections.OrderedDict([("b", 1), ("a", [2])]),
    "defaultdict": [
        collections.defaultdict(list, {"a": [1]}),
        collections.defaultdict(None),
        collections.defaultdict(int, {1: 2}),
        collections.defaultdict(dict),
        collections.defaultdict(set),
    ],
    "deque": [collections.deque([1, 2], maxlen=5), collections.deque()],
    "counter": collections.Counter("abracadabra"),
    "pure-paths": [pathlib.PurePosixPath("/a/b"), pathlib.PureWindowsPath("c:/x/y"), pathlib.PurePath("rel")],
    "ipaddress": [
        ipaddress.IPv4Address("1.2.3.4"),
        ipaddress.IPv6Address("::1"),
        ipaddress.IPv4Network("10.0.0.0/8"),
        ipaddress.IPv6Network("2001:db8::/32"),
        ipaddress.IPv4Interface("1.2.3.4/24"),
        ipaddress.IPv6Interface("::1/64"),
    ],
    "slice-range": [slice(1, 2, 3), slice(None), range(1, 10, 2), range(0)],
    "mixed": {"when": datetime.date(2021, 5, 6), "tags": collections.Counter(["x"]), "ids": [uuid.UUID(int=1)] * 2},
}


def _matrix(np: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # NumPy discourages matrix; pickles have them
        return np.matrix([[1, 2], [3, 4]])


def _numpy_values() -> dict[str, Any]:
    np = pytest.importorskip("numpy")
    shared = np.arange(3)
    return {
        "int": np.arange(6).reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "bool-complex-half": [np.array([True, False]), np.array([1j, 2]), np.array([1.5], dtype="f2")],
        "bigendian": np.arange(4, dtype=">i4"),
        "longdouble": np.array([1.25], dtype=np.longdouble),
        "object": np.array([1, "a", None, [1]], dtype=object),
        "structured": np.zeros(2, dtype=[("a", "<i4"), ("b", "S3"), ("c", [("d", "f8")], (2,))]),
        "structured-object": np.array([(1, "x")], dtype=[("a", "i4"), ("o", "O")]),
        "aligned": np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "f8")], align=True)),
        "datetime": [np.array(["2020-01-01", "NaT"], dtype="M8[D]"), np.array([1], dtype="m8[5ns]")],
        "strings": [np.array(["ab", "c\xe9"]), np.array([b"ab"]), np.zeros(2, dtype="V4")],
        "empty-0d": [np.zeros((0, 3)), np.array(5)],
        "view": np.arange(10)[::2],
        "scalars": [np.float64(1.5), np.int8(-3), np.bool_(True), np.complex64(1j), np.datetime64("2020-01-01"),
                    np.str_("x"), np.bytes_(b"y"), np.zeros(1, dtype=[("a", "i4")])[0]],
        "dtypes": [np.dtype("f8"), np.dtype([("a", "i4")]), np.dtype("U3"), np.dtype(("i4", (2, 3)))],
        "masked": [np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]), np.ma.masked_array([1.0], fill_value=7.0)],
        "masked-constant": np.ma.masked,
        "shared": [shared, shared],
        "dict-of-arrays": {"x": np.ones((3, 3)), "y": [np.float32(2)]},
        "recarray": [np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
                     np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])[0]],
        "matrix": _matrix(np),
        "masked-void": np.ma.masked_array(np.zeros(2, dtype=[("a", "i4")]), mask=[(True,), (False,)])[0],
        **(
            {"stringdtype": np.array(["a", "bc"], dtype=np.dtypes.StringDType())}
            if hasattr(np.dtypes, "StringDType")  # NumPy 2
            else {}
        ),
    }


# -- comparison -----------------------------------------------------------------


def _same(a: Any, b: Any, seen: dict[int, int] | None = None) -> bool:
    """Equal values, identical types, and the same sharing/recursion shape."""
    seen = {} if seen is None else seen
    if type(a) is not type(b):
        return False
    if id(a) in seen:
        return seen[id(a)] == id(b)
    seen[id(a)] = id(b)
    np = _np()
    if np is not None and isinstance(a, np.ndarray):
        return _same_array(np, a, b)
    if np is not None and isinstance(a, np.dtype):
        return bool(a == b) and a.metadata == b.metadata
    if np is not None and isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple, collections.deque)):
        if getattr(a, "maxlen", None) != getattr(b, "maxlen", None) or len(a) != len(b):
            return False
        return all(_same(x, y, seen) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if getattr(a, "default_factory", None) is not getattr(b, "default_factory", None):
            return False
        if list(a) != list(b):
            return False
        return all(_same(a[k], b[k], seen) for k in a)
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, uuid.UUID):
        return a == b and a.is_safe == b.is_safe
    if isinstance(a, decimal.Decimal) and a.is_nan():
        return b.is_nan()
    return bool(a == b)


def _same_array(np: Any, a: Any, b: Any) -> bool:
    if isinstance(a, np.ma.MaskedArray):
        if a is np.ma.masked:
            return b is np.ma.masked
        if not np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b)) or str(a.fill_value) != str(b.fill_value):
            return False
        a, b = a.data, b.data
    if a.dtype != b.dtype or a.shape != b.shape or a.strides != b.strides:
        return False
    if a.dtype.hasobject or a.dtype.kind == "T":
        return a.tolist() == b.tolist()
    return a.tobytes() == b.tobytes()


def _np() -> Any:
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is a test dependency
        return None
    return numpy


def _cases(values: dict[str, Any]) -> list[tuple[str, int, Any]]:
    return [(name, proto, value) for name, value in values.items() for proto in PROTOCOLS]


def _check_like_pickle(value: Any, proto: int, policy: str) -> None:
    data = pickle.dumps(value, proto)
    expected = pickle.loads(data)
    got = safepickle.loads(data, policy=policy)
    assert _same(expected, got), (value, proto, got)
    with __import__("io").BytesIO(data + b"trailing") as f:
        assert _same(expected, safepickle.load(f, policy=policy))
        assert f.read() == b"trailing"


# -- data-only ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "proto", "value"), _cases(DATA), ids=lambda x: str(x)[:20])
@pytest.mark.parametrize("policy", ["data-only", "stdlib", "numpy-only"])
def test_builtin_values_load_under_every_policy(name: str, proto: int, value: Any, policy: str) -> None:
    _check_like_pickle(value, proto, policy)


def test_data_only_is_the_default() -> None:
    data = pickle.dumps({1, 2}, 2)
    assert safepickle.loads(data) == {1, 2}
    with pytest.raises(ForbiddenGlobal) as exc:
        safepickle.loads(pickle.dumps(datetime.date(2020, 1, 1), 4))
    assert exc.value.policy == "data-only"


# -- stdlib -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "proto", "value"), _cases(STDLIB), ids=lambda x: str(x)[:20])
def test_stdlib_values_load_like_pickle(name: str, proto: int, value: Any) -> None:
    _check_like_pickle(value, proto, "stdlib")


@pytest.mark.parametrize(("name", "proto", "value"), _cases(STDLIB), ids=lambda x: str(x)[:20])
def test_stdlib_values_are_refused_by_data_only(name: str, proto: int, value: Any) -> None:
    with pytest.raises(ForbiddenGlobal) as exc:
        safepickle.loads(pickle.dumps(value, proto), policy="data-only")
    assert exc.value.policy == "data-only"
    assert exc.value.rule == "not-allowed"
    assert 'extend "stdlib"' in str(exc.value)


# -- numpy-only -------------------------------------------------------------------


def _numpy_cases() -> list[tuple[str, int, Any]]:
    if _np() is None:  # pragma: no cover
        return []
    return _cases(_numpy_values())


@pytest.mark.parametrize(("name", "proto", "value"), _numpy_cases(), ids=lambda x: str(x)[:20])
def test_numpy_values_load_like_pickle(name: str, proto: int, value: Any) -> None:
    _check_like_pickle(value, proto, "numpy-only")


@pytest.mark.parametrize("name", sorted(_numpy_values()) if _np() else [])
def test_numpy_values_out_of_band(name: str) -> None:
    value = _numpy_values()[name]
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(value, 5, buffer_callback=buffers.append)
    expected = pickle.loads(data, buffers=buffers)
    got = safepickle.loads(data, policy="numpy-only", buffers=buffers)
    assert _same(expected, got)


@pytest.mark.parametrize(("name", "proto", "value"), _numpy_cases(), ids=lambda x: str(x)[:20])
@pytest.mark.parametrize("policy", ["data-only", "stdlib"])
def test_numpy_values_are_refused_elsewhere(name: str, proto: int, value: Any, policy: str) -> None:
    with pytest.raises(ForbiddenGlobal) as exc:
        safepickle.loads(pickle.dumps(value, proto), policy=policy)
    assert exc.value.rule == "not-allowed"
    assert 'extend "numpy-only"' in str(exc.value)


# -- what every policy refuses ------------------------------------------------------


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _short(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _call(module: str, name: str, args: bytes) -> bytes:
    """protocol 2: GLOBAL module name, args (already a pickled tuple), REDUCE"""
    return _global(module, name) + args + b"R"


P2 = b"\x80\x02"
P4 = b"\x80\x04"
EMPTY_TUPLE = b")"
TRUE_CMD = b"X\x04\x00\x00\x00true"


HOSTILE: list[tuple[str, bytes, str]] = [
    ("os.system via GLOBAL", P2 + _call("os", "system", TRUE_CMD + b"\x85") + b".", "denylist:process"),
    ("posix.system", P2 + _call("posix", "system", TRUE_CMD + b"\x85") + b".", "denylist:process"),
    ("os.system via STACK_GLOBAL", P4 + _short("os") + _short("system") + b"\x93" + TRUE_CMD + b"\x85R.",
     "denylist:process"),
    ("subprocess submodule", P4 + _short("subprocess") + _short("Popen") + b"\x93.", "denylist:process"),
    ("eval", P2 + _call("builtins", "eval", b"X\x01\x00\x00\x001\x85") + b".", "denylist:eval"),
    ("py2 eval", P2 + _call("__builtin__", "eval", b"X\x01\x00\x00\x001\x85") + b".", "denylist:eval"),
    ("getattr", P2 + _global("builtins", "getattr") + b".", "denylist:reflection"),
    ("nested pickle", P2 + _global("pickle", "loads") + b".", "denylist:loader"),
    ("py2 cPickle", P2 + _global("cPickle", "loads") + b".", "denylist:loader"),
    ("partial", P2 + _global("functools", "partial") + b".", "denylist:reflection"),
    ("attrgetter", P2 + _global("operator", "attrgetter") + b".", "denylist:reflection"),
    ("resolve_name", P2 + _global("pkgutil", "resolve_name") + b".", "denylist:import"),
    ("walk from allowed module", P4 + _short("collections") + _short("os.system") + b"\x93.", "not-allowed"),
    ("copyreg internals", P2 + _global("copyreg", "_extension_registry") + b".", "denylist:reflection"),
    ("codecs decode", P2 + _global("_codecs", "decode") + b".", "denylist:files"),
    ("concrete path", P4 + _short("pathlib") + _short("PosixPath") + b"\x93.", "denylist:files"),
    ("safepickle itself", P4 + _short("safepickle") + _short("loads") + b"\x93.", "denylist:safepickle"),
    ("dunder", P4 + _short("builtins") + _short("object.__subclasses__") + b"\x93.", "not-allowed"),
    ("dunder inside", P4 + _short("builtins") + _short("object.__class__.mro") + b"\x93.", "bad-name"),
]


@pytest.mark.parametrize(("label", "data", "rule"), HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("policy", ["data-only", "stdlib", "numpy-only"])
def test_every_policy_refuses_dangerous_globals(label: str, data: bytes, rule: str, policy: str) -> None:
    with pytest.raises(ForbiddenGlobal) as exc:
        safepickle.loads(data, policy=policy)
    assert exc.value.rule == rule, exc.value
    assert exc.value.policy == policy
    assert exc.value.offset is not None


def test_stdlib_refuses_lazy_arguments_and_foreign_factories() -> None:
    # builtins.list(range(10**15)): a tiny stream, an enormous list
    data = P2 + _global("builtins", "list") + _call("builtins", "range", b"\x8a\x07" + (10**15).to_bytes(7, "little")
                                                     + b"\x85") + b"\x85R."
    with pytest.raises(ForbiddenGlobal) as exc:
        safepickle.loads(data, policy="stdlib")
    assert exc.value.rule == "guard"
    # defaultdict whose factory is a global the policy does not allow
    bad_factory = pickle.dumps(collections.defaultdict(ipaddress.ip_address), 4)
    with pytest.raises(ForbiddenGlobal) as exc:
        safepickle.loads(bad_factory, policy="stdlib")
    assert (exc.value.module, exc.value.name) == ("ipaddress", "ip_address")
    # Fraction with an exponent string computes 10**exponent
    frac = P2 + _call("fractions", "Fraction", b"X\x0a\x00\x00\x001e10000000\x85") + b"."
    with pytest.raises(ForbiddenGlobal) as exc:
        safepickle.loads(frac, policy="stdlib")
    assert exc.value.rule == "guard"


def test_data_only_refuses_amplifying_bytearray() -> None:
    data = P2 + _call("builtins", "bytearray", b"J\x00\x00\x00\x40\x85") + b"."  # bytearray(2**30)
    with pytest.raises(ForbiddenGlobal) as exc:
        safepickle.loads(data, policy="data-only")
    assert exc.value.rule == "guard"
    utf8 = P2 + _call("_codecs", "encode", b"X\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8\x86") + b"."
    with pytest.raises(ForbiddenGlobal):
        safepickle.loads(utf8, policy="data-only")


def _np_reconstruct_build(state_tuple: bytes) -> bytes:
    """_reconstruct(ndarray, (0,), b'b') then BUILD with the given pickled state (protocol 2)."""
    return (
        P2
        + _global("numpy.core.multiarray", "_reconstruct")
        + _global("numpy", "ndarray")
        + b"K\x00\x85"
        + b"C\x01b"
        + b"\x87R"
        + state_tuple
        + b"b."
    )


def _dtype(typestr: str) -> bytes:
    return _global("numpy", "dtype") + b"X" + struct.pack("<I", len(typestr)) + typestr.encode() + b"\x89\x88\x87R"


_NONE3 = b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"  # subarray, names, fields, elsize -1, alignment -1


def test_numpy_only_refuses_memory_unsafe_states() -> None:
    pytest.importorskip("numpy")
    # object array declaring 10 items with a 1-item list: NumPy reads past the list
    short_list = (
        b"(K\x01K\x0a\x85"
        + _dtype("O8")
        + b"(I3\nX\x01\x00\x00\x00|" + _NONE3 + b"K?tb"
        + b"\x89]K\x01at"
    )
    with pytest.raises(SafePickleError) as exc:
        safepickle.loads(_np_reconstruct_build(short_list), policy="numpy-only")
    assert "exactly 10 items" in str(exc.value)
    # a dtype whose only field lies 1000 bytes past its 4-byte item
    oob = (
        P2
        + _dtype("V4")
        + b"(K\x03X\x01\x00\x00\x00|N"
        + b"X\x01\x00\x00\x00a\x85"
        + b"}X\x01\x00\x00\x00a"
        + _dtype("f8")
        + b"(K\x03X\x01\x00\x00\x00<" + _NONE3 + b"K\x00tb"
        + b"M\xe8\x03\x86s"
        + b"K\x04K\x01K\x10tb."
    )
    with pytest.raises(SafePickleError) as exc:
        safepickle.loads(oob, policy="numpy-only")
    assert "dtype BUILD" in str(exc.value)
    # dtype(..., copy=False) hands out NumPy's shared float64 dtype
    shared = P2 + _global("numpy", "dtype") + b"X\x02\x00\x00\x00f8\x89\x89\x87R."
    with pytest.raises(ForbiddenGlobal) as exc:
        safepickle.loads(shared, policy="numpy-only")
    assert "copy must be True" in str(exc.value)


def test_numpy_only_refuses_other_libraries() -> None:
    for module, name, rule in [
        ("collections", "OrderedDict", "not-allowed"),
        ("numpy", "load", "denylist:loader"),
        ("numpy", "frompyfunc", "denylist:indirect-call"),
        ("numpy", "memmap", "denylist:files"),
        ("numpy.ctypeslib", "as_array", "denylist:native"),
        ("numpy.testing", "assert_equal", "denylist:import"),
        ("numpy", "poly1d", "not-allowed"),
    ]:
        with pytest.raises(ForbiddenGlobal) as exc:
            safepickle.loads(P4 + _short(module) + _short(name) + b"\x93.", policy="numpy-only")
        assert exc.value.rule == rule, (module, name, exc.value)
