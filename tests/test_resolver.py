"""The Runtime: static verdicts, safe resolution, handed-over objects,
guards lookup, ``admits`` and extension codes."""

from __future__ import annotations

import os
import pickle
import sys
import textwrap
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from safepickle.errors import ForbiddenGlobal
from safepickle.policy import Policy, Runtime, load_policy

PACKAGE = '''
import functools
import os
import pathlib
from collections import OrderedDict  # a harmless re-export

run = os.system                      # a re-export of a deny-listed function
sub = os                             # a module
part = functools.partial(len)        # an instance of a deny-listed class
CONFIG = {"a": 1}                    # an instance defined here
_private = 1
ANSWER = 42

def make():
    return Point()

class Point:
    class Inner:
        pass

    def method(self):
        return 1

class Ba(bytearray):
    pass

class Ba2(bytearray):
    def __init__(self, n):
        super().__init__(n)

class Tup(tuple):
    def __new__(cls, a, b):
        return super().__new__(cls, (a, b))

class MyList(list):
    pass

class MyPosixPath(pathlib.PurePosixPath):
    pass

class Sneaky(pathlib.PosixPath):
    pass

def __getattr__(name):
    if name == "lazy":
        return "lazy value"
    raise AttributeError(name)
'''

CANARY = '''
import os
with open(os.environ["SP_CANARY_FILE"], "a") as f:
    f.write(__name__ + "\\n")

class Thing:
    pass
'''


@pytest.fixture()
def pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """A fresh importable package with a canary module that records imports."""
    name = f"sp_respkg_{uuid.uuid4().hex[:10]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (root / "canary.py").write_text(textwrap.dedent(CANARY))
    marker = tmp_path / "imports.txt"
    marker.write_text("")
    monkeypatch.setenv("SP_CANARY_FILE", str(marker))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield SimpleNamespace(name=name, canary=f"{name}.canary", marker=marker)
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]


def _runtime(*allow: str, **extra: object) -> Runtime:
    return Policy.model_validate({"name": "test", "allow": list(allow), **extra}).runtime()


# -- check(): static, never imports ------------------------------------------


def test_check_never_imports(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.canary}:Thing", f"{pkg.canary}:*")
    for proto in range(6):
        verdicts = [
            rt.check(pkg.canary, "Thing", proto, True),
            rt.check(pkg.canary, "Other", proto, True),
            rt.check(pkg.canary, "Nope.Deeper", proto, True),
        ]
        assert verdicts[0].allowed and verdicts[0].rule == "allow"
        assert verdicts[1].allowed and verdicts[1].rule == "allow-wildcard"
    assert pkg.canary not in sys.modules
    assert pkg.marker.read_text() == ""


def test_refused_global_never_imports(pkg: SimpleNamespace) -> None:
    rt = _runtime("collections:OrderedDict")
    with pytest.raises(ForbiddenGlobal) as exc:
        rt.resolve(pkg.canary, "Thing", 4, True)
    assert exc.value.rule == "not-allowed"
    assert pkg.canary not in sys.modules
    assert pkg.marker.read_text() == ""


def test_allowed_global_imports_only_its_module(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.canary}:Thing")
    obj = rt.resolve(pkg.canary, "Thing", 4, True)
    assert obj is sys.modules[pkg.canary].Thing
    assert pkg.marker.read_text() == f"{pkg.canary}\n"
    # cached: no second import, same object
    assert rt.resolve(pkg.canary, "Thing", 4, True) is obj
    assert pkg.marker.read_text() == f"{pkg.canary}\n"


@pytest.mark.parametrize(
    ("module", "name", "proto", "rule"),
    [
        ("builtins", "set", 4, "allow"),
        ("__builtin__", "set", 2, "allow"),  # Python 2 name mapped below protocol 3
        ("__builtin__", "set", 3, "not-allowed"),  # no mapping from protocol 3
        ("copy_reg", "_reconstructor", 0, "allow"),
        ("builtins", "eval", 4, "denylist:eval"),
        ("__builtin__", "eval", 2, "denylist:eval"),
        ("builtins", "getattr", 4, "denylist:reflection"),
        ("os", "system", 2, "denylist:process"),
        ("posix", "system", 4, "denylist:process"),
        ("subprocess", "Popen", 4, "denylist:process"),
        ("subprocess", "Popen.__init__", 4, "denylist:process"),
        ("cPickle", "loads", 2, "denylist:loader"),  # mapped to pickle
        ("pickle", "loads", 4, "denylist:loader"),
        ("numpy", "load", 4, "denylist:loader"),
        ("torch.serialization", "load", 4, "denylist:loader"),
        ("functools", "partial", 4, "denylist:reflection"),
        ("operator", "attrgetter", 4, "denylist:reflection"),
        ("pkgutil", "resolve_name", 4, "denylist:import"),
        ("pydoc", "locate", 4, "denylist:import"),
        ("importlib", "import_module", 4, "denylist:import"),
        ("safepickle", "loads", 4, "denylist:safepickle"),
        ("pathlib", "Path", 4, "denylist:files"),
        ("pathlib", "PurePosixPath", 4, "not-allowed"),  # exempt from the deny list, not allowed here
        ("socket", "socket", 4, "denylist:network"),
        ("ctypes", "CDLL", 4, "denylist:native"),
        ("builtins", "map", 4, "denylist:indirect-call"),
        ("collections", "OrderedDict", 4, "not-allowed"),
        ("os", "system\x00", 4, "bad-name"),
        ("os..path", "join", 4, "bad-name"),
        ("m", "f.<locals>.g", 4, "bad-name"),
        ("m", "A.__dict__.x", 4, "bad-name"),
        ("", "x", 4, "bad-name"),
        ("m", "", 4, "bad-name"),
        ("collections", "OrderedDict.fromkeys", 3, "dotted-needs-proto-4"),
    ],
)
def test_verdict_rules(module: str, name: str, proto: int, rule: str) -> None:
    verdict = load_policy("data-only").runtime().check(module, name, proto, True)
    assert verdict.rule == rule, verdict
    assert verdict.allowed is rule.startswith("allow")


def test_verdict_carries_mapped_names() -> None:
    rt = load_policy("stdlib").runtime()
    v = rt.check("__builtin__", "xrange", 2, True)
    assert (v.module, v.name, v.allowed) == ("builtins", "range", True)
    v = rt.check("__builtin__", "xrange", 2, False)  # fix_imports=False: no mapping
    assert (v.module, v.name, v.allowed) == ("__builtin__", "xrange", False)
    v = rt.check("numpy.core.multiarray", "_reconstruct", 2, True)
    assert v.module == "numpy._core.multiarray"  # alias table


def test_messages_tell_how_to_fix_the_policy() -> None:
    v = load_policy("data-only").runtime().check("collections", "OrderedDict", 4, True)
    assert 'add "collections:OrderedDict" to allow' in v.message
    assert 'extend "stdlib"' in v.message
    assert "'data-only'" in v.message
    v = load_policy("data-only").runtime().check("numpy", "ndarray", 4, True)
    assert 'extend "numpy-only"' in v.message
    v = load_policy("data-only").runtime().check("mypkg", "Thing", 4, True)
    assert 'add "mypkg:Thing" to allow' in v.message and "extend" not in v.message
    v = load_policy("numpy-only").runtime().check("os", "system", 4, True)
    assert "cannot be allowed" in v.message


def test_forbidden_global_error_carries_fields() -> None:
    rt = load_policy("data-only").runtime()
    with pytest.raises(pickle.UnpicklingError) as exc:
        rt.resolve("os", "system", 4, True)
    err = exc.value
    assert isinstance(err, ForbiddenGlobal)
    assert (err.module, err.name, err.policy, err.rule) == ("os", "system", "data-only", "denylist:process")
    assert err.offset is None and err.opcode is None  # the VM fills them
    assert "os:system" in str(err)


# -- resolution: exact paths and the second gate ------------------------------


def test_reexport_of_denied_function_is_refused(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.name}:run")
    assert rt.check(pkg.name, "run", 4, True).allowed  # statically it looks fine
    with pytest.raises(ForbiddenGlobal) as exc:
        rt.resolve(pkg.name, "run", 4, True)
    assert exc.value.rule == "denylist:process"
    assert "posix:system" in str(exc.value) or "os:system" in str(exc.value)


def test_instances_of_denied_classes_are_refused(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.name}:part")
    with pytest.raises(ForbiddenGlobal) as exc:
        rt.resolve(pkg.name, "part", 4, True)
    assert exc.value.rule == "denylist:reflection"


def test_subclasses_of_denied_classes_are_refused(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.name}:Sneaky", f"{pkg.name}:MyPosixPath")
    with pytest.raises(ForbiddenGlobal) as exc:
        rt.resolve(pkg.name, "Sneaky", 4, True)
    assert exc.value.rule == "denylist:files"
    assert rt.resolve(pkg.name, "MyPosixPath", 4, True).__name__ == "MyPosixPath"


def test_modules_are_never_handed_over(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.name}:sub")
    with pytest.raises(ForbiddenGlobal) as exc:
        rt.resolve(pkg.name, "sub", 4, True)
    assert exc.value.rule == "module"


def test_dotted_path_never_walks_through_a_module(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.name}:sub.getcwd")
    with pytest.raises(ForbiddenGlobal) as exc:
        rt.resolve(pkg.name, "sub.getcwd", 4, True)
    assert exc.value.rule == "attribute-walk"


def test_dotted_path_through_classes(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.name}:Point.Inner", f"{pkg.name}:Point.method")
    mod = __import__(pkg.name)
    assert rt.resolve(pkg.name, "Point.Inner", 4, True) is mod.Point.Inner
    assert rt.resolve(pkg.name, "Point.method", 5, True) is mod.Point.method
    with pytest.raises(ForbiddenGlobal) as exc:
        rt.resolve(pkg.name, "Point.Inner", 3, True)
    assert exc.value.rule == "dotted-needs-proto-4"
    with pytest.raises(ForbiddenGlobal) as exc:  # only the exact dotted name is allowed
        rt.resolve(pkg.name, "Point", 4, True)
    assert exc.value.rule == "not-allowed"


def test_wildcard_admits_only_public_definitions_of_that_module(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.name}:*")
    mod = __import__(pkg.name)
    assert rt.resolve(pkg.name, "Point", 4, True) is mod.Point
    assert rt.resolve(pkg.name, "make", 4, True) is mod.make
    for name, rule in [
        ("OrderedDict", "not-allowed"),  # defined in collections
        ("CONFIG", "not-allowed"),  # an instance
        ("ANSWER", "not-allowed"),
        ("run", "not-allowed"),  # os.system, defined elsewhere
        ("_private", "not-allowed"),  # underscore: never by wildcard
        ("Point.Inner", "not-allowed"),  # dotted: never by wildcard
    ]:
        with pytest.raises(ForbiddenGlobal) as exc:
            rt.resolve(pkg.name, name, 4, True)
        assert exc.value.rule == rule, (name, exc.value)


def test_exact_entries_may_name_values(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.name}:ANSWER", f"{pkg.name}:lazy")
    assert rt.resolve(pkg.name, "ANSWER", 4, True) == 42
    assert rt.resolve(pkg.name, "lazy", 4, True) == "lazy value"  # module __getattr__ (PEP 562)


def test_unresolvable_names_become_forbidden_global(pkg: SimpleNamespace) -> None:
    rt = _runtime(f"{pkg.name}:Missing", "sp_no_such_module_xyz:Thing")
    for module, name in [(pkg.name, "Missing"), ("sp_no_such_module_xyz", "Thing")]:
        with pytest.raises(ForbiddenGlobal) as exc:
            rt.resolve(module, name, 4, True)
        assert exc.value.rule == "unresolvable"


def test_unsafe_override_admits_exactly_that_entry() -> None:
    rt = Policy.model_validate(
        {"name": "unsafe", "allow": ["builtins:getattr"], "unsafe_override_denylist": ["builtins:getattr"]}
    ).runtime()
    assert rt.resolve("builtins", "getattr", 4, True) is getattr
    assert rt.check("builtins", "setattr", 4, True).rule == "denylist:reflection"


def test_policy_deny_wins_over_allow_and_covers_attributes() -> None:
    rt = Policy.model_validate(
        {"name": "p", "allow": ["collections:OrderedDict", "collections:OrderedDict.fromkeys", "collections:*"],
         "deny": ["collections:OrderedDict", "collections:Counter"]}
    ).runtime()
    assert rt.check("collections", "OrderedDict", 4, True).rule == "deny"
    assert rt.check("collections", "OrderedDict.fromkeys", 4, True).rule == "deny"
    assert rt.check("collections", "Counter", 4, True).rule == "deny"
    assert rt.check("collections", "deque", 4, True).rule == "allow-wildcard"


def test_numpy_alias_resolves_without_deprecation_warning() -> None:
    np = pytest.importorskip("numpy")
    rt = load_policy("numpy-only").runtime()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old = rt.resolve("numpy.core.multiarray", "_reconstruct", 2, True)
        new = rt.resolve("numpy._core.multiarray", "_reconstruct", 2, True)
    assert old is new
    assert rt.resolve("numpy", "ndarray", 4, True) is np.ndarray


# -- handed-over objects, guards, admits ----------------------------------------


def test_is_callable_only_for_resolved_objects() -> None:
    # a fresh Runtime: the built-in policies' runtimes are shared by the process
    rt = Policy.model_validate({"name": "fresh", "extends": ["data-only"]}).runtime()
    assert not rt.is_callable(set)
    assert rt.resolve("builtins", "set", 4, True) is set
    assert rt.is_callable(set)
    assert not rt.is_callable(frozenset)  # allowed, but not resolved by this runtime yet
    assert not rt.is_callable(os.system)
    other = Policy.model_validate({"name": "other", "extends": ["data-only"]}).runtime()
    assert not other.is_callable(set)  # per Runtime


def test_guard_lookup_and_subclass_inheritance(pkg: SimpleNamespace) -> None:
    rt = _runtime(
        "builtins:bytearray", "builtins:list", "builtins:tuple",
        f"{pkg.name}:Ba", f"{pkg.name}:Ba2", f"{pkg.name}:Tup", f"{pkg.name}:MyList", f"{pkg.name}:Point",
    )
    for name in ("bytearray", "list", "tuple"):
        obj = rt.resolve("builtins", name, 4, True)
        assert rt.guard(obj) is not None
    limits = rt.limits
    ba = rt.resolve(pkg.name, "Ba", 4, True)
    guard = rt.guard(ba)
    assert guard is not None  # bytearray.__init__ inherited: bytearray(10**12) must be guarded
    from safepickle.errors import GuardViolation

    with pytest.raises(GuardViolation):
        guard((10**12,), None, limits)
    assert rt.guard(rt.resolve(pkg.name, "Ba2", 4, True)) is None  # own __init__: its own business
    assert rt.guard(rt.resolve(pkg.name, "Tup", 4, True)) is None  # own __new__
    assert rt.guard(rt.resolve(pkg.name, "MyList", 4, True)) is not None
    assert rt.guard(rt.resolve(pkg.name, "Point", 4, True)) is None
    assert rt.guard(bytes) is None  # never resolved: no guard, and is_callable is False


def test_admits(pkg: SimpleNamespace) -> None:
    rt = _runtime("builtins:list", "builtins:set", f"{pkg.name}:Point", f"{pkg.name}:make")
    mod = __import__(pkg.name)
    assert rt.admits([1])
    assert rt.admits({1})
    assert not rt.admits({1: 2})  # dict is not allowed here
    assert not rt.admits(mod.MyList())  # builtins:list vouches for list only, not subclasses
    assert rt.admits(mod.Point())
    for never in (mod.Point, mod, mod.make, mod.Point().method, len, os, print, (lambda: 0).__code__, list.append):
        assert not rt.admits(never), never
    assert not rt.admits(object())


def test_admits_numpy_types() -> None:
    np = pytest.importorskip("numpy")
    rt = load_policy("numpy-only").runtime()
    assert rt.admits(np.zeros(2))
    assert rt.admits(np.dtype("f8"))  # Float64DType has numpy.dtype in its MRO
    assert rt.admits(np.ma.masked_array([1]))
    assert not rt.admits(np.float64(1.0))  # scalars are never given state
    assert not load_policy("stdlib").runtime().admits(np.float64(1.0))  # builtins:float is exact-only


def test_extensions_come_from_the_policy_only() -> None:
    import copyreg

    rt = _runtime("collections:OrderedDict", extensions={240: "collections:OrderedDict"})
    assert rt.resolve_extension(240) == ("collections", "OrderedDict")
    copyreg.add_extension("collections", "deque", 241)
    try:
        with pytest.raises(ForbiddenGlobal) as exc:
            rt.resolve_extension(241)  # known to copyreg, not to the policy
        assert exc.value.rule == "extension"
    finally:
        copyreg.remove_extension("collections", "deque", 241)


def test_concurrent_resolution_hands_out_one_object() -> None:
    rt = load_policy("stdlib").runtime()
    names = [("datetime", "date"), ("collections", "OrderedDict"), ("decimal", "Decimal"), ("builtins", "set")]
    results: list[list[object]] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        results.append([rt.resolve(m, n, 4, True) for m, n in names * 50])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    for row in results:
        assert [id(x) for x in row] == [id(x) for x in results[0]]
    assert all(rt.is_callable(obj) for obj in results[0])
