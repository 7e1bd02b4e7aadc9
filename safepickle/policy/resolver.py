"""The Runtime: a policy in the form a load uses, and the one place where a
global named by a stream becomes a Python object.

Resolution happens in this order, and stops at the first refusal:

1. **name mapping** - Python 2 names (below protocol 3 with ``fix_imports``,
   exactly like CPython's ``find_class``), then the alias table;
2. **syntax** - ``module:qualname`` made of identifiers, no ``<locals>``, no
   dunder inside a qualname, dotted qualnames only from protocol 4;
3. **built-in deny list** - unless named in ``unsafe_override_denylist``
   *and* in ``allow``;
4. **the policy's deny**, then its **allow** (exact entry, or ``module:*``);
5. **import** of that one module only (``importlib.import_module``);
6. **lookup** of exactly the listed path: each step but the last must be a
   class (no walking through modules or instances);
7. **second gate** on the object itself - a module is refused, and so is an
   object whose own ``__module__:__qualname__``, class, bases or bound
   ``__self__`` are on the deny list, or which *is* a deny-listed object (a
   re-export such as ``mypkg.run = os.system``); ``module:*`` only admits
   public classes and functions defined in that module.

Steps 1-4 never import anything: :meth:`Runtime.check` is what ``scan``
uses.  Results are cached per Runtime; a Runtime is immutable and may be
shared by any number of loads in any number of threads.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from dataclasses import dataclass
from typing import Any

from ..errors import ForbiddenGlobal
from . import denylist, guards
from .guards import exception_text
from .model import Effective, Limits
from .names import (
    WILDCARD,
    canonical_module,
    fallback_module,
    map_py2,
    name_problem,
    needs_exact,
)

__all__ = ["Runtime", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The static decision on one global (no import happened).

    ``module``/``name`` are the names after Python 2 mapping and aliases.
    ``rule`` is one of ``allow``, ``allow-wildcard``, ``not-allowed``,
    ``deny``, ``denylist:<category>``, ``bad-name``, ``dotted-needs-proto-4``.
    """

    module: str
    name: str
    allowed: bool
    rule: str
    message: str

    @property
    def qualified(self) -> str:
        return f"{self.module}:{self.name}"


#: Kinds of object that are code or program structure, never data: the policy
#: never admits instances of them for BUILD or item assignment, and the VM
#: never mutates them whatever the policy says.
CODE_KINDS = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.BuiltinMethodType,
    types.CodeType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
    types.FrameType,
    types.TracebackType,
    types.GeneratorType,
    types.CoroutineType,
    types.CellType,
    staticmethod,
    classmethod,
    property,
)

# Builtin types a policy allows as constructors (or defaultdict factories);
# they only vouch for exactly that type in admits(), never for subclasses.
_EXACT_ONLY = frozenset(
    {int, float, complex, str, bytes, bool, tuple, list, dict, set, frozenset, bytearray, slice, range}
)


def _show(text: str) -> str:
    """A name from the stream, quoted and bounded for messages."""
    return repr(text) if len(text) <= 200 else repr(text[:200]) + "..."


def _own_location(obj: object) -> tuple[str, str] | None:
    try:
        module = obj.__module__  # type: ignore[attr-defined]
        qualname = obj.__qualname__  # type: ignore[attr-defined]
    except Exception:
        return None
    if type(module) is not str or type(qualname) is not str:
        return None
    return canonical_module(module), qualname


def _is_public_definition(obj: object) -> bool:
    return isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType))


class Runtime:
    """An effective policy, ready for loads.  See module docstring.

    Public attributes: ``name``, ``limits``, ``persistent_ids``,
    ``extensions`` (read-only mapping code -> ``module:qualname``).
    """

    __slots__ = (
        "name",
        "limits",
        "persistent_ids",
        "extensions",
        "_allow",
        "_wild",
        "_deny",
        "_deny_wild",
        "_overrides",
        "_lock",
        "_resolved",
        "_handed",
        "_guards",
        "_admits",
        "_deny_ids",
        "_deny_scanned",
    )

    def __init__(self, effective: Effective) -> None:
        self.name: str = effective.name
        self.limits: Limits = effective.limits
        self.persistent_ids: bool = effective.persistent_ids
        self.extensions = effective.extensions
        self._allow = frozenset(e for e in effective.allow if not e.endswith(":" + WILDCARD))
        self._wild = frozenset(e[: -2] for e in effective.allow if e.endswith(":" + WILDCARD))
        self._deny = frozenset(e for e in effective.deny if not e.endswith(":" + WILDCARD))
        self._deny_wild = frozenset(e[: -2] for e in effective.deny if e.endswith(":" + WILDCARD))
        self._overrides = frozenset(effective.overrides & effective.allow)
        self._lock = threading.Lock()
        self._resolved: dict[tuple[str, str, int, bool], object] = {}
        self._handed: dict[int, object] = {}
        self._guards: dict[int, guards.CallGuard | None] = {}
        # Types met by admits(); only types of objects that allowed callables
        # returned reach it, so the table stays small.
        self._admits: dict[type, bool] = {}
        self._deny_ids: dict[int, tuple[object, str]] = {}
        self._deny_scanned: set[str] = set()

    def __repr__(self) -> str:
        return f"<Runtime of policy {self.name!r}>"

    # -- static verdicts ------------------------------------------------------

    def check(self, module: str, name: str, proto: int, fix_imports: bool) -> Verdict:
        """The verdict on ``module:name`` as a stream at protocol ``proto``
        names it.  Imports nothing, touches no attribute."""
        if type(module) is not str or type(name) is not str:
            return Verdict(str(module), str(name), False, "bad-name", "global names must be text")
        module, name = map_py2(module, name, proto, fix_imports)
        module = canonical_module(module)
        qualified = f"{module}:{name}"
        problem = name_problem(module, name)
        if problem:
            return Verdict(module, name, False, "bad-name", f"global {_show(qualified)} is malformed: {problem}")
        if "." in name and proto < 4:
            return Verdict(
                module,
                name,
                False,
                "dotted-needs-proto-4",
                f"global {_show(qualified)}: a dotted name needs protocol 4 or later (this stream is "
                f"protocol {proto}); pickle would fail here too",
            )
        category = denylist.match(module, name)
        if category is not None and qualified not in self._overrides:
            return Verdict(
                module,
                name,
                False,
                f"denylist:{category}",
                f"global {_show(qualified)} is on safepickle's built-in deny list ({category}: "
                f"{denylist.describe(category)}); it cannot be allowed by a policy",
            )
        if self._denied_by_policy(module, name):
            return Verdict(module, name, False, "deny", f"global {_show(qualified)} is denied by policy {self.name!r}")
        if qualified in self._allow:
            return Verdict(module, name, True, "allow", f"global {_show(qualified)} is allowed by policy {self.name!r}")
        if module in self._wild and "." not in name and not name.startswith("_") and not needs_exact(module, name):
            message = f"global {_show(qualified)} is allowed by {module}:* in {self.name!r}"
            return Verdict(module, name, True, "allow-wildcard", message)
        if needs_exact(module, name):
            message = (
                f"global {_show(qualified)} is not allowed by policy {self.name!r}; names with dunder parts are "
                "only admitted by an exact allow entry, and are rarely data"
            )
        else:
            message = self._not_allowed_message(qualified)
        return Verdict(module, name, False, "not-allowed", message)

    def _denied_by_policy(self, module: str, name: str) -> bool:
        if module in self._deny_wild:
            return True
        parts = name.split(".")
        return any(f"{module}:{'.'.join(parts[: i + 1])}" in self._deny for i in range(len(parts)))

    def _not_allowed_message(self, qualified: str) -> str:
        hint = f'add "{qualified}" to allow'
        providers = [n for n in _builtin_providers(qualified) if n != self.name]
        if providers:
            hint += " or extend " + " or ".join(f'"{n}"' for n in providers)
        return f"global {_show(qualified)} is not allowed by policy {self.name!r}; if this is legitimate data, {hint}"

    # -- resolution -----------------------------------------------------------

    def resolve(self, module: str, name: str, proto: int, fix_imports: bool) -> object:
        """The object for ``module:name``, or ForbiddenGlobal.  See module docstring."""
        key = (module, name, proto, bool(fix_imports))
        try:
            return self._resolved[key]
        except (KeyError, TypeError):
            pass
        verdict = self.check(module, name, proto, fix_imports)
        if not verdict.allowed:
            raise ForbiddenGlobal(verdict.module, verdict.name, verdict.message, policy=self.name, rule=verdict.rule)
        obj = self._lookup(verdict)
        try:
            self._second_gate(obj, verdict)
        except ForbiddenGlobal:
            raise
        except Exception as exc:  # an object that cannot even be inspected is refused
            raise self._refuse(verdict, "unresolvable", f"could not be checked: {exception_text(exc)}") from exc
        with self._lock:
            self._handed.setdefault(id(obj), obj)
            if id(obj) not in self._guards:
                self._guards[id(obj)] = self._find_guard(obj, verdict)
            self._resolved[key] = obj
        return obj

    def _refuse(self, verdict: Verdict, rule: str, why: str) -> ForbiddenGlobal:
        return ForbiddenGlobal(
            verdict.module, verdict.name, f"global {_show(verdict.qualified)} {why}", policy=self.name, rule=rule
        )

    def _import(self, verdict: Verdict) -> types.ModuleType:
        module = verdict.module
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as exc:
            old = fallback_module(module)
            missing = exc.name or ""
            if old is not None and (module == missing or module.startswith(missing + ".")):
                try:
                    return importlib.import_module(old)
                except Exception as inner:
                    why = exception_text(inner)
                    raise self._refuse(verdict, "unresolvable", f"cannot be imported: {why}") from inner
            raise self._refuse(verdict, "unresolvable", f"cannot be imported: {exception_text(exc)}") from exc
        except Exception as exc:  # the module itself failed while importing
            raise self._refuse(verdict, "unresolvable", f"cannot be imported: {exception_text(exc)}") from exc

    def _lookup(self, verdict: Verdict) -> object:
        mod = self._import(verdict)
        parts = verdict.name.split(".")
        try:
            namespace = vars(mod)
            # Module __dict__ first; getattr only for lazy (PEP 562) names.
            obj = namespace[parts[0]] if parts[0] in namespace else getattr(mod, parts[0])
            for part in parts[1:]:
                if not isinstance(obj, type):
                    raise self._refuse(
                        verdict,
                        "attribute-walk",
                        f"walks through a {type(obj).__name__}; dotted names may only step through classes",
                    )
                obj = getattr(obj, part)
        except ForbiddenGlobal:
            raise
        except Exception as exc:
            raise self._refuse(verdict, "unresolvable", f"cannot be found: {exception_text(exc)}") from exc
        if verdict.rule == "allow-wildcard":
            location = _own_location(obj)
            if not _is_public_definition(obj) or location is None or location[0] not in (
                verdict.module,
                canonical_module(mod.__name__),
            ):
                raise self._refuse(
                    verdict,
                    "not-allowed",
                    f"is not a class or function defined in {verdict.module} (module:* admits only those); "
                    f'list it exactly if it is data: add "{verdict.qualified}" to allow',
                )
        return obj

    def _second_gate(self, obj: object, verdict: Verdict) -> None:
        if isinstance(obj, types.ModuleType):
            raise self._refuse(verdict, "module", "is a module; modules are never handed to a load")
        reason = self._deny_reason(obj, depth=0)
        if reason is not None:
            category, what = reason
            if what not in self._overrides:
                raise self._refuse(
                    verdict,
                    f"denylist:{category}",
                    f"resolves to {what}, which is on safepickle's built-in deny list "
                    f"({category}: {denylist.describe(category)})",
                )

    def _deny_reason(self, obj: object, depth: int) -> tuple[str, str] | None:
        """(category, module:qualname) when ``obj`` is, or is made of, a
        deny-listed object; None otherwise.  Never imports."""
        if depth > 3:
            return None
        candidates: list[tuple[str, str]] = []
        own = _own_location(obj)
        if own is not None:
            candidates.append(own)
        if isinstance(obj, type):
            candidates.extend(loc for loc in map(_own_location, obj.__mro__[1:]) if loc is not None)
        elif not isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
            # An instance: its class and the class's bases (functools.partial,
            # subprocess.Popen, pathlib.Path instances...).
            candidates.extend(loc for loc in map(_own_location, type(obj).__mro__) if loc is not None)
        for module, qualname in candidates:
            category = denylist.match(module, qualname)
            if category is not None:
                return category, f"{module}:{qualname}"
        hit = self._deny_identity(obj)
        if hit is not None:
            return hit
        bound = None
        if isinstance(obj, types.BuiltinFunctionType | types.MethodType):
            bound = getattr(obj, "__self__", None)
        if bound is not None:
            if isinstance(bound, types.ModuleType):
                # A builtin function of an extension module: judge it by the
                # module that really holds it and its own name.
                module = canonical_module(str(getattr(bound, "__name__", "")))
                fname = getattr(obj, "__name__", None)
                if type(fname) is str and module:
                    category = denylist.match(module, fname)
                    if category is not None:
                        return category, f"{module}:{fname}"
                return None
            return self._deny_reason(bound, depth + 1)
        func = getattr(obj, "__func__", None) if isinstance(obj, types.MethodType) else None
        if func is not None:
            return self._deny_reason(func, depth + 1)
        return None

    def _deny_identity(self, obj: object) -> tuple[str, str] | None:
        """Is ``obj`` one of the objects the deny list names (looked up in
        modules that are already imported; nothing is imported here)?"""
        self._scan_denied_modules()
        hit = self._deny_ids.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]  # type: ignore[return-value]
        return None

    def _scan_denied_modules(self) -> None:
        loaded = [m for m in list(sys.modules) if m not in self._deny_scanned]
        if not loaded:
            return
        with self._lock:
            for modname in loaded:
                self._deny_scanned.add(modname)
                module = sys.modules.get(modname)
                if not isinstance(module, types.ModuleType):
                    continue
                canonical = canonical_module(modname)
                names = denylist.exact_names_in(canonical)
                whole = denylist.is_denied_module(canonical)
                if not names and not whole:
                    continue
                namespace = getattr(module, "__dict__", {})
                for qualname in names:
                    target = _walk_static(namespace, qualname)
                    if target is not None and f"{canonical}:{qualname}" not in denylist.EXEMPT:
                        category = denylist.match(canonical, qualname)
                        if category is not None:
                            self._deny_ids[id(target)] = (target, (category, f"{canonical}:{qualname}"))
                if whole:
                    category = denylist.match(canonical, "*") or "process"
                    for attr, value in list(namespace.items()):
                        if f"{canonical}:{attr}" in denylist.EXEMPT or not callable(value):
                            continue
                        if isinstance(value, types.ModuleType) or _own_location(value) is not None:
                            # Objects with a location are judged by it (a
                            # re-export of a harmless class stays harmless).
                            continue
                        self._deny_ids.setdefault(id(value), (value, (category, f"{canonical}:{attr}")))

    # -- calls, BUILD and containers ------------------------------------------

    def is_callable(self, obj: object) -> bool:
        """True only for objects this Runtime's resolve() handed out."""
        return self._handed.get(id(obj)) is obj

    def guard(self, obj: object) -> guards.CallGuard | None:
        """The argument guard for calling ``obj`` (see :mod:`.guards`)."""
        if self._handed.get(id(obj)) is not obj:
            return None
        return self._guards.get(id(obj))

    def _find_guard(self, obj: object, verdict: Verdict) -> guards.CallGuard | None:
        keys = [verdict.qualified]
        own = _own_location(obj)
        if own is not None:
            keys.append(f"{own[0]}:{own[1]}")
        for key in keys:
            entry = guards.CALL_GUARDS.get(key)
            if entry is not None:
                return guards.hardened_call(entry[0](self))
        if isinstance(obj, type):
            # A subclass inherits the guard of the nearest guarded base whose
            # checked method (__new__/__init__) it does not override.
            for base in obj.__mro__[1:]:
                loc = _own_location(base)
                entry = guards.CALL_GUARDS.get(f"{loc[0]}:{loc[1]}") if loc else None
                if entry is None or entry[1] is None:
                    continue
                definer = next((c for c in obj.__mro__ if entry[1] in c.__dict__), None)
                if definer is base:
                    return guards.hardened_call(entry[0](self))
        return None

    def state_guard(self, obj: object) -> guards.StateGuard | None:
        """The guard for BUILD on ``obj`` (NumPy arrays, masked arrays and
        dtypes), or None when its type needs none."""
        return guards.state_guard_for(obj)

    def admits(self, obj: object) -> bool:
        """May the VM apply BUILD / APPEND(S) / SETITEM(S) / ADDITEMS to
        ``obj`` through its type's own methods?

        False for classes, modules, functions, methods, descriptors and code.
        True when a class in ``type(obj).__mro__`` (other than ``object``) is
        allowed by this policy under its own ``module:qualname`` and resolves
        to that very class.  An allowed builtin type (``builtins:list``,
        ``builtins:float``...) only vouches for exactly that type, never for
        its subclasses.
        """
        cls = type(obj)
        verdict = self._admits.get(cls)
        if verdict is None:
            # Everything below depends on the type only, so one answer per type.
            verdict = not issubclass(cls, CODE_KINDS) and self._admits_type(cls)
            with self._lock:
                self._admits[cls] = verdict
        return verdict

    def _admits_type(self, cls: type) -> bool:
        for base in cls.__mro__:
            if base is object:
                continue
            loc = _own_location(base)
            if loc is None:
                continue
            if not self.check(loc[0], loc[1], 5, False).allowed:
                continue
            try:
                resolved = self.resolve(loc[0], loc[1], 5, False)
            except ForbiddenGlobal:
                continue
            if resolved is base:
                return base is cls or base not in _EXACT_ONLY
        return False

    # -- extensions -----------------------------------------------------------

    def resolve_extension(self, code: int) -> tuple[str, str]:
        """(module, name) for an EXT1/EXT2/EXT4 code, from this policy only."""
        target = self.extensions.get(code) if type(code) is int else None
        if target is None:
            raise ForbiddenGlobal(
                "<extension>",
                str(code),
                f"extension code {code} is not in policy {self.name!r}'s extensions table",
                policy=self.name,
                rule="extension",
            )
        module, name = target.split(":")
        return module, name


def _walk_static(namespace: dict[str, Any], qualname: str) -> object | None:
    parts = qualname.split(".")
    obj = namespace.get(parts[0])
    for part in parts[1:]:
        if obj is None or not isinstance(obj, type):
            return None
        obj = obj.__dict__.get(part)
    return obj


_providers_lock = threading.Lock()
_providers: dict[str, frozenset[str]] | None = None


def _builtin_providers(qualified: str) -> list[str]:
    """Built-in policies whose allow list names ``qualified`` exactly."""
    global _providers
    if _providers is None:
        from .. import policies
        from .files import load_policy

        table: dict[str, frozenset[str]] = {}
        for name in policies.names():
            try:
                table[name] = load_policy(name).effective().allow
            except Exception:  # a broken built-in must not hide the real refusal
                continue
        with _providers_lock:
            _providers = table
    return sorted(n for n, allow in _providers.items() if qualified in allow)

