"""``policy check``: warnings about the risky entries of a valid policy.

The policy engine already refuses what can never be allowed (the built-in
deny list, bad names).  This looks at what a policy *may* allow but should
think twice about:

* module wildcards (``pkg.mod:*``): every public class or function defined
  there, including ones added by a later version of the package;
* entries next to the deny list: a wildcard over a module that holds denied
  names, a module whose submodules are denied, a name that reads like a
  code-execution, import or file primitive;
* pure-Python classes with their own ``__setstate__`` (runs with whatever
  state the sender writes) or ``__reduce__``/``__reduce_ex__``;
* callables known to amplify (allocate far more than the bytes asking for
  it) that have no argument guard in :mod:`safepickle.policy.guards`;
* the loudly named overrides of the deny list, and persistent ids.

Checking classes needs their modules imported; ``import_modules=False``
skips those checks (for policies naming modules that are not installed, or
that have import-time side effects).
"""

from __future__ import annotations

import importlib
import types
from dataclasses import dataclass
from typing import Any

__all__ = ["Finding", "check_policy", "AMPLIFIERS", "RISKY_NAMES"]

# Callables whose output can be far larger than the arguments that ask for it.
AMPLIFIERS = frozenset({
    "builtins:bytearray", "builtins:bytes", "builtins:str", "builtins:list", "builtins:tuple", "builtins:set",
    "builtins:frozenset", "builtins:dict", "builtins:pow", "builtins:range", "builtins:int",
    "collections:deque", "collections:Counter", "collections:OrderedDict", "collections:defaultdict",
    "math:factorial", "math:comb", "math:perm", "math:prod", "math:pow",
    "numpy:zeros", "numpy:ones", "numpy:empty", "numpy:full", "numpy:arange", "numpy:linspace",
    "numpy:repeat", "numpy:tile", "numpy:broadcast_to", "numpy:identity", "numpy:eye", "numpy:ndarray",
    "numpy:array", "numpy:frombuffer", "numpy._core.multiarray:_reconstruct", "numpy._core.multiarray:scalar",
    "numpy._core.numeric:_frombuffer", "numpy.ma.core:_mareconstruct", "numpy:dtype", "numpy:power",
    "decimal:Decimal", "fractions:Fraction",
})

# Final name parts that read like primitives the deny list is about.
RISKY_NAMES = frozenset({
    "system", "popen", "spawn", "fork", "exec", "execfile", "eval", "compile", "run", "call", "check_call",
    "check_output", "load", "loads", "open", "read", "write", "remove", "unlink", "rmtree", "import_module",
    "__import__", "getattr", "setattr", "delattr", "import_string", "locate", "resolve_name", "start",
    "connect", "urlopen", "request", "kill", "shell", "execute", "apply", "invoke",
})


@dataclass(frozen=True, slots=True)
class Finding:
    """One warning: ``field`` locates the entry in the file (``allow.3``)."""

    field: str
    entry: str
    message: str

    def line(self) -> str:
        return f"{self.field} {self.entry!r}: {self.message}"


def _deny_entries() -> list[str]:
    from ..policy import denylist

    return [e for _doc, entries in denylist.CATEGORIES.values() for e in entries]


def check_policy(policy: Any, *, import_modules: bool = True) -> list[Finding]:
    """The warnings on ``policy``'s own entries (not those of what it
    extends: the built-in policies are checked here, by their tests)."""
    from ..policy.guards import CALL_GUARDS
    from ..policy.names import canonical_module

    findings: list[Finding] = []
    denied = _deny_entries()
    for i, entry in enumerate(policy.allow):
        field = f"allow.{i}"
        module, _, qualname = entry.partition(":")
        module = canonical_module(module)
        canonical = f"{module}:{qualname}"
        if qualname == "*":
            findings.append(Finding(field, entry, "module wildcard: admits every public class and function defined "
                                    f"in {module}, including ones a later version adds; list the names you need"))
        findings.extend(_near_deny_list(field, entry, module, qualname, denied))
        if canonical in AMPLIFIERS and canonical not in CALL_GUARDS:
            findings.append(Finding(field, entry, "callable known to amplify (it can allocate far more than the bytes "
                                    "that ask for it) and safepickle has no argument guard for it"))
        elif qualname == "*":
            covered = _wildcard_amplifiers(policy, module, CALL_GUARDS)
            if covered:
                findings.append(Finding(field, entry, "admits callables known to amplify (they can allocate far more "
                                        "than the bytes that ask for it) that safepickle has no argument guard for: "
                                        + ", ".join(covered)))
        if import_modules:
            findings.extend(_class_checks(field, entry, module, qualname))
    for i, entry in enumerate(policy.unsafe_override_denylist):
        findings.append(Finding(f"unsafe_override_denylist.{i}", entry, "UNSAFE: admits an entry of the built-in deny "
                                "list; a stream can use it to run code, touch files or import modules"))
    if policy.persistent_ids:
        findings.append(Finding("persistent_ids", "true", "persistent ids are enabled: every id a stream writes "
                                "reaches your persistent_load, which must treat it as hostile input"))
    return findings


def _wildcard_amplifiers(policy: Any, module: str, guards: Any) -> list[str]:
    """The unguarded amplifiers of ``module`` that ``policy`` admits (its
    static verdict: a wildcard entry is what admits them)."""
    runtime = policy.runtime()
    out = []
    for entry in sorted(AMPLIFIERS):
        mod, _, name = entry.partition(":")
        if mod == module and "." not in name and entry not in guards and runtime.check(mod, name, 4, True).allowed:
            out.append(entry)
    return out


def _near_deny_list(field: str, entry: str, module: str, qualname: str, denied: list[str]) -> list[Finding]:
    out = []
    same_module = [d for d in denied if ":" in d and d.split(":")[0] == module]
    sub_modules = [d for d in denied if ":" not in d and d.startswith(module + ".")]
    if qualname == "*" and same_module:
        out.append(Finding(field, entry, f"wildcard over a module that holds deny-listed names "
                           f"({', '.join(sorted(same_module)[:5])}); the deny list still refuses them, but the "
                           "module is one a stream can reach dangerous code from"))
    elif qualname != "*" and any(qualname.startswith(d.split(":")[1] + ".") for d in same_module):
        out.append(Finding(field, entry, "is inside a deny-listed object"))
    if sub_modules:
        out.append(Finding(field, entry, f"{module} has deny-listed submodules ({', '.join(sorted(sub_modules)[:5])})"))
    last = qualname.rsplit(".", 1)[-1].lower()
    if last in RISKY_NAMES:
        out.append(Finding(field, entry, f"the name {last!r} reads like a code-execution, import, file or network "
                           "primitive; make sure it is none"))
    return out


def _class_checks(field: str, entry: str, module: str, qualname: str) -> list[Finding]:
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # the user's module may fail in any way; report it, do not crash
        return [Finding(field, entry, f"cannot import {module} to check it: {type(e).__name__}: {e}")]
    if qualname == "*":
        objs = [(f"{module}:{name}", obj) for name, obj in sorted(vars(mod).items())
                if not name.startswith("_") and isinstance(obj, type) and getattr(obj, "__module__", None) == module]
    else:
        obj: Any = mod
        for part in qualname.split("."):
            obj = getattr(obj, part, None) if isinstance(obj, (type, types.ModuleType)) else None
        if obj is None:
            return [Finding(field, entry, f"{module} has no {qualname}: the entry admits nothing")]
        objs = [(f"{module}:{qualname}", obj)]
    out = []
    for name, obj in objs:
        if not isinstance(obj, type):
            continue
        for method in ("__setstate__", "__reduce__", "__reduce_ex__"):
            owner = _python_definer(obj, method)
            if owner is not None:
                why = ("runs with whatever state the sender writes (check it validates every field)"
                       if method == "__setstate__" else
                       "decides what its pickles call; a sender can write such calls by hand anyway")
                out.append(Finding(field, entry, f"{name} is a pure-Python class with its own {method} "
                                   f"(from {owner.__module__}.{owner.__qualname__}): it {why}"))
    return out


def _python_definer(cls: type, method: str) -> type | None:
    """The class in ``cls``'s MRO whose own ``method`` is Python code."""
    for klass in cls.__mro__:
        if klass is object:
            return None
        impl = klass.__dict__.get(method)
        if impl is None:
            continue
        if isinstance(impl, (staticmethod, classmethod)):
            impl = impl.__func__
        return klass if isinstance(impl, types.FunctionType) else None
    return None
