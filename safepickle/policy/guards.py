"""Argument guards: checks run before the VM calls an allowed callable, and
before BUILD applies state to a NumPy object.

A call guard is ``guard(args, kwargs, limits) -> int``: it returns the bytes
the call will allocate (the VM charges them to ``limits.max_alloc_bytes``) or
raises :class:`~safepickle.errors.GuardViolation`.  A state guard is
``guard(obj, state, limits) -> int`` with the same contract.

Why guards exist:

* **amplification**: ``bytearray(10**12)``, ``numpy._reconstruct(ndarray,
  (10**9,), 'f8')`` and friends allocate far more than the bytes that asked
  for it.  Guards compute the allocation from the arguments first.
* **lazy iterables**: ``list(range(10**18))`` is a tiny pickle; container
  constructors only accept materialised builtin containers (list, tuple,
  set, frozenset, dict, str, bytes), never a range or an iterator.
* **NumPy memory safety**: ``dtype.__setstate__`` trusts field offsets and
  flags, and ``ndarray.__setstate__`` frees memory that views still use.
  The dtype guard only accepts a state that NumPy itself would write for a
  dtype built through its validating public constructor, and every dtype or
  array that has been given state or used by another NumPy object is
  *sealed*: it can never be given state again (see :class:`SealRegistry`).

Table: :data:`CALL_GUARDS` maps ``module:qualname`` (canonical names) to a
factory ``(context) -> guard`` and the method whose arguments it checks
(``"__new__"``/``"__init__"``), which decides whether a subclass that
inherits that method inherits the guard.
"""

from __future__ import annotations

import codecs
import itertools
import math
import pickle
import re
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import GuardViolation
from .model import Limits

__all__ = [
    "CALL_GUARDS",
    "CallGuard",
    "GuardContext",
    "SEALS",
    "SealRegistry",
    "StateGuard",
    "brief",
    "exception_text",
    "hardened_call",
    "hardened_state",
    "state_guard_for",
]

CallGuard = Callable[[tuple, "dict | None", Limits], int]
StateGuard = Callable[[object, object, Limits], int]


class GuardContext(Protocol):
    """What guards need from the Runtime."""

    def is_callable(self, obj: object) -> bool: ...

    def guard(self, obj: object) -> CallGuard | None: ...


def brief(value: object) -> str:
    """A short description of a value from the stream, for messages.  Never
    its full repr: memo-shared nesting makes a repr exponentially long."""
    kind = type(value)
    if kind in (str, bytes):
        text = repr(value[:40])  # type: ignore[index]
        return text + ("..." if len(value) > 40 else "")  # type: ignore[arg-type]
    if kind in (int, bool):
        return str(value) if -(10**30) < value < 10**30 else f"an int of {value.bit_length()} bits"  # type: ignore[operator,attr-defined]
    if kind is float or value is None:
        return repr(value)
    return f"a {kind.__name__[:60]}"


def _brief_shape(dims: tuple[int, ...]) -> str:
    shown = ", ".join(brief(d) for d in dims[:8])
    return f"({shown}{',' if len(dims) == 1 else ''}{', ...' if len(dims) > 8 else ''})"


def exception_text(exc: BaseException) -> str:
    """An exception's type and, when it is plain short text, its message."""
    args = exc.args
    if args and all(type(a) is str for a in args):
        return f"{type(exc).__name__}: {'; '.join(args)[:200]}"
    return type(exc).__name__


def hardened_call(guard: CallGuard) -> CallGuard:
    """Wrap a call guard so that anything it raises is a GuardViolation: a
    hostile argument must never surface as a bare TypeError from a guard."""

    def checked(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        try:
            return guard(args, kwargs, limits)
        except GuardViolation:
            raise
        except Exception as exc:
            raise GuardViolation(f"arguments could not be checked ({exception_text(exc)})") from None

    checked.__wrapped__ = guard  # type: ignore[attr-defined]
    return checked


def hardened_state(guard: StateGuard) -> StateGuard:
    """Like :func:`hardened_call` for BUILD guards."""

    def checked(obj: object, state: object, limits: Limits) -> int:
        try:
            return guard(obj, state, limits)
        except GuardViolation:
            raise
        except Exception as exc:
            raise GuardViolation(f"state could not be checked ({exception_text(exc)})") from None

    checked.__wrapped__ = guard  # type: ignore[attr-defined]
    return checked


# -- seal registry ----------------------------------------------------------


class SealRegistry:
    """Objects that must never be given state again (process-wide, by identity).

    An object is sealed when BUILD gives it state, or when another NumPy
    object starts to depend on its layout (an array on its dtype, a view on
    its buffer).  NumPy dtypes cannot be weakly referenced, so they are held
    strongly and dropped again once nothing but this registry refers to them
    (CPython reference counts; checked when the registry grows).  Sealing
    only ever refuses more, so sharing it between policies is safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._weak: dict[int, weakref.ref] = {}
        self._strong: dict[int, object] = {}
        self._next_sweep = 1024

    def seal(self, obj: object) -> None:
        key = id(obj)
        with self._lock:
            try:
                ref = weakref.ref(obj, self._forget(key))
            except TypeError:
                self._strong[key] = obj
                if len(self._strong) >= self._next_sweep:
                    self._sweep()
            else:
                self._weak[key] = ref

    def _forget(self, key: int) -> Callable[[weakref.ref], None]:
        weak = self._weak

        def forget(ref: weakref.ref) -> None:
            # No lock here: this may run from the GC inside seal().
            if weak.get(key) is ref:
                weak.pop(key, None)

        return forget

    def _sweep(self) -> None:
        strong = self._strong
        for key in list(strong):
            # One reference from the dict, one for getrefcount's argument.
            if sys.getrefcount(strong[key]) <= 2:
                del strong[key]
        self._next_sweep = max(1024, 2 * len(strong))

    def is_sealed(self, obj: object) -> bool:
        key = id(obj)
        ref = self._weak.get(key)
        if ref is not None and ref() is obj:
            return True
        return self._strong.get(key) is obj

    def __len__(self) -> int:
        return len(self._weak) + len(self._strong)


SEALS = SealRegistry()


# -- helpers ----------------------------------------------------------------

# _codecs.encode(x, "latin1") imports encodings.latin_1 on first use; do it
# now, so that no load ever triggers an import through an allowed call.
codecs.lookup("latin-1")

_LATIN1 = frozenset({"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"})
_TEXT_CODECS = _LATIN1 | {"utf-8", "utf8", "ascii", "us-ascii"}
MATERIALIZED = (list, tuple, set, frozenset, dict, str, bytes)
_BYTES_LIKE = (bytes, bytearray, memoryview, pickle.PickleBuffer)
_SCALARS = (int, float, bool, complex, str, bytes, type(None))
MAX_NUMBER_TEXT = 5000  # chars of a number written as text (CPython's int limit is 4300 digits)


def _charge(nbytes: int, limits: Limits, what: str) -> int:
    if nbytes > limits.max_alloc_bytes:
        raise GuardViolation(
            f"{what} would allocate {nbytes} bytes (max_alloc_bytes is {limits.max_alloc_bytes})",
            limit="max_alloc_bytes",
            value=nbytes,
        )
    return nbytes


def _length(n: int, limits: Limits, what: str) -> None:
    if n > limits.max_container:
        raise GuardViolation(
            f"{what} would hold {n} items (max_container is {limits.max_container})",
            limit="max_container",
            value=n,
        )


def _no_kwargs(kwargs: dict | None, what: str) -> None:
    if kwargs:
        raise GuardViolation(f"{what} accepts no keyword arguments here, got {sorted(map(str, kwargs))}")


def _arity(args: tuple, low: int, high: int, what: str) -> None:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise GuardViolation(f"{what} takes {want} positional arguments here, got {len(args)}")


def _nbytes(buf: object) -> int:
    with memoryview(buf) as view:  # type: ignore[arg-type]
        return view.nbytes


def _materialized(value: object, limits: Limits, what: str) -> int:
    if type(value) not in MATERIALIZED:
        raise GuardViolation(
            f"{what} only accepts a list, tuple, set, frozenset, dict, str or bytes, "
            f"not {type(value).__name__} (lazy iterables are refused)"
        )
    n = len(value)  # type: ignore[arg-type]
    _length(n, limits, what)
    return n


def _pairs(value: object, limits: Limits, what: str) -> None:
    """A mapping argument: a dict, or a materialised sequence of 2-item
    lists/tuples (CPython would turn any other item into a list first)."""
    if type(value) is dict:
        _length(len(value), limits, what)
        return
    _materialized(value, limits, what)
    if type(value) in (list, tuple):
        for item in value:  # type: ignore[union-attr]
            if type(item) not in (tuple, list) or len(item) != 2:
                raise GuardViolation(f"{what} needs (key, value) pairs, got a {type(item).__name__}")
    elif len(value):  # type: ignore[arg-type]
        raise GuardViolation(f"{what} needs a dict or a list of (key, value) pairs")


def _text_number(value: object, what: str) -> None:
    if type(value) in (str, bytes, bytearray) and len(value) > MAX_NUMBER_TEXT:  # type: ignore[arg-type]
        raise GuardViolation(f"{what}: number text of {len(value)} characters is too long")  # type: ignore[arg-type]


#: Hash-table inserts are only quadratic when many *distinct* keys share a
#: full hash (CPython perturbs partial collisions away).  Below this many
#: keys the worst case is a few milliseconds and nothing is checked.
COLLISION_CHECK_MIN = 2048
#: Seconds per key comparison inside a colliding chain (measured ~25-30 ns
#: for ints on a 2-core VM; the estimate errs on the generous side).
SECONDS_PER_COMPARISON = 20e-9


def _distinct(group: list[object]) -> int:
    try:
        ordered = sorted(group)  # type: ignore[type-var]
    except Exception:
        return len({id(x) for x in group})  # unorderable: count by identity (over-estimates)
    return 1 + sum(1 for a, b in itertools.pairwise(ordered) if a != b)


def _collisions(keys: list[object], limits: Limits, what: str) -> None:
    """Refuse a constructor call whose keys collide so much that building
    the table would run past ``max_seconds`` inside one C call the VM cannot
    interrupt (``set(20_000 multiples of 2**61-1)`` takes seconds)."""
    if len(keys) < COLLISION_CHECK_MIN:
        return
    hashes = []
    for key in keys:
        try:
            hashes.append(hash(key))
        except TypeError:
            return  # unhashable: the call itself fails at once
    if len(set(hashes)) == len(hashes):
        return
    groups: dict[int, list[object]] = {}
    for h, key in zip(hashes, keys, strict=True):
        groups.setdefault(h, []).append(key)
    comparisons = 0
    for group in groups.values():
        if len(group) > 1:
            d = _distinct(group)
            comparisons += d * (d - 1) // 2
    seconds = comparisons * SECONDS_PER_COMPARISON
    if seconds > limits.max_seconds:
        raise GuardViolation(
            f"{what}: {comparisons} key comparisons between colliding hashes (about {seconds:.1f} s in one call)",
            limit="max_seconds",
            value=round(seconds, 1),
        )


def _keys_of(value: object) -> list[object] | None:
    """The keys a constructor will hash, when they can collide in a fresh
    table (a dict or set argument to dict()/set() is copied without compares)."""
    if type(value) in (list, tuple, str, bytes, set, frozenset, dict):
        return list(value)  # type: ignore[call-overload]
    return None


# -- builtins ---------------------------------------------------------------


def _bytes_guard(what: str) -> Callable[[GuardContext], CallGuard]:
    def factory(ctx: GuardContext) -> CallGuard:
        def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
            _no_kwargs(kwargs, what)
            _arity(args, 0, 2, what)
            if not args:
                return 0
            source = args[0]
            if len(args) == 1:
                if isinstance(source, _BYTES_LIKE):
                    return _charge(_nbytes(source), limits, what)
                raise GuardViolation(
                    f"{what}() only accepts bytes-like data here, not {type(source).__name__}"
                    + (" (an int would allocate that many bytes)" if isinstance(source, int) else "")
                )
            encoding = args[1]
            if type(source) is str and type(encoding) is str and encoding.lower() in _LATIN1:
                return _charge(len(source), limits, what)
            raise GuardViolation(f"{what}(str, encoding) is only accepted with latin-1")

        return guard

    return factory


def _codecs_encode(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _no_kwargs(kwargs, "_codecs.encode")
        _arity(args, 2, 3, "_codecs.encode")
        text, encoding = args[0], args[1]
        if type(text) is not str or type(encoding) is not str or encoding.lower() not in _LATIN1:
            raise GuardViolation("_codecs.encode is only accepted as encode(str, 'latin1')")
        if len(args) == 3 and args[2] != "strict":
            raise GuardViolation("_codecs.encode: only errors='strict' is accepted")
        return _charge(len(text), limits, "_codecs.encode")

    return guard


def _container(what: str, *, hashed: bool = False) -> Callable[[GuardContext], CallGuard]:
    def factory(ctx: GuardContext) -> CallGuard:
        def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
            _no_kwargs(kwargs, what)
            _arity(args, 0, 1, what)
            if args:
                _materialized(args[0], limits, what)
                # set(a_set) copies the table without comparing keys
                if hashed and type(args[0]) not in (set, frozenset, dict):
                    keys = _keys_of(args[0])
                    if keys is not None:
                        _collisions(keys, limits, what)
            return 0

        return guard

    return factory


def _pair_keys(value: object, limits: Limits, what: str, *, copies_dicts: bool) -> None:
    if type(value) is dict:
        if not copies_dicts:  # OrderedDict/defaultdict insert key by key
            _collisions(list(value), limits, what)
        return
    if type(value) in (list, tuple):
        _collisions([item[0] for item in value], limits, what)  # type: ignore[union-attr]


def _mapping(what: str, *, copies_dicts: bool = False) -> Callable[[GuardContext], CallGuard]:
    def factory(ctx: GuardContext) -> CallGuard:
        def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
            _arity(args, 0, 1, what)
            if args:
                _pairs(args[0], limits, what)
                _pair_keys(args[0], limits, what, copies_dicts=copies_dicts)
            if kwargs:
                _length(len(kwargs), limits, what)
            return 0

        return guard

    return factory


def _counter(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _arity(args, 0, 1, "Counter")
        if args and args[0] is not None:
            _materialized(args[0], limits, "Counter")
            keys = _keys_of(args[0])
            if keys is not None:
                _collisions(keys, limits, "Counter")
        if kwargs:
            _length(len(kwargs), limits, "Counter")
        return 0

    return guard


def _deque(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _arity(args, 0, 2, "deque")
        merged = dict(zip(("iterable", "maxlen"), args, strict=False))
        for key, value in (kwargs or {}).items():
            if key not in ("iterable", "maxlen") or key in merged:
                raise GuardViolation(f"deque: unexpected keyword argument {brief(key)}")
            merged[key] = value
        if "iterable" in merged:
            _materialized(merged["iterable"], limits, "deque")
        maxlen = merged.get("maxlen")
        if maxlen is not None and (type(maxlen) is not int or maxlen < 0):
            raise GuardViolation("deque: maxlen must be None or a non-negative int")
        return 0

    return guard


def _defaultdict(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _arity(args, 0, 2, "defaultdict")
        if args:
            factory = args[0]
            if factory is not None and not ctx.is_callable(factory):
                raise GuardViolation(
                    "defaultdict: the default factory must be None or a global the policy allows, "
                    f"not {type(factory).__name__}"
                )
        if len(args) == 2:
            _pairs(args[1], limits, "defaultdict")
            _pair_keys(args[1], limits, "defaultdict", copies_dicts=False)
        if kwargs:
            _length(len(kwargs), limits, "defaultdict")
        return 0

    return guard


def _complex(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _no_kwargs(kwargs, "complex")
        _arity(args, 0, 2, "complex")
        for value in args:
            if type(value) not in (int, float, bool, complex, str):
                raise GuardViolation(f"complex() only accepts numbers or a str, not {type(value).__name__}")
            _text_number(value, "complex")
        if len(args) == 2 and type(args[0]) is str:
            raise GuardViolation("complex(str, x) is invalid")
        return 0

    return guard


def _int(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _no_kwargs(kwargs, "int")
        _arity(args, 0, 2, "int")
        if args:
            if type(args[0]) not in (int, float, bool, str, bytes, bytearray):
                raise GuardViolation(f"int() only accepts numbers or text here, not {type(args[0]).__name__}")
            _text_number(args[0], "int")
        if len(args) == 2 and type(args[1]) is not int:
            raise GuardViolation("int(x, base): base must be an int")
        return 0

    return guard


def _float(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _no_kwargs(kwargs, "float")
        _arity(args, 0, 1, "float")
        if args:
            if type(args[0]) not in (int, float, bool, str, bytes):
                raise GuardViolation(f"float() only accepts numbers or text here, not {type(args[0]).__name__}")
            _text_number(args[0], "float")
        return 0

    return guard


def _str(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _no_kwargs(kwargs, "str")
        _arity(args, 0, 3, "str")
        if not args:
            return 0
        if len(args) == 1:
            if type(args[0]) not in (str, int, float, bool, type(None)):
                raise GuardViolation(f"str() only accepts str or numbers here, not {type(args[0]).__name__}")
            return 0
        if not isinstance(args[0], _BYTES_LIKE) or not all(type(a) is str for a in args[1:]):
            raise GuardViolation("str(data, encoding[, errors]) needs bytes-like data and str arguments")
        # Any other codec would be looked up (and imported) by name, and some
        # are slow on hostile input (punycode is quadratic).
        if args[1].lower().replace("_", "-") not in _TEXT_CODECS:
            raise GuardViolation("str(data, encoding): only utf-8, ascii and latin-1 are accepted")
        if len(args) == 3 and args[2] not in ("strict", "replace", "ignore", "surrogateescape"):
            raise GuardViolation("str(data, encoding, errors): unsupported errors handler")
        return _charge(4 * _nbytes(args[0]), limits, "str")

    return guard


def _bool(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _no_kwargs(kwargs, "bool")
        _arity(args, 0, 1, "bool")
        if args and type(args[0]) not in (*_SCALARS, *MATERIALIZED):
            raise GuardViolation(f"bool() only accepts builtin values here, not {type(args[0]).__name__}")
        return 0

    return guard


def _range(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _no_kwargs(kwargs, "range")
        _arity(args, 1, 3, "range")
        if not all(type(a) in (int, bool) for a in args):
            raise GuardViolation("range() only accepts ints here")
        return 0

    return guard


def _type(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _no_kwargs(kwargs, "type")
        if len(args) != 1:
            raise GuardViolation("type() is only accepted with one argument (type(x)); it never creates classes")
        return 0

    return guard


def _no_args(what: str) -> Callable[[GuardContext], CallGuard]:
    def factory(ctx: GuardContext) -> CallGuard:
        def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
            _no_kwargs(kwargs, what)
            _arity(args, 0, 0, what)
            return 0

        return guard

    return factory


_FRACTION_TEXT = re.compile(r"\s*[+-]?[0-9]+(/[0-9]+)?\s*")


def _fraction(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        # Fraction('1e10000000') computes 10**10**7; pickles write str(f),
        # which is 'n' or 'n/d'.  Ints are linear in their size.
        _no_kwargs(kwargs, "Fraction")
        _arity(args, 1, 2, "Fraction")
        if len(args) == 1 and type(args[0]) is str:
            if len(args[0]) > 2 * MAX_NUMBER_TEXT or not _FRACTION_TEXT.fullmatch(args[0]):
                raise GuardViolation("Fraction(str) is only accepted as 'n' or 'n/d' (no exponents)")
            return 0
        if not all(type(a) in (int, bool) for a in args):
            raise GuardViolation("Fraction() only accepts ints or an 'n/d' string here")
        return 0

    return guard


def _handed_class(ctx: GuardContext, cls: object, what: str) -> type:
    if not isinstance(cls, type):
        raise GuardViolation(f"{what}: the class argument is a {type(cls).__name__}, not a class")
    if not ctx.is_callable(cls):
        raise GuardViolation(f"{what}: class {cls.__module__}.{cls.__qualname__} was not handed over by the policy")
    return cls


def _reconstructor(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        # copyreg._reconstructor(cls, base, state): base.__new__(cls, state),
        # then base.__init__(obj, state) unless base is object.
        _no_kwargs(kwargs, "copyreg._reconstructor")
        _arity(args, 3, 3, "copyreg._reconstructor")
        cls = _handed_class(ctx, args[0], "copyreg._reconstructor")
        base, state = args[1], args[2]
        if not isinstance(base, type) or base not in cls.__mro__:
            raise GuardViolation("copyreg._reconstructor: base must be a class in cls.__mro__")
        if base is object:
            if state is not None:
                raise GuardViolation("copyreg._reconstructor: with base object the state must be None")
            return 0
        inner = ctx.guard(base) if ctx.is_callable(base) else None
        if inner is None:
            raise GuardViolation(
                f"copyreg._reconstructor: base {base.__module__}.{base.__qualname__} must be allowed "
                "by the policy and have an argument guard"
            )
        return inner((state,), None, limits)

    return guard


def _newobj(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _no_kwargs(kwargs, "copyreg.__newobj__")
        if not args:
            raise GuardViolation("copyreg.__newobj__ needs a class")
        cls = _handed_class(ctx, args[0], "copyreg.__newobj__")
        inner = ctx.guard(cls)
        return inner(tuple(args[1:]), None, limits) if inner is not None else 0

    return guard


def _newobj_ex(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        _no_kwargs(kwargs, "copyreg.__newobj_ex__")
        _arity(args, 3, 3, "copyreg.__newobj_ex__")
        cls = _handed_class(ctx, args[0], "copyreg.__newobj_ex__")
        if type(args[1]) is not tuple or type(args[2]) is not dict:
            raise GuardViolation("copyreg.__newobj_ex__(cls, args, kwargs) needs a tuple and a dict")
        inner = ctx.guard(cls)
        return inner(args[1], args[2], limits) if inner is not None else 0

    return guard


# -- NumPy ------------------------------------------------------------------

NPY_LIST_PICKLE = 0x02
MAX_DIMS = 64
MAX_DTYPE_TEXT = 256


def _np() -> Any:
    return sys.modules["numpy"]


def _shape(shape: object, what: str) -> tuple[int, ...]:
    if type(shape) in (int, bool):
        shape = (int(shape),)
    if type(shape) not in (tuple, list) or len(shape) > MAX_DIMS:  # type: ignore[arg-type]
        raise GuardViolation(f"{what}: shape must be a tuple of at most {MAX_DIMS} ints")
    dims = tuple(shape)  # type: ignore[arg-type]
    for dim in dims:
        if type(dim) not in (int, bool) or dim < 0:
            raise GuardViolation(f"{what}: shape must hold non-negative ints, got {brief(dim)}")
    return dims


def _count(dims: tuple[int, ...]) -> int:
    return math.prod(dims)


#: A dtype string as NumPy's pickles write it: one type code or name with an
#: optional byte order, item size and datetime unit ("<f8", "U3", "M8[ns]",
#: "float64").
_DTYPE_TEXT = re.compile(r"[<>=|]?[A-Za-z_][A-Za-z0-9_]*(\[[0-9]*[A-Za-z]+\])?\Z")


def _dtype_arg(spec: object, what: str) -> Any:
    """A dtype argument: an existing dtype (sealed from now on), a NumPy
    scalar type or a short type string; never a list/dict spec (those can
    name arbitrary objects)."""
    np = _np()
    if isinstance(spec, np.dtype):
        SEALS.seal(spec)
        return spec
    # A NumPy scalar type (numpy.record for record arrays) names a dtype too.
    scalar_type = isinstance(spec, type) and issubclass(spec, np.generic)
    if type(spec) in (str, bytes) and not _DTYPE_TEXT.match(spec if type(spec) is str else spec.decode("latin-1")):
        # Comma strings, repeat counts and shapes ("2", "(2,3)i4", "i4,f8") make
        # NumPy's parser compile() the text with ast.literal_eval.
        raise GuardViolation(f"{what}: dtype string {brief(spec)} is not a single type code or name")
    if scalar_type or (type(spec) in (str, bytes) and len(spec) <= MAX_DTYPE_TEXT):  # type: ignore[arg-type]
        try:
            return np.dtype(spec)
        except Exception as exc:
            raise GuardViolation(f"{what}: bad dtype {brief(spec)}: {exception_text(exc)}") from None
    raise GuardViolation(
        f"{what}: dtype must be a dtype, a NumPy scalar type or a short type string, not {type(spec).__name__}"
    )


def _no_uninitialized(dims: tuple[int, ...], what: str) -> None:
    # ndarray.__new__ does not zero its memory: a non-empty array that no
    # BUILD overwrites hands heap contents (pointers, secrets) to the result.
    # NumPy's pickles always create the empty (0,) array and then BUILD it.
    if _count(dims):
        raise GuardViolation(
            f"{what}: shape {_brief_shape(dims)} would return uninitialized memory; pickles use (0,)"
        )


def _array_bytes(dims: tuple[int, ...], dtype: Any) -> int:
    # Zero-size items still cost an element each (iteration, object overhead).
    return _count(dims) * max(dtype.itemsize, 1)


def _ndarray_class(ctx: GuardContext, cls: object, base: Any, what: str) -> type:
    cls = _handed_class(ctx, cls, what)
    if not issubclass(cls, base):
        raise GuardViolation(f"{what}: {cls.__qualname__} is not a {base.__qualname__} subclass")
    return cls


def _np_reconstruct(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        what = "numpy _reconstruct"
        _no_kwargs(kwargs, what)
        _arity(args, 3, 3, what)
        _ndarray_class(ctx, args[0], _np().ndarray, what)
        dims = _shape(args[1], what)
        dtype = _dtype_arg(args[2], what)
        nbytes = _charge(_array_bytes(dims, dtype), limits, what)
        _no_uninitialized(dims, what)
        return nbytes

    return guard


def _np_ndarray(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        what = "numpy.ndarray()"
        _arity(args, 1, 2, what)
        for key in kwargs or {}:
            if key not in ("dtype", "order"):
                raise GuardViolation(f"{what}: keyword {brief(key)} is refused (no buffer, offset or strides)")
        dims = _shape(args[0], what)
        spec = args[1] if len(args) == 2 else (kwargs or {}).get("dtype", "f8")
        dtype = _dtype_arg(spec, what)
        nbytes = _charge(_array_bytes(dims, dtype), limits, what)
        _no_uninitialized(dims, what)
        return nbytes

    return guard


def _np_scalar(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        what = "numpy scalar"
        _no_kwargs(kwargs, what)
        _arity(args, 1, 2, what)
        np = _np()
        dtype = args[0]
        if not isinstance(dtype, np.dtype):
            raise GuardViolation(f"{what}: first argument must be a dtype")
        SEALS.seal(dtype)
        if dtype.char == "O":
            return 0
        if dtype.flags & NPY_LIST_PICKLE or dtype.hasobject:
            # Structured scalars with objects are pickled as an array; the
            # scalar then points into that array's memory.
            if len(args) != 2 or type(args[1]) is not np.ndarray:
                raise GuardViolation(f"{what}: a structured scalar with objects needs an array")
            SEALS.seal(args[1])
            return _charge(dtype.itemsize, limits, what)
        if len(args) == 2:
            data = args[1]
            if type(data) not in (bytes, str) or len(data) != dtype.itemsize:
                raise GuardViolation(f"{what}: data must be {dtype.itemsize} bytes for {dtype.str}")
        return _charge(dtype.itemsize, limits, what)

    return guard


def _underlying(buf: object) -> object:
    with memoryview(buf) as view:  # type: ignore[arg-type]
        return view.obj


def _np_frombuffer(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        what = "numpy _frombuffer"
        _arity(args, 4, 5, what)
        extra = dict(kwargs or {})
        if set(extra) - {"axis_order"} or (len(args) == 5 and extra):
            raise GuardViolation(f"{what}: unexpected keyword arguments")
        np = _np()
        buf, dtype, shape, order = args[:4]
        axis_order = args[4] if len(args) == 5 else extra.get("axis_order")
        if not isinstance(buf, _BYTES_LIKE):
            raise GuardViolation(f"{what}: buffer must be bytes, bytearray or a pickle buffer")
        if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.flags & NPY_LIST_PICKLE:
            raise GuardViolation(f"{what}: dtype must be a dtype without Python objects")
        SEALS.seal(dtype)
        owner = _underlying(buf)
        if isinstance(owner, np.ndarray):
            SEALS.seal(owner)  # the new array is a view on it
        dims = _shape(shape, what)
        if order not in ("C", "F", "A", "K"):
            raise GuardViolation(f"{what}: order must be one of C, F, A, K")
        if axis_order is not None:
            if (
                type(axis_order) not in (tuple, list)
                or not all(type(a) is int for a in axis_order)
                or sorted(axis_order) != list(range(len(dims)))
            ):
                raise GuardViolation(f"{what}: axis_order must be a permutation of the axes")
        if _count(dims) * dtype.itemsize != _nbytes(buf):
            raise GuardViolation(
                f"{what}: shape {_brief_shape(dims)} of {dtype.str} does not match {_nbytes(buf)} buffer bytes"
            )
        return 0  # a view: the bytes were already paid for

    return guard


def _np_mareconstruct(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        what = "numpy.ma _mareconstruct"
        _no_kwargs(kwargs, what)
        _arity(args, 4, 4, what)
        np = _np()
        ma = sys.modules["numpy.ma"]
        _ndarray_class(ctx, args[0], ma.MaskedArray, what)
        _ndarray_class(ctx, args[1], np.ndarray, what)
        dims = _shape(args[2], what)
        dtype = _dtype_arg(args[3], what)
        mask = ma.make_mask_descr(dtype)
        nbytes = _charge(_count(dims) * (max(dtype.itemsize, 1) + max(mask.itemsize, 1)), limits, what)
        _no_uninitialized(dims, what)
        return nbytes

    return guard


def _np_dtype(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        what = "numpy.dtype()"
        _no_kwargs(kwargs, what)
        if len(args) != 3:
            raise GuardViolation(f"{what} is only accepted as dtype(spec, align, copy=True), as pickle writes it")
        _dtype_arg(args[0], what)
        align, copy = args[1], args[2]
        if type(align) not in (bool, int) or align not in (0, 1):
            raise GuardViolation(f"{what}: align must be a bool")
        if type(copy) not in (bool, int) or copy != 1:
            # copy=False returns NumPy's shared builtin dtype; BUILD would then
            # rewrite it for the whole process.
            raise GuardViolation(f"{what}: copy must be True")
        return 0

    return guard


def _np_stringdtype(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        what = "numpy StringDType"
        _arity(args, 1, 2, what)
        if set(kwargs or {}) - {"na_object"} or (len(args) == 2 and kwargs):
            raise GuardViolation(f"{what}: only coerce and na_object are accepted")
        if type(args[0]) not in (bool, int):
            raise GuardViolation(f"{what}: coerce must be a bool")
        return 0

    return guard


def _np_void(ctx: GuardContext) -> CallGuard:
    def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
        what = "numpy.void()"
        _arity(args, 1, 1, what)
        if set(kwargs or {}) - {"dtype"}:
            raise GuardViolation(f"{what}: unexpected keyword arguments")
        value = args[0]
        if type(value) in (int, bool):
            if value < 0:
                raise GuardViolation(f"{what}: negative size")
            return _charge(int(value), limits, what)
        if isinstance(value, _BYTES_LIKE):
            return _charge(_nbytes(value), limits, what)
        raise GuardViolation(f"{what}: only a size or bytes are accepted here")

    return guard


def _refuse(what: str, why: str) -> Callable[[GuardContext], CallGuard]:
    def factory(ctx: GuardContext) -> CallGuard:
        def guard(args: tuple, kwargs: dict | None, limits: Limits) -> int:
            raise GuardViolation(f"{what} cannot be called from a pickle: {why}")

        return guard

    return factory


#: canonical ``module:qualname`` -> (guard factory, method whose arguments it
#: checks: subclasses that inherit that method from this class inherit the
#: guard; None for functions).
CALL_GUARDS: dict[str, tuple[Callable[[GuardContext], CallGuard], str | None]] = {
    "builtins:bytearray": (_bytes_guard("bytearray"), "__init__"),
    "builtins:bytes": (_bytes_guard("bytes"), "__new__"),
    "_codecs:encode": (_codecs_encode, None),
    "builtins:set": (_container("set", hashed=True), "__init__"),
    "builtins:frozenset": (_container("frozenset", hashed=True), "__new__"),
    "builtins:list": (_container("list"), "__init__"),
    "builtins:tuple": (_container("tuple"), "__new__"),
    "builtins:dict": (_mapping("dict", copies_dicts=True), "__init__"),
    "builtins:complex": (_complex, "__new__"),
    "builtins:int": (_int, "__new__"),
    "builtins:float": (_float, "__new__"),
    "builtins:str": (_str, "__new__"),
    "builtins:bool": (_bool, "__new__"),
    "builtins:range": (_range, "__new__"),
    "builtins:type": (_type, "__new__"),
    "builtins:object": (_no_args("object"), None),
    "fractions:Fraction": (_fraction, "__new__"),
    "collections:deque": (_deque, "__init__"),
    "collections:Counter": (_counter, "__init__"),
    "collections:OrderedDict": (_mapping("OrderedDict"), "__init__"),
    "collections:defaultdict": (_defaultdict, "__init__"),
    "copyreg:_reconstructor": (_reconstructor, None),
    "copyreg:__newobj__": (_newobj, None),
    "copyreg:__newobj_ex__": (_newobj_ex, None),
    "numpy._core.multiarray:_reconstruct": (_np_reconstruct, None),
    "numpy._core.multiarray:scalar": (_np_scalar, None),
    "numpy._core.numeric:_frombuffer": (_np_frombuffer, None),
    "numpy._core._internal:_convert_to_stringdtype_kwargs": (_np_stringdtype, None),
    "numpy.ma.core:_mareconstruct": (_np_mareconstruct, None),
    "numpy:ndarray": (_np_ndarray, "__new__"),
    "numpy:dtype": (_np_dtype, "__new__"),
    "numpy:void": (_np_void, "__new__"),
    # Pickles build these through _reconstruct/_mareconstruct, never by a
    # direct call, whose arguments (data to convert, buffers, strides) are
    # far wider than a pickle needs.  NumPy 1.x and 2.x module names both.
    "numpy.ma:MaskedArray": (_refuse("numpy.ma.MaskedArray", "masked arrays load through _mareconstruct"), "__new__"),
    "numpy.ma.core:MaskedArray": (
        _refuse("numpy.ma.MaskedArray", "masked arrays load through _mareconstruct"),
        "__new__",
    ),
    "numpy.ma.core:mvoid": (_refuse("numpy.ma.mvoid", "masked scalars load through _mareconstruct"), "__new__"),
    "numpy.rec:recarray": (_refuse("numpy.recarray", "record arrays load through _reconstruct"), "__new__"),
    "numpy:recarray": (_refuse("numpy.recarray", "record arrays load through _reconstruct"), "__new__"),
    "numpy:matrix": (_refuse("numpy.matrix", "matrices load through _reconstruct"), "__new__"),
    "numpy.ma.core:MaskedConstant": (_no_args("numpy.ma.MaskedConstant"), "__new__"),
}


# -- state guards (BUILD) ---------------------------------------------------


def _raw_data(raw: object, dtype: Any, count: int, what: str) -> None:
    """Check an ndarray state's data against its shape and dtype."""
    if dtype.flags & NPY_LIST_PICKLE:
        if type(raw) is not list or len(raw) != count:
            raise GuardViolation(f"{what}: an array of {dtype.str} needs a list of exactly {count} items")
        return
    if dtype.hasobject:
        raise GuardViolation(f"{what}: {dtype.str} holds objects but is not list-pickled")
    nbytes = count * dtype.itemsize
    if type(raw) not in (bytes, str) or len(raw) != nbytes:  # str: NumPy reads it as latin-1
        raise GuardViolation(f"{what}: data must be exactly {nbytes} bytes for {count} items of {dtype.str}")


def _fresh(obj: object, what: str) -> None:
    if SEALS.is_sealed(obj):
        raise GuardViolation(f"{what}: this object already has state or is in use; BUILD is applied once")


def _ndarray_state(obj: object, state: object, limits: Limits) -> int:
    what = "ndarray BUILD"
    np = _np()
    if type(state) is not tuple or len(state) not in (4, 5):
        raise GuardViolation(f"{what}: state must be (version, shape, dtype, is_fortran, data)")
    if len(state) == 5:
        if type(state[0]) is not int:
            raise GuardViolation(f"{what}: version must be an int")
        state = state[1:]
    shape, dtype, fortran, raw = state
    dims = _shape(shape, what)
    if not isinstance(dtype, np.dtype):
        raise GuardViolation(f"{what}: dtype must be a dtype")
    if type(fortran) not in (bool, int):
        raise GuardViolation(f"{what}: is_fortran must be a bool")
    _fresh(obj, what)
    nbytes = _charge(_array_bytes(dims, dtype), limits, what)
    _raw_data(raw, dtype, _count(dims), what)
    SEALS.seal(dtype)
    SEALS.seal(obj)
    return nbytes


def _masked_state(obj: object, state: object, limits: Limits) -> int:
    what = "MaskedArray BUILD"
    np = _np()
    ma = sys.modules["numpy.ma"]
    if type(state) is not tuple or len(state) != 7:
        raise GuardViolation(f"{what}: state must be (version, shape, dtype, is_fortran, data, mask, fill)")
    _version, shape, dtype, fortran, raw, mask, _fill = state
    dims = _shape(shape, what)
    if not isinstance(dtype, np.dtype):
        raise GuardViolation(f"{what}: dtype must be a dtype")
    if type(fortran) not in (bool, int):
        raise GuardViolation(f"{what}: is_fortran must be a bool")
    inner = getattr(obj, "_mask", None)
    if type(inner) is not np.ndarray:
        raise GuardViolation(f"{what}: the masked array has no mask array to restore")
    _fresh(obj, what)
    _fresh(inner, what)
    count = _count(dims)
    mask_dtype = ma.make_mask_descr(dtype)
    nbytes = _charge(_array_bytes(dims, dtype) + _array_bytes(dims, mask_dtype), limits, what)
    _raw_data(raw, dtype, count, what)
    _raw_data(mask, mask_dtype, count, what + " (mask)")
    SEALS.seal(dtype)
    SEALS.seal(obj)
    SEALS.seal(inner)
    return nbytes


def _dtype_candidate(obj: Any, state: tuple) -> Any:
    """Build, through NumPy's validating constructors, the dtype that
    ``state`` describes for ``obj``; raise GuardViolation if that fails."""
    np = _np()
    version = state[0]
    byteorder, subarray, names, fields, elsize, alignment, flags = state[1:8]
    metadata = None
    dt_meta = None
    if version == 4:
        extra = state[8]
        if type(extra) is tuple and len(extra) == 2 and obj.kind in "mM":
            metadata, dt_meta = extra
        else:
            metadata = extra
    if byteorder not in ("<", ">", "|", "="):
        raise GuardViolation(f"dtype BUILD: bad byte order {brief(byteorder)}")
    for value in (elsize, alignment, flags):
        if type(value) is not int:
            raise GuardViolation("dtype BUILD: elsize, alignment and flags must be ints")
    if metadata is not None and type(metadata) is not dict:
        raise GuardViolation("dtype BUILD: metadata must be a dict")
    for nested in _nested_dtypes(subarray, fields):
        if not isinstance(nested, np.dtype):
            raise GuardViolation("dtype BUILD: nested field types must be dtypes")
    if fields is not None:
        if type(names) is not tuple or type(fields) is not dict:
            raise GuardViolation("dtype BUILD: names must be a tuple and fields a dict")
        formats, offsets, titles = [], [], []
        for name in names:
            entry = fields.get(name) if type(name) is str else None
            if type(entry) is not tuple or len(entry) not in (2, 3) or type(entry[1]) is not int:
                raise GuardViolation(f"dtype BUILD: bad field {brief(name)}")
            title = entry[2] if len(entry) == 3 else None
            if title is not None and type(title) is not str:
                raise GuardViolation("dtype BUILD: field titles must be str")
            formats.append(entry[0])
            offsets.append(entry[1])
            titles.append(title)
        spec: Any = {"names": list(names), "formats": formats, "offsets": offsets, "itemsize": elsize}
        if any(t is not None for t in titles):
            spec["titles"] = titles
        candidate = np.dtype(spec, align=bool(flags & 0x80))
    elif subarray is not None:
        if type(subarray) is not tuple or len(subarray) != 2 or type(subarray[1]) is not tuple:
            raise GuardViolation("dtype BUILD: subarray must be (dtype, shape)")
        base, dims = subarray
        candidate = np.dtype((base, _shape(dims, "dtype BUILD")))
    elif obj.kind in "mM":
        if type(dt_meta) is not tuple or len(dt_meta) != 4:
            raise GuardViolation("dtype BUILD: datetime metadata must be (unit, num, den, events)")
        unit, num = dt_meta[0], dt_meta[1]
        if type(unit) is not bytes or type(num) is not int or not unit.isalpha() or len(unit) > 8:
            raise GuardViolation("dtype BUILD: bad datetime unit")
        candidate = np.dtype(f"{byteorder}{obj.kind}8[{num}{unit.decode('ascii')}]")
    elif obj.kind in "SUV":
        size = elsize // 4 if obj.kind == "U" else elsize
        candidate = np.dtype(f"{byteorder}{obj.kind}{size}")
    else:
        candidate = np.dtype(f"{byteorder}{obj.kind}{obj.itemsize}")
    if metadata is not None:
        candidate = np.dtype(candidate, metadata=metadata)
    return candidate


def _nested_dtypes(subarray: object, fields: object) -> list[object]:
    nested: list[object] = []
    if type(subarray) is tuple and subarray:
        nested.append(subarray[0])
    if type(fields) is dict:
        nested.extend(v[0] for v in fields.values() if type(v) is tuple and v)
    return nested


def _same(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _dtype_state(obj: object, state: object, limits: Limits) -> int:
    what = "dtype BUILD"
    np = _np()
    if type(state) is not tuple or not state or state[0] not in (3, 4) or len(state) != 5 + state[0]:
        raise GuardViolation(f"{what}: only the version 3/4 state NumPy writes is accepted")
    _fresh(obj, what)
    if np.dtype(obj.char) is obj or (obj.kind not in "SUV" and np.dtype(obj.str) is obj):
        raise GuardViolation(f"{what}: NumPy's shared builtin dtypes cannot be given state")
    try:
        candidate = _dtype_candidate(obj, state)
    except GuardViolation:
        raise
    except Exception as exc:
        raise GuardViolation(f"{what}: state does not describe a valid dtype: {exception_text(exc)}") from None
    if type(candidate) is not type(obj):
        raise GuardViolation(f"{what}: state describes a {type(candidate).__name__}, not a {type(obj).__name__}")
    try:
        expected = candidate.__reduce__()[2]
    except Exception as exc:
        raise GuardViolation(f"{what}: {exception_text(exc)}") from None
    if type(expected) is not tuple or len(expected) != len(state) or not all(
        _same(a, b) for a, b in zip(expected, state, strict=True)
    ):
        raise GuardViolation(f"{what}: state is not what NumPy writes for {candidate.str}")
    _, _, subarray, _, fields, *_ = state
    for nested in _nested_dtypes(subarray, fields):
        SEALS.seal(nested)
    SEALS.seal(obj)
    return 0


def _refuse_state(obj: object, state: object, limits: Limits) -> int:
    raise GuardViolation(
        f"BUILD on {type(obj).__qualname__}: an ndarray subclass with its own __setstate__ is not supported"
    )


def state_guard_for(obj: object) -> StateGuard | None:
    """The BUILD guard for ``obj``'s type, or None when it needs none.

    NumPy dtypes, arrays and masked arrays always get one; an ndarray
    subclass that overrides ``__setstate__`` is refused (its method would pass
    stream data to NumPy's unchecked setstate).
    """
    np = sys.modules.get("numpy")
    if np is None:
        return None
    if isinstance(obj, np.dtype):
        return _STATE_GUARDS["dtype"]
    if isinstance(obj, np.ndarray):
        setstate = type(obj).__setstate__
        if setstate is np.ndarray.__setstate__:
            return _STATE_GUARDS["ndarray"]
        ma = sys.modules.get("numpy.ma")
        if ma is not None and setstate is ma.MaskedArray.__setstate__:
            return _STATE_GUARDS["masked"]
        return _STATE_GUARDS["refuse"]
    return None


_STATE_GUARDS: dict[str, StateGuard] = {
    "dtype": hardened_state(_dtype_state),
    "ndarray": hardened_state(_ndarray_state),
    "masked": hardened_state(_masked_state),
    "refuse": hardened_state(_refuse_state),
}
