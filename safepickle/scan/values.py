"""The values the static decoder keeps on its simulated stack.

Constants the VM would build itself (str, bytes, bytearray, int, float,
bool, None, tuples of values) are kept as the Python values themselves, so a
``module``/``name`` pair that went through the memo is still known at
STACK_GLOBAL.  Containers the VM builds are kept as small records (their
length, and a few items of a dict for the joblib reader).  Everything the VM
would get from somewhere else (a global, the result of a call, a persistent
id, an out-of-band buffer) is a marker that says where it came from, never
the object: nothing is imported or called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GlobalValue", "Made", "Opaque", "ListValue", "DictValue", "Built", "vm_built", "key_problem",
           "describe", "DICT_TRACK"]

# A dict keeps at most this many known items (enough for BUILD state of the
# joblib array wrapper); beyond that only its length is counted.
DICT_TRACK = 64
# Keys whose items a dict keeps.
_TRACKED = frozenset({str, int, bytes})


class GlobalValue:
    """The object a GLOBAL/INST/STACK_GLOBAL/EXT opcode pushed: ``site``
    (a :class:`~safepickle.scan.report.Site`) says which global."""

    __slots__ = ("site",)

    def __init__(self, site: Any) -> None:
        self.site = site


class Made:
    """The result of a call (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ) or a
    persistent load.  ``site``: the global that was called (None when the
    callable was itself computed); ``cls``: the site of the class it is an
    instance of when known; ``args``/``state``: the arguments and the last
    BUILD state, as values."""

    __slots__ = ("site", "cls", "args", "state")

    def __init__(self, site: Any, cls: Any, args: Any = None) -> None:
        self.site = site
        self.cls = cls
        self.args = args
        self.state = None


class Opaque:
    """A value the VM gets from outside the stream: an out-of-band buffer,
    the array joblib reads in place of its wrapper."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


class ListValue:
    """A list the VM built (EMPTY_LIST, LIST); ``n`` items."""

    __slots__ = ("n",)
    __hash__ = None  # type: ignore[assignment]  # unhashable, as a list is

    def __init__(self, n: int = 0) -> None:
        self.n = n


class DictValue:
    """A dict the VM built; ``items`` holds up to :data:`DICT_TRACK` items
    whose keys are plain constants, ``n`` counts every pair set."""

    __slots__ = ("items", "n")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self) -> None:
        self.items: dict[Any, Any] = {}
        self.n = 0

    def put(self, key: Any, value: Any) -> None:
        self.n += 1
        if type(key) in _TRACKED and (key in self.items or len(self.items) < DICT_TRACK):
            self.items[key] = value

    def put_pairs(self, flat: list) -> None:
        """``put`` every (key, value) pair of ``flat`` (key, value, key, value...)."""
        self.n += len(flat) >> 1
        items = self.items
        for i in range(0, len(flat) - 1, 2):
            key = flat[i]
            if type(key) in _TRACKED and (key in items or len(items) < DICT_TRACK):
                items[key] = flat[i + 1]


class Built:
    """Another object the VM builds itself: ``kind`` is "set", "frozenset"
    or "memoryview"."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


_PLAIN = (str, bytes, bytearray, int, float, type(None), tuple, ListValue, DictValue, Built)


def vm_built(value: Any) -> bool:
    """True when the VM builds this value itself, so it is never an object
    that an allowed call produced (BUILD, item assignment and calls on it are
    refused) and never a type."""
    return isinstance(value, _PLAIN)


def key_problem(value: Any, max_depth: int) -> str | None:
    """Why the VM could not use ``value`` as a dict key or set item:
    "unhashable" (a list, dict, set or bytearray, or a tuple holding one at
    any depth), "deep" (tuples nested deeper than ``max_depth``: hashing them
    recurses in C), or None.  Iterative, so a million-deep tuple costs no
    recursion here."""
    if type(value) is not tuple:
        t = type(value)
        if t is ListValue or t is DictValue or t is bytearray or (t is Built and value.kind == "set"):
            return "unhashable"
        return None
    todo = [(value, 1)]
    while todo:
        v, depth = todo.pop()
        for x in v:
            t = type(x)
            if t is tuple:
                if depth >= max_depth:
                    return "deep"
                todo.append((x, depth + 1))
            elif t is ListValue or t is DictValue or t is bytearray or (t is Built and x.kind == "set"):
                return "unhashable"
    return None


def describe(value: Any, limit: int = 80, _level: int = 0) -> str:
    """A short description of a value, for messages: tuples are shown two
    levels deep at most, so a deeply nested stream costs nothing here."""
    t = type(value)
    if t is GlobalValue:
        return f"<global {value.site.qualified}>"
    if t is Made:
        return f"<result of {value.site.qualified}>" if value.site is not None else "<computed value>"
    if t is Opaque:
        return f"<{value.what}>"
    if t is ListValue:
        return f"<list of {value.n}>"
    if t is DictValue:
        return f"<dict of {value.n}>"
    if t is Built:
        return f"<{value.kind}>"
    if t is tuple:
        if _level >= 2:
            return f"<tuple of {len(value)}>"
        inner = ", ".join(describe(v, 24, _level + 1) for v in value[:4])
        more = ", ..." if len(value) > 4 else ""
        text = f"({inner}{more}{',' if len(value) == 1 else ''})"
    elif t in (str, bytes, bytearray):
        text = repr(value[:limit])
    else:
        if t is int and value.bit_length() > 200:
            text = f"<int of {value.bit_length()} bits>"
        else:
            text = repr(value) if t in (int, float, bool, type(None)) else f"<{t.__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
