"""Global names: syntax, Python 2 mapping and the module alias table.

A global is written ``module:qualname``.  ``module`` is one or more dotted
identifiers; ``qualname`` is one or more dotted identifiers, or ``*`` in a
policy entry (every public class or function defined in that module).

The rules, enforced both on policy entries and on the names a stream sends:

* no empty part, every part a Python identifier (``<locals>`` is never one);
* a *dunder* part (``__x__``) is only admitted as the last part of the
  qualname, or in the module (``__main__``), and then only where the entry
  is listed exactly in ``allow`` (never reached through ``module:*``);
* a dunder anywhere else in a qualname (``Foo.__dict__.x``) is refused.

Renames are applied in the same order as CPython's ``Unpickler.find_class``:
first the Python 2 tables of :mod:`_compat_pickle` (only below protocol 3 and
with ``fix_imports``), then our alias table (:data:`ALIASES`, prefix match on
the module), so that a policy always names the canonical module.
"""

from __future__ import annotations

import _compat_pickle

__all__ = [
    "ALIASES",
    "WILDCARD",
    "canonical_module",
    "entry_problem",
    "fallback_module",
    "is_dunder",
    "map_py2",
    "name_problem",
    "split_entry",
]

WILDCARD = "*"

#: Module renames, matched on whole dotted prefixes: ``old prefix -> canonical``.
#: NumPy 2 moved ``numpy.core`` to ``numpy._core`` (the old name still imports,
#: with a DeprecationWarning); NumPy 1.x pickles name the old one.
ALIASES: dict[str, str] = {
    "numpy.core": "numpy._core",
}

_REVERSE_ALIASES: dict[str, str] = {new: old for old, new in ALIASES.items()}


def is_dunder(part: str) -> bool:
    """``__x__`` with at least one character between the underscores."""
    return len(part) > 4 and part.startswith("__") and part.endswith("__")


def _dotted_problem(text: str, what: str) -> str | None:
    if not isinstance(text, str) or not text:
        return f"empty {what}"
    for part in text.split("."):
        if not part:
            return f"empty part in {what} {text!r}"
        if part == "<locals>":
            return f"'<locals>' in {what} {text!r}"
        if not part.isidentifier():
            return f"{part!r} in {what} {text!r} is not an identifier"
    return None


def name_problem(module: str, qualname: str) -> str | None:
    """Why ``module:qualname`` is not a well-formed global, or None.

    Dunder parts in the module or as the *last* qualname part are well formed
    here (they still need an exact ``allow`` entry); a dunder before the last
    qualname part is not (that is attribute walking into an object's guts).
    """
    problem = _dotted_problem(module, "module")
    if problem:
        return problem
    problem = _dotted_problem(qualname, "qualname")
    if problem:
        return problem
    parts = qualname.split(".")
    for part in parts[:-1]:
        if is_dunder(part):
            return f"dunder part {part!r} inside qualname {qualname!r}"
    return None


def needs_exact(module: str, qualname: str) -> bool:
    """True when the name has a dunder part, so only an exact entry admits it."""
    return any(is_dunder(p) for p in module.split(".")) or is_dunder(qualname.rsplit(".", 1)[-1])


def split_entry(entry: str) -> tuple[str, str]:
    """Split a policy entry ``module:qualname`` (or ``module:*``); raises
    ValueError with a message that says what is wrong."""
    if not isinstance(entry, str):
        raise ValueError(f"{entry!r} is not a string")
    if entry.count(":") != 1:
        raise ValueError(f"{entry!r} is not module:qualname")
    module, qualname = entry.split(":")
    return module, qualname


def entry_problem(entry: str, *, wildcard: bool = True) -> str | None:
    """Why a policy entry is malformed, or None."""
    try:
        module, qualname = split_entry(entry)
    except ValueError as exc:
        return str(exc)
    if qualname == WILDCARD:
        if not wildcard:
            return f"{entry!r}: a wildcard is not accepted here, name the global exactly"
        problem = _dotted_problem(module, "module")
        if problem:
            return f"{entry!r}: {problem}"
        if any(is_dunder(p) for p in module.split(".")):
            return f"{entry!r}: a dunder module cannot be allowed by wildcard"
        return None
    problem = name_problem(module, qualname)
    return f"{entry!r}: {problem}" if problem else None


def map_py2(module: str, name: str, proto: int, fix_imports: bool) -> tuple[str, str]:
    """CPython's Python 2 renames, exactly as ``Unpickler.find_class`` does."""
    if proto < 3 and fix_imports:
        key = (module, name)
        if key in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[key]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def _rename(module: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if module == old:
            return new
        if module.startswith(old) and module[len(old)] == ".":
            return new + module[len(old):]
    return None


def canonical_module(module: str) -> str:
    """Apply the alias table (prefix match on dotted parts)."""
    return _rename(module, ALIASES) or module


def fallback_module(canonical: str) -> str | None:
    """The pre-rename name of a canonical module, to import when the canonical
    one does not exist (``numpy._core.x`` under NumPy 1.x -> ``numpy.core.x``)."""
    return _rename(canonical, _REVERSE_ALIASES)
