"""Global names a hostile stream asks for.

The grammar generator mixes these with the names the policy under test
allows: code execution and process primitives, nested loaders, attribute
walks from allowed modules, Python 2 spellings (mapped by ``fix_imports``
below protocol 3), private and dunder paths, and names that do not exist.
None of them may ever resolve under a policy that does not list it; the
audit oracle and the result check catch one that does.
"""

from __future__ import annotations

__all__ = ["CLASSIC_GADGETS", "HOSTILE_GLOBALS", "PY2_MODULES", "RANDOM_MODULES"]

HOSTILE_GLOBALS: tuple[tuple[str, str], ...] = (
    # code execution and attribute access
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "compile"),
    ("builtins", "getattr"),
    ("builtins", "setattr"),
    ("builtins", "__import__"),
    ("builtins", "open"),
    ("builtins", "globals"),
    ("builtins", "breakpoint"),
    ("builtins", "type"),
    ("builtins", "object.__subclasses__"),
    ("builtins", "str.format"),
    # processes
    ("os", "system"),
    ("os", "popen"),
    ("posix", "system"),
    ("nt", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("pty", "spawn"),
    # attribute walks and re-exports
    ("posixpath", "os.system"),
    ("os.path", "os.system"),
    ("collections", "OrderedDict.__init__.__globals__"),
    ("datetime", "sys.modules"),
    ("numpy", "core.multiarray._reconstruct.__globals__"),
    ("builtins", "set.__init__"),
    ("copyreg", "_reconstructor.__globals__"),
    ("collections", "<locals>.x"),
    ("builtins", "__builtins__"),
    # nested loaders and gadgets
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("marshal", "loads"),
    ("numpy", "load"),
    ("numpy.lib.format", "read_array"),
    ("torch", "load"),
    ("joblib", "load"),
    ("shelve", "open"),
    ("pkgutil", "resolve_name"),
    ("pydoc", "locate"),
    ("functools", "partial"),
    ("functools", "reduce"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("safepickle", "loads"),
    ("importlib", "import_module"),
    ("ctypes", "CDLL"),
    ("socket", "socket"),
    ("webbrowser", "open"),
    ("sys", "exit"),
    ("copyreg", "add_extension"),
    ("types", "FunctionType"),
    ("code", "InteractiveInterpreter"),
    # Python 2 spellings (fix_imports maps them below protocol 3)
    ("__builtin__", "eval"),
    ("__builtin__", "getattr"),
    ("__builtin__", "set"),
    ("copy_reg", "_reconstructor"),
    ("exceptions", "Exception"),
    ("UserDict", "UserDict"),
    ("commands", "getoutput"),
    # malformed and absent names
    ("", ""),
    ("builtins", ""),
    ("no_such_module_sp", "x"),
    ("builtins", "no_such_name_sp"),
    ("builtins.", "set"),
    ("builtins", "set."),
    ("bu iltins", "set"),
)

#: The gadgets every pickle exploit starts with; drawn more often than the rest.
CLASSIC_GADGETS: tuple[tuple[str, str], ...] = (
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("os", "system"),
    ("posix", "system"),
    ("subprocess", "Popen"),
    ("__builtin__", "eval"),
    ("posixpath", "os.system"),
    ("pickle", "loads"),
)

#: Python 2 module names that ``_compat_pickle`` maps.
PY2_MODULES: tuple[str, ...] = ("__builtin__", "copy_reg", "exceptions", "UserDict", "UserList", "Queue",
                                "cPickle", "cStringIO", "urlparse")

#: Module names used for random globals.
RANDOM_MODULES: tuple[str, ...] = ("builtins", "collections", "datetime", "numpy", "numpy._core.multiarray",
                                   "copyreg", "_codecs", "decimal", "os", "sys", "uuid", "pathlib")
