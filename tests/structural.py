"""Structural equality for test oracles: same types, same values, same sharing
(memo) and the same recursion, checked by walking both object graphs."""

from __future__ import annotations

from typing import Any

_ATOMS = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis), type(NotImplemented))


def same_structure(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are isomorphic object graphs of equal values."""
    pairs: dict[int, int] = {}
    back: dict[int, int] = {}
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, _ATOMS):
            if isinstance(x, float) and x != x:
                if y == y:
                    return False
            elif x != y:
                return False
            continue
        seen = pairs.get(id(x))
        if seen is not None:
            if seen != id(y):
                return False
            continue
        if back.get(id(y)) is not None:
            return False
        pairs[id(x)] = id(y)
        back[id(y)] = id(x)
        if isinstance(x, (list, tuple)):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif isinstance(x, dict):
            if list(x.keys()) != list(y.keys()):
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif isinstance(x, (set, frozenset, bytearray)):
            if x != y:
                return False
        elif hasattr(x, "__dict__") and not isinstance(x, type):
            stack.append((vars(x), vars(y)))
        elif x != y:
            return False
    return True
