"""A small TOML writer for policy files: strings, booleans, numbers, lists of
strings (one per line, each with an optional comment) and tables of those."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["string", "value", "string_list"]


def string(text: str) -> str:
    """A TOML basic string."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if math.isnan(v):
            return "nan"
        return repr(v)
    if isinstance(v, str):
        return string(v)
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def string_list(key: str, items: list[str], comments: dict[str, str] | None = None) -> str:
    """``key = [...]`` with one item per line, each followed by its comment."""
    if not items:
        return f"{key} = []\n"
    lines = [f"{key} = ["]
    for item in items:
        note = (comments or {}).get(item)
        lines.append(f"  {string(item)}," + (f"  # {' '.join(note.split())}" if note else ""))
    lines.append("]")
    return "\n".join(lines) + "\n"
