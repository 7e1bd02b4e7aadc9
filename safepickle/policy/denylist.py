"""The built-in deny list: globals no policy can allow.

It is always in force, on top of every policy.  An entry is either a module
(``subprocess``: the module and every submodule, every name in them) or a
``module:qualname`` (that object and everything reached below it:
``pathlib:Path`` covers ``pathlib:Path.open``).  A few names inside denied
modules are harmless values that real pickles need; they are carved out in
:data:`EXEMPT` and still need an ``allow`` entry like anything else.

The only way past the list is a policy's ``unsafe_override_denylist``, which
admits an entry only where it is named there exactly *and* in ``allow``.

Categories (the category name appears in the refusal's rule,
``denylist:<category>``):

``eval``
    Evaluates or compiles code: ``eval``/``exec``/``compile``, code objects
    and function constructors, interactive consoles, ``timeit``/``doctest``,
    string annotations (``typing.get_type_hints``), code generators that call
    ``exec`` (``collections.namedtuple``, ``dataclasses``), expression
    engines (``numexpr``, ``pandas.eval``, ``sympy.sympify``), templates.
``import``
    Imports modules or resolves names at run time: ``__import__``,
    ``importlib``, ``pkgutil.resolve_name``, ``pydoc.locate``, ``runpy``,
    ``sys``, ``site``, packaging tools, test runners.
``reflection``
    Reads or writes attributes or interpreter state by name:
    ``getattr``/``setattr``/``delattr``/``hasattr``/``vars``/``globals``,
    ``operator`` (``attrgetter``, ``itemgetter``, ``methodcaller``),
    ``functools`` (``partial``, ``reduce``), ``inspect``, ``copy``,
    ``copyreg`` (except its three reconstructors), ``types``, ``gc``,
    ``weakref``.
``indirect-call``
    Calls other callables on the stream's behalf, which would bypass the
    per-callable argument guards: ``map``/``filter``/``iter``/``next``/
    ``sorted``/``min``/``max``, ``itertools``, ``numpy.frompyfunc``/
    ``vectorize``/``fromfunction``/``apply_along_axis``, ``atexit``, ``sched``.
``process``
    Runs programs or touches the operating system: ``os``/``posix``/``nt``,
    ``subprocess``, ``pty``, ``signal``, ``resource``, ``platform`` (runs
    helpers), ``uuid.getnode``/``uuid1`` (may run ``ifconfig``), ``exit``.
``files``
    Opens, reads, writes or decompresses files and streams: ``open``,
    ``print``, ``io``, concrete ``pathlib`` paths (pure paths stay
    allowable), ``shutil``, ``tempfile``, archives and compressors (``zlib``
    is a decompression bomb), ``codecs`` (except ``_codecs.encode``),
    ``logging``, NumPy/pandas/SciPy file readers and writers, ``memmap``.
``loader``
    Deserialises again inside a load (a nested, unrestricted loader):
    ``pickle``, ``marshal``, ``shelve``, ``dbm``, ``numpy.load``,
    ``torch.load`` and ``torch.serialization``, ``joblib``, ``dill``,
    ``cloudpickle``, ``pandas.read_pickle``, ``yaml``, ``jsonpickle``.
``network``
    Sockets and network clients or servers: ``socket``, ``ssl``, ``http``,
    ``urllib``, ``ftplib``, ``smtplib``, ``xmlrpc``, ``asyncio``,
    ``webbrowser``, ``requests``, ``httpx``.
``threads``
    Starts threads or processes, or schedules work: ``threading``,
    ``_thread``, ``multiprocessing``, ``concurrent``, ``asyncio``.
``native``
    Reaches native code or memory directly: ``ctypes``, ``cffi``,
    ``numpy.ctypeslib``, ``numpy.f2py``, ``mmap``, ``pyximport``.
``interactive``
    Waits for or talks to a human: ``input``, ``help``, ``breakpoint``,
    ``pdb``, ``tkinter``, ``curses``, ``getpass``.
``safepickle``
    safepickle itself (a load must not reconfigure or re-enter the loader).
"""

from __future__ import annotations

__all__ = ["CATEGORIES", "EXEMPT", "describe", "exact_names_in", "is_denied_module", "match", "match_entry"]

#: category -> (one-line description, entries)
CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "eval": (
        "evaluates or compiles code",
        (
            "builtins:eval", "builtins:exec", "builtins:compile",
            "code", "codeop", "compileall", "py_compile", "timeit", "doctest", "trace",
            "profile", "cProfile", "_lsprof", "dis", "ast:parse",
            "types:FunctionType", "types:LambdaType", "types:CodeType",
            "typing:get_type_hints", "typing:ForwardRef", "typing:_eval_type", "typing:NamedTuple",
            "collections:namedtuple", "dataclasses",
            "numexpr", "pandas:eval", "pandas.core.computation", "sympy:sympify", "sympy.parsing",
            "jinja2", "mako",
        ),
    ),
    "import": (
        "imports modules or resolves names at run time",
        (
            "builtins:__import__", "importlib", "imp", "_imp", "pkgutil", "pydoc", "runpy",
            "zipimport", "modulefinder", "_frozen_importlib", "_frozen_importlib_external",
            "sys", "site", "sitecustomize", "usercustomize", "sysconfig", "_sitebuiltins",
            "ensurepip", "pip", "setuptools", "distutils", "venv", "unittest", "test",
            "numpy.distutils", "numpy.testing", "numpy._pytesttester", "numpy:test",
        ),
    ),
    "reflection": (
        "reads or writes attributes or interpreter state by name",
        (
            "builtins:getattr", "builtins:setattr", "builtins:delattr", "builtins:hasattr",
            "builtins:globals", "builtins:locals", "builtins:vars",
            "operator", "_operator", "functools", "_functools", "inspect", "copy", "copyreg",
            "types", "gc", "weakref", "_weakref", "_weakrefset", "abc:ABCMeta.register",
        ),
    ),
    "indirect-call": (
        "calls other callables on the stream's behalf",
        (
            "builtins:map", "builtins:filter", "builtins:iter", "builtins:next",
            "builtins:sorted", "builtins:min", "builtins:max",
            "itertools", "atexit", "sched", "contextlib:ExitStack", "contextlib:AsyncExitStack",
            "numpy:frompyfunc", "numpy:vectorize", "numpy:fromfunction", "numpy:apply_along_axis",
            "numpy:apply_over_axes", "numpy:piecewise", "numpy:seterrcall", "numpy:set_printoptions",
        ),
    ),
    "process": (
        "runs programs or touches the operating system",
        (
            "os", "posix", "nt", "_posixsubprocess", "subprocess", "pty", "tty", "termios", "fcntl",
            "resource", "signal", "_signal", "pwd", "grp", "spwd", "crypt", "platform", "_winapi",
            "winreg", "msvcrt", "winsound", "faulthandler", "tracemalloc", "syslog", "uuid",
            "builtins:exit", "builtins:quit",
        ),
    ),
    "files": (
        "opens, reads, writes or decompresses files and streams",
        (
            "builtins:open", "builtins:print", "io", "_io", "pathlib", "posixpath", "ntpath",
            "genericpath", "shutil", "tempfile", "glob", "fileinput", "filecmp", "linecache",
            "tokenize", "zipfile", "tarfile", "gzip", "bz2", "_bz2", "lzma", "_lzma", "zlib",
            "_compression", "codecs", "_codecs", "encodings", "mailbox", "sqlite3", "_sqlite3",
            "logging", "netrc", "configparser", "csv", "_csv",
            "numpy:save", "numpy:savez", "numpy:savez_compressed", "numpy:savetxt", "numpy:memmap",
            "numpy:fromfile", "numpy:DataSource", "numpy:loadtxt", "numpy:genfromtxt",
            "numpy:fromregex", "numpy.lib._datasource", "numpy._core.memmap", "numpy.rec:fromfile",
            "numpy._core.records:fromfile", "numpy._core.multiarray:fromfile",
            "scipy.io", "h5py", "pandas.io", "pandas:read_csv", "pandas:read_table",
            "pandas:read_json", "pandas:read_html", "pandas:read_excel", "pandas:read_parquet",
            "pandas:read_feather", "pandas:read_hdf", "pandas:read_sql", "pandas:read_sql_query",
            "pandas:read_sql_table", "pandas:read_xml", "pandas:read_fwf", "pandas:read_sas",
            "pandas:read_spss", "pandas:read_stata", "pandas:read_orc", "pandas:read_clipboard",
        ),
    ),
    "loader": (
        "deserialises again inside a load",
        (
            "pickle", "_pickle", "pickletools", "_compat_pickle", "marshal", "shelve", "dbm",
            "numpy:load", "numpy:loads", "numpy._core.numeric:loads", "numpy._core.multiarray:loads",
            "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.lib.format", "numpy.lib._format_impl",
            "torch:load", "torch:from_file", "torch.serialization", "torch.hub", "torch.jit",
            "torch.package", "torch.storage:_load_from_bytes", "torch.utils.cpp_extension",
            "torch._C", "torch.ops", "torch._ops", "torch._dynamo",
            "joblib", "sklearn.externals", "dill", "cloudpickle", "srsly", "jsonpickle", "yaml",
            "pandas:read_pickle",
        ),
    ),
    "network": (
        "opens sockets or talks to the network",
        (
            "socket", "_socket", "ssl", "_ssl", "http", "urllib", "urllib3", "requests", "httpx",
            "aiohttp", "ftplib", "smtplib", "smtpd", "poplib", "imaplib", "nntplib", "telnetlib",
            "xmlrpc", "socketserver", "selectors", "select", "webbrowser", "wsgiref", "asyncore",
            "asynchat",
        ),
    ),
    "threads": (
        "starts threads or processes, or schedules work",
        ("threading", "_thread", "multiprocessing", "_multiprocessing", "concurrent", "asyncio", "_asyncio"),
    ),
    "native": (
        "reaches native code or raw memory",
        ("ctypes", "_ctypes", "cffi", "_cffi_backend", "mmap", "numpy.ctypeslib", "numpy.f2py", "pyximport"),
    ),
    "interactive": (
        "waits for or talks to a human",
        (
            "builtins:input", "builtins:help", "builtins:breakpoint", "builtins:copyright",
            "builtins:credits", "builtins:license", "pdb", "bdb", "tkinter", "_tkinter", "turtle",
            "turtledemo", "idlelib", "curses", "readline", "rlcompleter", "getpass",
        ),
    ),
    "safepickle": (
        "is safepickle itself",
        ("safepickle",),
    ),
}

#: Names inside denied modules that are plain values or reconstructors pickle
#: itself needs.  They are *not* allowed by this: a policy must still list them.
EXEMPT: frozenset[str] = frozenset(
    {
        "copyreg:_reconstructor",
        "copyreg:__newobj__",
        "copyreg:__newobj_ex__",
        "_codecs:encode",
        "pathlib:PurePath",
        "pathlib:PurePosixPath",
        "pathlib:PureWindowsPath",
        "types:SimpleNamespace",
        "uuid:UUID",
        "uuid:SafeUUID",
        "uuid:NAMESPACE_DNS",
        "uuid:NAMESPACE_URL",
        "uuid:NAMESPACE_OID",
        "uuid:NAMESPACE_X500",
    }
)


def _index() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    trees: dict[str, str] = {}
    names: dict[tuple[str, str], str] = {}
    for category, (_doc, entries) in CATEGORIES.items():
        for entry in entries:
            if ":" in entry:
                module, qualname = entry.split(":")
                names.setdefault((module, qualname), category)
            else:
                trees.setdefault(entry, category)
    return trees, names


_TREES, _NAMES = _index()
_BY_MODULE: dict[str, list[str]] = {}
for _module, _qualname in _NAMES:
    _BY_MODULE.setdefault(_module, []).append(_qualname)


def _prefixes(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def match(module: str, qualname: str) -> str | None:
    """The deny-list category that covers ``module:qualname``, or None.

    ``module`` must already be mapped (Python 2 names, aliases).  Matching is
    on whole dotted parts: ``subprocess`` covers ``subprocess.x`` but not
    ``subprocessing``; ``pathlib:Path`` covers ``pathlib:Path.open``.
    """
    if f"{module}:{qualname}" in EXEMPT:
        return None
    for prefix in _prefixes(module):
        category = _TREES.get(prefix)
        if category is not None:
            return category
    for prefix in _prefixes(qualname):
        category = _NAMES.get((module, prefix))
        if category is not None:
            return category
    return None


def match_entry(module: str, qualname: str) -> str | None:
    """Like :func:`match` for a policy entry, where ``qualname`` may be ``*``:
    a wildcard is refused when the whole module is denied."""
    if qualname == "*":
        for prefix in _prefixes(module):
            category = _TREES.get(prefix)
            if category is not None:
                return category
        return None
    return match(module, qualname)


def is_denied_module(module: str) -> bool:
    """True when the whole module tree is on the list."""
    return any(p in _TREES for p in _prefixes(module))


def exact_names_in(module: str) -> list[str]:
    """The qualnames of ``module`` that are listed one by one."""
    return _BY_MODULE.get(module, [])


def describe(category: str) -> str:
    """One-line description of a category, for messages."""
    return CATEGORIES[category][0]
