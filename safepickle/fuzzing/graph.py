"""A canonical, flat description of an object graph, for the differential oracle.

Two results are *structurally equal* (same types, same values, same sharing of
references, same recursion) exactly when their descriptions are equal.  The
description is a flat list of JSON-able tokens produced by a depth-first walk
from the root that numbers every object with identity (containers, instances)
at its first visit and writes ``["ref", n]`` when it meets it again: for rooted
graphs whose children are ordered, this preorder numbering is a canonical form,
so comparing descriptions is a graph-isomorphism test.  Set elements have no
order; they are visited in the order of a local, identity-free key (a bounded
description of the element alone), which is the same in every process (hash
seeds and ``id`` values never enter the description).

The walk is iterative (results may nest hundreds of thousands of levels deep)
and bounded by ``max_tokens``.  Objects that are neither builtin values nor
containers are described by their type's ``module:qualname`` and what their
``__reduce_ex__(4)`` returns (arguments, state, list and dict items), so any
class a policy allows is compared by the state pickle itself would save.  It is
meant for results of a load under a policy: calling ``__reduce_ex__`` on them
is what ``pickle.dumps`` would do.

This module is imported by the CPython worker process too: it must not import
anything of safepickle beyond itself.
"""

from __future__ import annotations

import itertools
import json
import types
from typing import Any

__all__ = ["describe", "first_difference", "global_name"]

MAX_TOKENS = 200_000
_ITEMS_CAP = 100_000  # items taken from a reduce's list/dict iterators

_GLOBAL_TYPES = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.CodeType,
    types.FrameType,
)


def global_name(obj: Any) -> tuple[str, str]:
    """``(module, qualname)`` of a class, function, module or builtin, read
    without calling anything the object defines (``"?"`` when unknown)."""
    if isinstance(obj, types.ModuleType):
        return "<module>", str(obj.__dict__.get("__name__", "?"))
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if module is None:
        owner = getattr(obj, "__self__", None)
        if owner is not None and not isinstance(owner, types.ModuleType):
            owner_type = owner if isinstance(owner, type) else type(owner)
            module = getattr(owner_type, "__module__", None)
        elif isinstance(owner, types.ModuleType):
            module = owner.__name__
    return (module if isinstance(module, str) else "?"), (name if isinstance(name, str) else "?")


def _atom(obj: Any) -> list | None:
    """The token of an immutable builtin value (no identity), else None."""
    t = type(obj)
    if obj is None:
        return ["none"]
    if t is bool:
        return ["bool", obj]
    if t is int:
        return ["int", hex(obj)]  # hex: no int_max_str_digits limit
    if t is float:
        return ["float", obj.hex()]  # -0.0 and nan spelled exactly
    if t is complex:
        return ["complex", obj.real.hex(), obj.imag.hex()]
    if t is str:
        return ["str", obj]
    if t is bytes:
        return ["bytes", obj.hex()]
    if obj is Ellipsis:
        return ["ellipsis"]
    if obj is NotImplemented:
        return ["notimplemented"]
    return None


class _Walker:
    def __init__(self, max_tokens: int) -> None:
        self.out: list = []
        self.ids: dict[int, int] = {}
        self.keep: list = []  # keeps temporaries (reduce outputs) alive so ids stay unique
        self.max_tokens = max_tokens

    def walk(self, root: Any) -> list:
        todo: list = [root]
        out = self.out
        while todo:
            if len(out) >= self.max_tokens:
                out.append(["truncated"])
                break
            obj = todo.pop()
            tok = _atom(obj)
            if tok is not None:
                out.append(tok)
                continue
            if type(obj) is _Token:
                out.append(obj.value)
                continue
            known = self.ids.get(id(obj))
            if known is not None:
                out.append(["ref", known])
                continue
            self.ids[id(obj)] = len(self.ids)
            self.keep.append(obj)
            children = self._expand(obj, out)
            todo.extend(reversed(children))
        return out

    def _expand(self, obj: Any, out: list) -> list:
        """Write the head token of ``obj`` and return its children in order."""
        t = type(obj)
        if t is list:
            out.append(["list", len(obj)])
            return list(obj)
        if t is tuple:
            out.append(["tuple", len(obj)])
            return list(obj)
        if t is dict:
            out.append(["dict", len(obj)])
            return list(itertools.chain.from_iterable(obj.items()))
        if t is set or t is frozenset:
            out.append([t.__name__, len(obj)])
            return sorted(obj, key=_set_key)
        if t is bytearray:
            out.append(["bytearray", bytes(obj).hex()])
            return []
        if t is memoryview:
            try:
                out.append(["memoryview", obj.readonly, obj.format, list(obj.shape or ()), obj.tobytes().hex()])
            except (ValueError, TypeError) as e:
                out.append(["memoryview", "unreadable", type(e).__name__])
            return []
        if isinstance(obj, _GLOBAL_TYPES):
            module, name = global_name(obj)
            out.append(["global", type(obj).__name__, module, name])
            return []
        return self._instance(obj, out)

    def _instance(self, obj: Any, out: list) -> list:
        t = type(obj)
        module, name = global_name(t)
        try:
            reduced = obj.__reduce_ex__(4)
        except Exception as e:  # a result built from hostile state may not reduce
            out.append(["object", module, name, "unreducible", type(e).__name__])
            return []
        if isinstance(reduced, str):
            out.append(["object", module, name, "global", reduced])
            return []
        if not isinstance(reduced, tuple):
            out.append(["object", module, name, "bad-reduce", type(reduced).__name__])
            return []
        parts = list(reduced) + [None] * (6 - len(reduced))
        func, args, state, listitems, dictitems, setter = parts[:6]
        self.keep.append(reduced)
        out.append(["object", module, name, len(reduced)])
        children: list = [_Token(["callable", *global_name(func)]) if func is not None else None, args, state]
        children.append(_materialize(listitems, False))
        children.append(_materialize(dictitems, True))
        children.append(_Token(["callable", *global_name(setter)]) if setter is not None else None)
        self.keep.append(children)
        return children


class _Token:
    """A ready-made token in the walk's to-do list (never an object of the result)."""

    __slots__ = ("value",)

    def __init__(self, value: list) -> None:
        self.value = value


def _materialize(it: Any, pairs: bool) -> Any:
    if it is None:
        return None
    try:
        items = list(itertools.islice(it, _ITEMS_CAP))
    except Exception as e:
        return _Token(["iter-error", type(e).__name__])
    if pairs:
        flat = []
        for item in items:
            if type(item) is tuple and len(item) == 2:
                flat.extend(item)
            else:
                flat.append(_Token(["bad-pair"]))
        return flat
    return items


def _set_key(obj: Any) -> str:
    """An identity-free key of one set element: a bounded description of it alone."""
    return json.dumps(_Walker(64).walk(obj), ensure_ascii=True, sort_keys=False, default=repr)


def describe(obj: Any, max_tokens: int = MAX_TOKENS) -> list:
    """The canonical description of the graph rooted at ``obj`` (JSON-able)."""
    return _Walker(max_tokens).walk(obj)


def first_difference(a: list, b: list) -> tuple[int, Any, Any] | None:
    """``(index, token_a, token_b)`` of the first token where two descriptions
    differ, or None when they are equal."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i, x, y
    if len(a) != len(b):
        i = min(len(a), len(b))
        return i, (a[i] if i < len(a) else "<end>"), (b[i] if i < len(b) else "<end>")
    return None
