"""Argument guards and BUILD (state) guards, called directly.

The NumPy cases that matter most are memory-safety ones: ``dtype.__setstate__``
trusts field offsets and flags, and ``ndarray.__setstate__`` frees memory
that views still use or reads past a short object list.  These tests only
call the guards (never NumPy's setstate with a hostile state, which would
crash the test process) and check that every state NumPy itself writes
still passes.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from safepickle.errors import GuardViolation
from safepickle.policy import Limits, Policy, Runtime, load_policy
from safepickle.policy.guards import CALL_GUARDS, SEALS, SealRegistry

LIMITS = Limits()


def _guard(rt: Runtime, module: str, name: str) -> Callable[..., int]:
    obj = rt.resolve(module, name, 4, True)
    guard = rt.guard(obj)
    assert guard is not None, f"{module}:{name} has no guard"
    return guard


@pytest.fixture(scope="module")
def stdlib() -> Runtime:
    return Policy.model_validate(
        {"name": "guards", "extends": ["stdlib"], "allow": ["builtins:type", "copyreg:__newobj__"]}
    ).runtime()


def _refused(guard: Callable[..., int], args: tuple, kwargs: dict | None = None, limits: Limits = LIMITS) -> str:
    with pytest.raises(GuardViolation) as exc:
        guard(args, kwargs, limits)
    return exc.value.reason


# -- builtins ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["bytearray", "bytes"])
def test_bytes_constructors(stdlib: Runtime, name: str) -> None:
    guard = _guard(stdlib, "builtins", name)
    assert guard((), None, LIMITS) == 0
    assert guard((b"abc",), None, LIMITS) == 3
    assert guard((bytearray(5),), None, LIMITS) == 5
    assert guard(("h\xe9", "latin-1"), None, LIMITS) == 2
    assert guard(("h\xe9", "latin1"), None, LIMITS) == 2
    assert "an int would allocate" in _refused(guard, (10**12,))
    _refused(guard, (True,))
    _refused(guard, ("abc", "utf-8"))
    _refused(guard, ("abc",))
    _refused(guard, ([1, 2, 3],))  # iterables of ints are not how pickle writes bytes
    _refused(guard, (b"a",), {"encoding": "x"})
    small = Limits(max_alloc_bytes=10)
    with pytest.raises(GuardViolation) as exc:
        guard((b"x" * 11,), None, small)
    assert exc.value.limit == "max_alloc_bytes" and exc.value.value == 11


def test_codecs_encode_latin1_only(stdlib: Runtime) -> None:
    guard = _guard(stdlib, "_codecs", "encode")
    assert guard(("abc", "latin1"), None, LIMITS) == 3
    assert guard(("abc", "latin-1", "strict"), None, LIMITS) == 3
    _refused(guard, ("abc", "utf-8"))
    _refused(guard, ("abc", "zlib"))  # a decompression bomb via codecs
    _refused(guard, (b"abc", "latin1"))
    _refused(guard, ("abc", "latin1", "replace"))
    _refused(guard, ("abc",))


LAZY = [range(10), iter([1]), (x for x in [1]), {1: 2}.keys(), {1: 2}.items(), map(int, "1"), reversed([1])]


@pytest.mark.parametrize("name", ["set", "frozenset", "list", "tuple"])
def test_container_constructors_need_materialised_input(stdlib: Runtime, name: str) -> None:
    guard = _guard(stdlib, "builtins", name)
    for good in [(), ([1, 2],), ((1,),), ({1},), (frozenset(),), ({1: 2},), ("ab",), (b"ab",)]:
        assert guard(good, None, LIMITS) == 0
    for lazy in LAZY:
        assert "lazy iterables are refused" in _refused(guard, (lazy,))
    _refused(guard, ([1], [2]))
    _refused(guard, ([1],), {"x": 1})
    with pytest.raises(GuardViolation) as exc:
        guard(([0] * 11,), None, Limits(max_container=10))
    assert exc.value.limit == "max_container"


def test_mapping_constructors_need_pairs(stdlib: Runtime) -> None:
    for module, name in [("builtins", "dict"), ("collections", "OrderedDict")]:
        guard = _guard(stdlib, module, name)
        assert guard((), None, LIMITS) == 0
        assert guard(({1: 2},), None, LIMITS) == 0
        assert guard(([(1, 2), [3, 4]],), None, LIMITS) == 0
        assert guard((), {"a": 1}, LIMITS) == 0
        # dict([range(2)]) would make CPython turn each item into a list first
        _refused(guard, ([range(0, 10**9, 10**9 - 1)],))
        _refused(guard, ([(1, 2, 3)],))
        _refused(guard, ({1: 2}.items(),))
        _refused(guard, ("ab",))


def test_deque_counter_defaultdict(stdlib: Runtime) -> None:
    deque = _guard(stdlib, "collections", "deque")
    assert deque(((), 5), None, LIMITS) == 0
    assert deque(([1, 2],), None, LIMITS) == 0
    assert deque((), {"maxlen": 3}, LIMITS) == 0
    _refused(deque, (range(10),))
    _refused(deque, ([], -1))
    _refused(deque, ([], "5"))
    _refused(deque, ([],), {"iterable": []})
    counter = _guard(stdlib, "collections", "Counter")
    assert counter(({"a": 2},), None, LIMITS) == 0
    assert counter(("aab",), None, LIMITS) == 0
    _refused(counter, (iter("ab"),))
    dd = _guard(stdlib, "collections", "defaultdict")
    assert dd((None,), None, LIMITS) == 0
    lst = stdlib.resolve("builtins", "list", 4, True)
    assert dd((lst,), None, LIMITS) == 0
    assert dd((lst, {1: [2]}), None, LIMITS) == 0
    assert "global the policy allows" in _refused(dd, (print,))  # not handed over
    fresh = load_policy("stdlib").effective()
    other = Policy.model_validate({"name": "other", "extends": ["stdlib"]}).runtime()
    assert "collections:OrderedDict" in fresh.allow
    other_dd = _guard(other, "collections", "defaultdict")
    # allowed by the policy, but not resolved (handed over) by this runtime
    _refused(other_dd, (collections.OrderedDict,))
    _refused(dd, (None, [range(3)]))


def test_numbers_and_text(stdlib: Runtime) -> None:
    complex_ = _guard(stdlib, "builtins", "complex")
    assert complex_((1.0, 2.0), None, LIMITS) == 0
    assert complex_(("1+2j",), None, LIMITS) == 0
    _refused(complex_, ([1],))
    _refused(complex_, ("1", 2))
    int_ = _guard(stdlib, "builtins", "int")
    assert int_(("123",), None, LIMITS) == 0
    assert int_(("ff", 16), None, LIMITS) == 0
    _refused(int_, ("1" * 10_000,))
    _refused(int_, ([1],))
    float_ = _guard(stdlib, "builtins", "float")
    _refused(float_, ("1" * 10_000,))
    str_ = _guard(stdlib, "builtins", "str")
    assert str_((5,), None, LIMITS) == 0
    assert str_((b"ab", "utf-8"), None, LIMITS) > 0
    assert str_((b"ab", "latin_1", "strict"), None, LIMITS) > 0
    _refused(str_, (b"ab", "punycode"))  # quadratic decoder, imported on first use
    _refused(str_, (b"ab", "zlib"))
    _refused(str_, (b"ab", "utf-8", "my_handler"))
    _refused(str_, ([1],))
    bool_ = _guard(stdlib, "builtins", "bool")
    assert bool_(([],), None, LIMITS) == 0
    _refused(bool_, (object(),))
    range_ = _guard(stdlib, "builtins", "range")
    assert range_((10**30,), None, LIMITS) == 0  # lazy, costs nothing by itself
    _refused(range_, (1.5,))
    fraction = _guard(stdlib, "fractions", "Fraction")
    assert fraction(("1/3",), None, LIMITS) == 0
    assert fraction(("-12",), None, LIMITS) == 0
    assert fraction((1, 3), None, LIMITS) == 0
    assert "no exponents" in _refused(fraction, ("1e10000000",))
    _refused(fraction, ("1.5",))
    _refused(fraction, (1.5,))


M61 = 2**61 - 1  # hash(k * M61) == 0 for every int k


@pytest.mark.parametrize(
    ("module", "name", "arg"),
    [
        ("builtins", "set", [k * M61 for k in range(20_000)]),
        ("builtins", "frozenset", tuple(k * M61 for k in range(20_000))),
        ("collections", "Counter", [k * M61 for k in range(20_000)]),
        ("collections", "OrderedDict", [(k * M61, None) for k in range(20_000)]),
        ("collections", "OrderedDict", {k * M61: None for k in range(3_000)}),
        ("builtins", "dict", [(k * M61, None) for k in range(20_000)]),
    ],
)
def test_hash_collisions_inside_one_call_are_refused(stdlib: Runtime, module: str, name: str, arg: Any) -> None:
    guard = _guard(stdlib, module, name)
    tight = Limits(max_seconds=0.05)
    with pytest.raises(GuardViolation) as exc:
        guard((arg,), None, tight)
    assert exc.value.limit == "max_seconds"


def test_repeated_equal_keys_are_not_collisions(stdlib: Runtime) -> None:
    tight = Limits(max_seconds=0.5)
    counter = _guard(stdlib, "collections", "Counter")
    assert counter(("ab" * 100_000,), None, tight) == 0  # 200k chars, two distinct
    assert counter(([10**20 + (i % 3) for i in range(50_000)],), None, tight) == 0  # equal, not identical
    set_ = _guard(stdlib, "builtins", "set")
    assert set_((list(range(100_000)),), None, tight) == 0
    assert set_(({k * M61 for k in range(5)},), None, tight) == 0  # a set argument is copied, not compared
    dict_ = _guard(stdlib, "builtins", "dict")
    assert dict_(({k * M61: 1 for k in range(3000)},), None, tight) == 0  # dict(dict) copies the table


def test_messages_never_repr_stream_values(stdlib: Runtime, nprt: Runtime) -> None:
    bomb: Any = "x" * 1000
    for _ in range(25):  # repr would be 2**25 times longer than the pickle that built it
        bomb = (bomb, bomb)
    deque = _guard(stdlib, "collections", "deque")
    assert len(_refused(deque, ([],), {bomb: 1})) < 300
    reconstruct = _guard(nprt, "numpy._core.multiarray", "_reconstruct")
    nd = nprt.resolve("numpy", "ndarray", 4, True)
    assert len(_refused(reconstruct, (nd, (bomb,), b"b"))) < 300
    assert len(_refused(reconstruct, (nd, (10**5000,), b"b"))) < 300


def test_type_never_creates_classes(stdlib: Runtime) -> None:
    guard = _guard(stdlib, "builtins", "type")
    assert guard((None,), None, LIMITS) == 0
    assert "never creates classes" in _refused(guard, ("X", (object,), {}))


def test_object_takes_nothing(stdlib: Runtime) -> None:
    guard = _guard(stdlib, "builtins", "object")
    assert guard((), None, LIMITS) == 0
    _refused(guard, (1,))


class Plain:
    pass


class IntSub(int):
    pass


def test_copyreg_reconstructor() -> None:
    rt = Policy.model_validate(
        {"name": "r", "extends": ["data-only"], "allow": [f"{__name__}:Plain", f"{__name__}:IntSub", "builtins:int"]}
    ).runtime()
    guard = _guard(rt, "copyreg", "_reconstructor")
    obj = rt.resolve("builtins", "object", 4, True)
    plain = rt.resolve(__name__, "Plain", 4, True)
    assert guard((plain, obj, None), None, LIMITS) == 0
    assert "state must be None" in _refused(guard, (plain, obj, 5))
    assert "not handed over" in _refused(guard, (IntSub, obj, None))
    _refused(guard, (plain, int, 5))  # int is not in Plain's MRO
    intsub = rt.resolve(__name__, "IntSub", 4, True)
    assert "must be allowed" in _refused(guard, (intsub, int, 5))  # base int not resolved yet
    rt.resolve("builtins", "int", 4, True)
    assert guard((intsub, int, 5), None, LIMITS) == 0
    assert "too long" in _refused(guard, (intsub, int, "9" * 10_000))  # base guard applies to state
    _refused(guard, ("notaclass", obj, None))


def test_newobj_delegates_to_the_class_guard(stdlib: Runtime) -> None:
    guard = _guard(stdlib, "copyreg", "__newobj__")
    ba = stdlib.resolve("builtins", "bytearray", 4, True)
    assert guard((ba, b"ab"), None, LIMITS) == 2
    _refused(guard, (ba, 10**12))
    _refused(guard, (ba, 1))  # bytearray's own guard refuses the int
    with pytest.raises(GuardViolation):
        guard((Plain,), None, LIMITS)


def test_guards_never_raise_anything_but_guard_violations(stdlib: Runtime, nprt: Runtime) -> None:
    class Weird:
        def __len__(self) -> int:
            raise RuntimeError("boom")

        def __index__(self) -> int:
            raise RuntimeError("boom")

    odd_args = [(Weird(),), (Weird(), Weird()), (Weird(), Weird(), Weird(), Weird()), (None,) * 5]
    runtimes = [(stdlib, key) for key in CALL_GUARDS if not key.startswith("numpy")]
    runtimes += [(nprt, key) for key in CALL_GUARDS if key.startswith("numpy")]
    checked = 0
    for rt, key in runtimes:
        module, name = key.split(":")
        try:
            obj = rt.resolve(module, name, 4, True)
        except Exception:
            continue  # not allowed by that policy
        guard = rt.guard(obj)
        assert guard is not None, key
        for args in odd_args:
            with contextlib.suppress(GuardViolation):  # anything else fails the test
                guard(args, None, LIMITS)
        checked += 1
    assert checked >= 20
    import numpy as np

    frombuffer = _guard(nprt, "numpy._core.numeric", "_frombuffer")
    _refused(frombuffer, (b"\0" * 8, np.dtype("f8", False, True), (1,), "K", (0, "x")))
    for kind, target in (("dtype", np.dtype("V4", False, True)), ("ndarray", _blank())):
        guard = nprt.state_guard(target)
        assert guard is not None, kind
        for state in ((Weird(),), (1, Weird(), Weird(), Weird(), Weird()), (3, "|", Weird(), None, None, 4, 1, 0)):
            with pytest.raises(GuardViolation):
                guard(target, state, LIMITS)


def test_every_table_entry_builds_a_guard(stdlib: Runtime) -> None:
    for key, (factory, method) in CALL_GUARDS.items():
        assert callable(factory(stdlib)), key
        assert method in (None, "__new__", "__init__"), key


# -- NumPy call guards ------------------------------------------------------------


@pytest.fixture(scope="module")
def nprt() -> Runtime:
    pytest.importorskip("numpy")
    return load_policy("numpy-only").runtime()


def test_reconstruct_budget_and_arguments(nprt: Runtime) -> None:
    import numpy as np

    guard = _guard(nprt, "numpy._core.multiarray", "_reconstruct")
    nd = nprt.resolve("numpy", "ndarray", 4, True)
    assert guard((nd, (0,), b"b"), None, LIMITS) == 0
    assert guard((nd, (0, 10), "f8"), None, LIMITS) == 0
    # NumPy does not zero the memory: a non-empty array without BUILD leaks heap contents
    assert "uninitialized memory" in _refused(guard, (nd, (10, 10), "f8"))
    with pytest.raises(GuardViolation) as exc:
        guard((nd, (10**6, 10**6), b"b"), None, LIMITS)
    assert exc.value.limit == "max_alloc_bytes"
    with pytest.raises(GuardViolation) as exc:
        guard((nd, (10**12,), np.dtype([])), None, LIMITS)  # zero-size items still count
    assert exc.value.limit == "max_alloc_bytes"
    _refused(guard, (nd, (-1,), b"b"))
    _refused(guard, (nd, (1.5,), b"b"))
    _refused(guard, (nd, (1,) * 65, b"b"))
    _refused(guard, (nd, (1,), [("a", "O")]))  # list specs are refused
    _refused(guard, (list, (1,), b"b"))  # not handed over / not an ndarray class
    _refused(guard, (nd, (1,), "x" * 300))


def test_ndarray_direct_call(nprt: Runtime) -> None:
    guard = _guard(nprt, "numpy", "ndarray")
    assert guard(((0, 3), "f8"), None, LIMITS) == 0
    assert "uninitialized memory" in _refused(guard, ((2, 3), "f8"))
    _refused(guard, ((2,), "f8"), {"buffer": b"x" * 16})
    _refused(guard, ((2,), "f8"), {"strides": (0,)})
    with pytest.raises(GuardViolation):
        guard(((10**12,),), None, LIMITS)


def test_scalar(nprt: Runtime) -> None:
    import numpy as np

    guard = _guard(nprt, "numpy._core.multiarray", "scalar")
    assert guard((np.dtype("f8", False, True), b"\0" * 8), None, LIMITS) == 8
    assert guard((np.dtype("O", False, True), [1]), None, LIMITS) == 0
    _refused(guard, (np.dtype("f8", False, True), b"\0" * 4))
    _refused(guard, (np.dtype("f8", False, True), b"\0" * 12))
    _refused(guard, ("f8", b"\0" * 8))
    with pytest.raises(GuardViolation) as exc:
        guard((np.dtype("V2000", False, True),), None, Limits(max_alloc_bytes=1000))
    assert exc.value.limit == "max_alloc_bytes"
    structured = np.dtype([("a", "O")])
    _refused(guard, (structured, b"\0" * 8))  # object fields from raw bytes: never
    arr = np.zeros(1, dtype=structured)
    assert guard((structured, arr), None, LIMITS) == 8
    assert SEALS.is_sealed(arr)  # the scalar points into it


def test_frombuffer(nprt: Runtime) -> None:
    import numpy as np

    guard = _guard(nprt, "numpy._core.numeric", "_frombuffer")
    f8 = np.dtype("f8", False, True)
    assert guard((b"\0" * 48, f8, (2, 3), "C"), None, LIMITS) == 0
    assert guard((bytearray(48), f8, (3, 2), "F"), None, LIMITS) == 0
    assert guard((pickle.PickleBuffer(b"\0" * 48), f8, (2, 3), "K", (1, 0)), None, LIMITS) == 0
    _refused(guard, (b"\0" * 40, f8, (2, 3), "C"))
    _refused(guard, (b"\0" * 8, np.dtype("O"), (1,), "C"))
    _refused(guard, (b"\0" * 8, np.dtype([("a", "O")]), (1,), "C"))
    _refused(guard, (b"\0" * 48, f8, (2, 3), "Z"))
    _refused(guard, (b"\0" * 48, f8, (2, 3), "K", (0, 0)))
    _refused(guard, (np.zeros(6), f8, (6,), "C"))  # an array is not a pickle buffer
    owner = np.zeros(6)
    view = memoryview(owner)
    assert guard((view, f8, (6,), "C"), None, LIMITS) == 0
    assert SEALS.is_sealed(owner)  # a view now depends on its memory


def test_dtype_call(nprt: Runtime) -> None:
    import numpy as np

    guard = _guard(nprt, "numpy", "dtype")
    assert guard(("f8", False, True), None, LIMITS) == 0
    assert guard(("V12", 0, 1), None, LIMITS) == 0  # NumPy 1.x writes ints
    assert "copy must be True" in _refused(guard, ("f8", False, False))
    _refused(guard, ("f8",))
    _refused(guard, ([("a", "O")], False, True))
    _refused(guard, ({"names": ["a"], "formats": ["O"]}, False, True))
    _refused(guard, ("f8", 2, True))
    assert guard((np.dtype("i4", False, True), False, True), None, LIMITS) == 0


def test_mareconstruct(nprt: Runtime) -> None:
    guard = _guard(nprt, "numpy.ma.core", "_mareconstruct")
    ma = nprt.resolve("numpy.ma", "MaskedArray", 4, True)
    nd = nprt.resolve("numpy", "ndarray", 4, True)
    assert guard((ma, nd, (0,), "b"), None, LIMITS) == 0
    assert "uninitialized memory" in _refused(guard, (ma, nd, (4,), "f8"))
    with pytest.raises(GuardViolation):
        guard((ma, nd, (10**12,), "b"), None, LIMITS)
    _refused(guard, (nd, nd, (0,), "b"))  # subtype must be a MaskedArray class
    import numpy as np

    recarray = (np.recarray.__module__, "recarray")  # numpy.rec (NumPy 2) or numpy (1.x)
    for module, name in [("numpy.ma", "MaskedArray"), ("numpy.ma.core", "MaskedArray"), ("numpy.ma.core", "mvoid"),
                         recarray, ("numpy", "matrix")]:
        direct = _guard(nprt, module, name)
        assert "cannot be called from a pickle" in _refused(direct, ([1, 2],))
        assert "cannot be called from a pickle" in _refused(direct, (range(10**12),))


# -- NumPy state guards --------------------------------------------------------


def _dtypes() -> list[Any]:
    import numpy as np

    out = [np.dtype(c) for c in "?bhilqpBHILQPefdgFDGO"]
    out += [np.dtype(s) for s in ("S5", "U3", "V7", ">i4", "<f8", ">c16", "S1", "U1")]
    out += [np.dtype(f"M8[{u}]") for u in ("Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as")]
    out += [np.dtype("m8[5s]"), np.dtype(">M8[D]"), np.dtype("M8"), np.dtype("m8")]
    out += [
        np.dtype([("a", "<i4"), ("b", "S3")]),
        np.dtype([("a", "u1"), ("b", "f8")], align=True),
        np.dtype([("a", "i4"), ("o", "O")]),
        np.dtype({"names": ["a"], "formats": ["i4"], "titles": ["T"]}),
        np.dtype({"names": ["a", "b"], "formats": ["i4", "f8"], "offsets": [8, 0], "itemsize": 24}),
        np.dtype(("i4", (2, 3))),
        np.dtype([("c", [("d", "f8")], (2,))]),
        np.dtype("f8", metadata={"unit": "m"}),
        np.dtype([("a", "i4")], metadata={"k": 1}),
        np.dtype("M8[s]", metadata={"k": 1}),
        np.dtype([]),
    ]
    return out


def test_dtype_state_guard_accepts_every_state_numpy_writes(nprt: Runtime) -> None:
    import numpy as np

    for original in _dtypes():
        cls, args, state = original.__reduce__()
        fresh = cls(*args)
        guard = nprt.state_guard(fresh)
        assert guard is not None
        assert guard(fresh, state, LIMITS) == 0, original
        fresh.__setstate__(state)
        expected = pickle.loads(pickle.dumps(original))  # what pickle itself restores
        assert fresh == expected and fresh.metadata == expected.metadata, original
        assert np.dtype(fresh).itemsize == original.itemsize


def _fresh_void(n: int = 4) -> Any:
    import numpy as np

    return np.dtype(f"V{n}", False, True)


@pytest.mark.parametrize(
    ("state", "fragment"),
    [
        # a field 1000 bytes past the end of a 4-byte item (out-of-bounds reads/writes)
        ((3, "|", None, ("a",), {"a": ("DT_F8", 1000)}, 4, 1, 16), "valid dtype"),
        # object flag on a plain void: raw bytes would be read as object pointers
        ((3, "|", None, None, None, 4, 1, 63), "not what NumPy writes"),
        # an object field hidden in a void with the wrong flags
        ((3, "|", None, ("o",), {"o": ("DT_O", 0)}, 8, 8, 0), "not what NumPy writes"),
        # overlapping object and integer fields
        ((3, "|", None, ("o", "i"), {"o": ("DT_O", 0), "i": ("DT_I8", 0)}, 8, 8, 63), "valid dtype"),
        ((3, "|", None, ("a",), {"a": ("not a dtype", 0)}, 4, 1, 16), "must be dtypes"),
        ((3, "|", None, ("a",), {"b": ("DT_F8", 0)}, 8, 1, 16), "bad field"),
        ((2, "|", None, None, None, 4, 1, 0), "version 3/4"),
        ((3, "|", None, None, None, 4, 1), "version 3/4"),
        ((3, "!", None, None, None, 4, 1, 0), "byte order"),
        ((4, "|", None, None, None, 4, 1, 0, ["not", "a", "dict"]), "metadata"),
        ("not a tuple", "version 3/4"),
    ],
)
def test_dtype_state_guard_refuses_unsafe_states(nprt: Runtime, state: Any, fragment: str) -> None:
    import numpy as np

    table = {"DT_F8": np.dtype("f8", False, True), "DT_O": np.dtype("O"), "DT_I8": np.dtype("i8", False, True)}

    def fill(value: Any) -> Any:
        if isinstance(value, str) and value in table:
            return table[value]
        if isinstance(value, tuple):
            return tuple(fill(v) for v in value)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    target = _fresh_void(8 if "DT_O" in repr(state) or "'b'" in repr(state) else 4)
    guard = nprt.state_guard(target)
    assert guard is not None
    with pytest.raises(GuardViolation) as exc:
        guard(target, fill(state), LIMITS)
    assert fragment in exc.value.reason, exc.value.reason


def test_fixed_size_dtypes_keep_their_size(nprt: Runtime) -> None:
    import numpy as np

    f8 = np.dtype("f8", False, True)
    guard = nprt.state_guard(f8)
    assert guard is not None
    _refused_state(guard, f8, (3, "<", None, None, None, 100, 1, 0))
    _refused_state(guard, f8, (3, "<", None, ("a",), {"a": (np.dtype("i1"), 0)}, 8, 1, 16))


def _refused_state(guard: Callable[..., int], obj: Any, state: Any) -> str:
    with pytest.raises(GuardViolation) as exc:
        guard(obj, state, LIMITS)
    return exc.value.reason


def test_shared_builtin_dtypes_are_never_given_state(nprt: Runtime) -> None:
    import numpy as np

    for shared in (np.dtype("f8"), np.dtype("O"), np.dtype("i4")):
        guard = nprt.state_guard(shared)
        assert guard is not None
        state = shared.__reduce__()[2]
        _refused_state(guard, shared, state)


def test_a_dtype_gets_state_once_and_never_after_use(nprt: Runtime) -> None:
    import numpy as np

    state = np.dtype("V4").__reduce__()[2]
    once = _fresh_void()
    guard = nprt.state_guard(once)
    assert guard is not None
    assert guard(once, state, LIMITS) == 0
    assert "applied once" in _refused_state(guard, once, state)

    # used by an array first (pristine), then a BUILD would change what the
    # array's memory means: refused
    used = _fresh_void()
    recon = _guard(nprt, "numpy._core.multiarray", "_reconstruct")
    nd = nprt.resolve("numpy", "ndarray", 4, True)
    recon((nd, (0,), used), None, LIMITS)
    assert "applied once" in _refused_state(guard, used, state)

    # nested inside another dtype's fields: sealed with it
    inner = _fresh_void()
    outer = np.dtype("V4", False, True)
    outer_state = list(np.dtype([("a", "V4")]).__reduce__()[2])
    outer_state[4] = {"a": (inner, 0)}
    assert guard(outer, tuple(outer_state), LIMITS) == 0
    assert "applied once" in _refused_state(guard, inner, (3, "|", None, None, None, 1000, 1, 0))


def _array_state(arr: Any) -> Any:
    return arr.__reduce__()[2]


def _blank(cls: Any = None) -> Any:
    import numpy as np

    return np.ndarray.__new__(cls or np.ndarray, (0,), "b")


def test_ndarray_state_guard_accepts_real_states(nprt: Runtime) -> None:
    import numpy as np

    for arr in (
        np.arange(12.0).reshape(3, 4),
        np.asfortranarray(np.ones((2, 3))),
        np.array([1, "a", None], dtype=object),
        np.zeros(2, dtype=[("a", "i4"), ("o", "O")]),
        np.array(["ab", "c"]),
        np.zeros((0, 3)),
        np.array(5),
        *([np.array(["x", "yz"], dtype=np.dtypes.StringDType())] if hasattr(np.dtypes, "StringDType") else []),
    ):
        target = _blank()
        guard = nprt.state_guard(target)
        assert guard is not None
        state = _array_state(arr)
        assert guard(target, state, LIMITS) == arr.size * max(arr.dtype.itemsize, 1)
        target.__setstate__(state)
        assert target.shape == arr.shape and target.dtype == arr.dtype


def test_ndarray_state_guard_refusals(nprt: Runtime) -> None:
    import numpy as np

    guard = nprt.state_guard(_blank())
    assert guard is not None
    obj = np.dtype("O")
    # NumPy reads past the end of a short object list (a crash in NumPy 2.x)
    assert "exactly 10 items" in _refused_state(guard, _blank(), (1, (10,), obj, False, [1]))
    _refused_state(guard, _blank(), (1, (1,), obj, False, b"A" * 8))
    assert "exactly 16 bytes" in _refused_state(guard, _blank(), (1, (2,), np.dtype("f8"), False, b"A" * 8))
    _refused_state(guard, _blank(), (1, (2,), "f8", False, b"A" * 16))
    _refused_state(guard, _blank(), (1, (-2,), np.dtype("f8"), False, b""))
    _refused_state(guard, _blank(), (1, (2,), np.dtype("f8"), False, b"A" * 16, "extra"))
    with pytest.raises(GuardViolation) as exc:
        guard(_blank(), (1, (10**12,), obj, False, [1]), LIMITS)
    assert exc.value.limit == "max_alloc_bytes"  # the budget is checked before the data


def test_ndarray_is_given_state_once_and_never_when_viewed(nprt: Runtime) -> None:
    import numpy as np

    state = _array_state(np.arange(4.0))
    arr = _blank()
    guard = nprt.state_guard(arr)
    assert guard is not None
    guard(arr, state, LIMITS)
    assert "applied once" in _refused_state(guard, arr, state)
    # an array some view depends on (here through _frombuffer over a memoryview)
    viewed = _blank()
    frombuffer = _guard(nprt, "numpy._core.numeric", "_frombuffer")
    frombuffer((memoryview(viewed), np.dtype("i1", False, True), (0,), "C"), None, LIMITS)
    assert "applied once" in _refused_state(guard, viewed, state)


def test_ndarray_subclass_with_own_setstate_is_refused(nprt: Runtime) -> None:
    import numpy as np

    class Custom(np.ndarray):
        def __setstate__(self, state: Any) -> None:
            super().__setstate__(state)

    target = _blank(Custom)
    guard = nprt.state_guard(target)
    assert guard is not None
    assert "own __setstate__" in _refused_state(guard, target, _array_state(np.arange(2)))


def test_masked_array_state_guard(nprt: Runtime) -> None:
    import numpy as np

    original = np.ma.masked_array([1.0, 2.0, 3.0], mask=[0, 1, 0])
    state = original.__reduce__()[2]

    def blank() -> Any:
        mare = nprt.resolve("numpy.ma.core", "_mareconstruct", 4, True)
        return mare(np.ma.MaskedArray, np.ndarray, (0,), "b")

    target = blank()
    guard = nprt.state_guard(target)
    assert guard is not None
    assert guard(target, state, LIMITS) == 3 * 8 + 3
    target.__setstate__(state)
    assert target.mask.tolist() == [False, True, False]
    bad = list(state)
    bad[5] = b"\x00"  # a mask one byte long for three items
    _refused_state(guard, blank(), tuple(bad))
    _refused_state(guard, blank(), state[:6])


def test_state_guard_is_none_for_other_objects(nprt: Runtime) -> None:
    assert nprt.state_guard(collections.OrderedDict()) is None
    assert nprt.state_guard(Plain()) is None


# -- the seal registry ---------------------------------------------------------


def test_seal_registry_forgets_dead_objects() -> None:
    np = pytest.importorskip("numpy")
    registry = SealRegistry()
    keep = [np.dtype("V4", False, True) for _ in range(10)]
    for d in keep:
        registry.seal(d)
    for _ in range(3000):  # dtypes cannot be weakly referenced: held until swept
        registry.seal(np.dtype("V4", False, True))
    assert len(registry) < 1024 + 10
    assert all(registry.is_sealed(d) for d in keep)
    arr = np.zeros(3)  # arrays are weakly referenced
    registry.seal(arr)
    assert registry.is_sealed(arr)
    before = len(registry)
    del arr
    gc.collect()
    assert len(registry) == before - 1
    assert not registry.is_sealed(np.zeros(3))
