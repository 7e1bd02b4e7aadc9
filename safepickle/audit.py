"""Record the dangerous audit events (PEP 578) raised while a block of code runs.

Used by the hostile-stream tests and by the fuzz harness to prove that a load
did nothing dangerous: no process was started, no code was compiled or
executed, no module outside an allowed set was imported, no file was written,
no socket opened, no ctypes call made, no stdlib unpickler invoked.

::

    with AuditRecorder() as rec:
        safepickle.loads(data)
    assert not rec.events, rec.format()

Contract
--------
* ``sys.addaudithook`` hooks cannot be removed, so ONE process-wide hook is
  installed lazily (the first time a recorder is entered) and stays for the
  life of the process.  When no recorder is active it returns after a single
  ``ContextVar.get``.
* The hook forwards events only to the recorders active in the *current
  context* (``contextvars``): a recorder sees what runs in the thread (or
  asyncio task) that entered it, never what other threads do.  Threads started
  inside the block start with an empty context and are not recorded.
* Only *dangerous* events are kept (see :data:`CATEGORIES` and
  :func:`classify`); reading files, ``sys._getframe`` and the like are ignored.
* ``import`` is recorded for a module that was not yet imported and is not in
  ``allowed_modules``.  An entry of ``allowed_modules`` covers its submodules
  (``"numpy"`` allows ``numpy._core.multiarray``).  Imports made through
  ``importlib.import_module`` raise no ``import`` event; they are caught by the
  ``exec`` event of the new module's body, which is attributed to that module.
  Events raised while the body of an allowed module is being imported (its own
  imports, ``compile`` calls of ``namedtuple``...) are attributed to that
  import and not recorded, and so are the import system's own ``marshal.loads``
  of a ``.pyc`` and ``compile`` of a source (the body's ``exec`` that follows
  is what counts).  Built-in
  (compiled-in) modules imported through ``importlib`` raise no event at all
  and are not seen.
* The hook never calls ``repr`` or any other method of the event arguments
  (they may be attacker-built objects): details are built from plain values
  and type names only.  It never raises.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import types
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CATEGORIES", "AuditEvent", "AuditRecorder", "classify"]

# Exact event names -> category.
_EXACT: dict[str, str] = {
    # Processes.
    "os.system": "process",
    "os.exec": "process",
    "os.spawn": "process",
    "os.posix_spawn": "process",
    "os.fork": "process",
    "os.forkpty": "process",
    "os.startfile": "process",
    "os.kill": "process",
    "os.killpg": "process",
    "signal.pthread_kill": "process",
    "subprocess.Popen": "process",
    "pty.spawn": "process",
    "webbrowser.open": "process",
    # Code creation and execution.
    "exec": "code",
    "compile": "code",
    "code.__new__": "code",
    "function.__new__": "code",
    "marshal.load": "code",
    "marshal.loads": "code",
    "sys.settrace": "code",
    "sys.setprofile": "code",
    "sys.addaudithook": "code",
    # Restricted attributes: frames, code, type identity (sandbox escapes).
    "object.__getattr__": "attribute",
    "object.__setattr__": "attribute",
    "object.__delattr__": "attribute",
    "sys._current_frames": "introspection",
    "gc.get_objects": "introspection",
    "gc.get_referrers": "introspection",
    "gc.get_referents": "introspection",
    # Imports.
    "import": "import",
    # Files and process state (``open`` only when it writes, see classify).
    "open": "file",
    "os.remove": "file",
    "os.rename": "file",
    "os.rmdir": "file",
    "os.mkdir": "file",
    "os.truncate": "file",
    "os.symlink": "file",
    "os.link": "file",
    "os.chmod": "file",
    "os.chown": "file",
    "os.chflags": "file",
    "os.lchflags": "file",
    "os.utime": "file",
    "os.setxattr": "file",
    "os.removexattr": "file",
    "os.chdir": "file",
    "os.putenv": "file",
    "os.unsetenv": "file",
    "tempfile.mkstemp": "file",
    "tempfile.mkdtemp": "file",
    "mmap.__new__": "file",
    "sqlite3.connect": "file",
    "sqlite3.enable_load_extension": "file",
    "sqlite3.load_extension": "file",
    "resource.setrlimit": "file",
    "resource.prlimit": "file",
    # Network.
    "urllib.Request": "network",
    "http.client.connect": "network",
    "http.client.send": "network",
    # Interaction and nested unpickling.
    "builtins.input": "interactive",
    "builtins.input/result": "interactive",
    "builtins.breakpoint": "interactive",
    "pickle.find_class": "unpickle",
}

# Event-name prefixes -> category (whole families of events).
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("shutil.", "file"),
    ("fcntl.", "file"),
    ("syslog.", "file"),
    ("winreg.", "file"),
    ("msvcrt.", "process"),
    ("_winapi.", "process"),
    ("socket.", "network"),
    ("ftplib.", "network"),
    ("smtplib.", "network"),
    ("imaplib.", "network"),
    ("poplib.", "network"),
    ("nntplib.", "network"),
    ("telnetlib.", "network"),
    ("ctypes.", "ctypes"),
    ("cpython.run_", "code"),
)

#: The categories a recorded event can fall into.
CATEGORIES: frozenset[str] = frozenset(_EXACT.values()) | {c for _, c in _PREFIXES}

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _is_write_open(args: tuple[object, ...]) -> bool:
    # The "open" event carries (path, mode, flags); mode is None for os.open.
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else None
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def _category_of(event: str) -> str | None:
    category = _EXACT.get(event)
    if category is None:
        for prefix, cat in _PREFIXES:
            if event.startswith(prefix):
                return cat
    return category


def classify(event: str, args: tuple[object, ...] = ()) -> str | None:
    """The category of a dangerous event, or None when the event is benign.

    ``open`` counts only when it writes, creates, truncates or appends.
    ``import`` is always dangerous here; the recorder applies its
    ``allowed_modules``.
    """
    category = _category_of(event)
    if event == "open" and not _is_write_open(args):
        return None
    return category


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One dangerous event: the audit event name and a safe textual detail."""

    event: str
    detail: str

    @property
    def category(self) -> str:
        """The category (``process``, ``code``, ``import``, ``file``...)."""
        return _category_of(self.event) or "unknown"


_type_name = type.__dict__["__qualname__"].__get__
_type_module = type.__dict__["__module__"].__get__
_MAX_TEXT = 160
_MAX_ITEMS = 6


def _describe(value: object, depth: int = 0) -> str:
    """A short text for an event argument without calling any of its methods."""
    tp = type(value)
    if value is None or tp in (bool, int, float, str, bytes, bytearray):
        text = repr(value)
    elif tp is types.CodeType:
        code: types.CodeType = value  # type: ignore[assignment]
        text = f"<code {code.co_name} in {code.co_filename}:{code.co_firstlineno}>"
    elif tp in (tuple, list) and depth < 2:
        items = list(value)  # type: ignore[call-overload]
        parts = [_describe(v, depth + 1) for v in items[:_MAX_ITEMS]]
        if len(items) > _MAX_ITEMS:
            parts.append("...")
        text = "(" + ", ".join(parts) + ")"
    else:
        try:
            text = f"<{_type_module(tp)}.{_type_name(tp)}>"
        except Exception:
            text = "<object>"
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _in_tree(name: str, roots: frozenset[str]) -> bool:
    """Is module ``name`` one of ``roots`` or a submodule of one?"""
    if name in roots:
        return True
    parts = name.split(".")
    return any(".".join(parts[:i]) in roots for i in range(1, len(parts)))


def _module_of_file(filename: str) -> str | None:
    """The name of the (imported or being imported) module whose file is ``filename``."""
    for name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType):
            continue
        try:
            # object.__getattribute__: skip module-level __getattr__ hooks (PEP 562).
            namespace = object.__getattribute__(module, "__dict__")
        except Exception:
            continue
        if namespace.get("__file__") == filename:
            return name
    return None


# The import system unmarshals each .pyc (or compiles each source) it loads;
# the module body's "exec" event that follows is what gets attributed.
_IMPORT_MACHINERY = frozenset(
    {"<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>", "<frozen zipimport>"}
)
_LOADER_EVENTS = frozenset({"compile", "marshal.load", "marshal.loads"})


def _from_import_machinery() -> bool:
    """Was the current event raised by a direct call from the import system?"""
    return sys._getframe(2).f_code.co_filename in _IMPORT_MACHINERY


def _importing_modules() -> list[str]:
    """Names of the modules whose top-level body is on the current stack."""
    names = []
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            name = frame.f_globals.get("__name__")
            if isinstance(name, str) and name != "__main__":
                names.append(name)
        frame = frame.f_back
    return names


class AuditRecorder:
    """Collect the dangerous audit events raised in the current context.

    ``allowed_modules``: module names (each covering its submodules) that may
    be imported during the block without being recorded.  ``events`` lists what
    was recorded, in order.  A recorder can be entered once; recorders nest
    (every active one receives each event).
    """

    def __init__(self, allowed_modules: Iterable[str] = frozenset()) -> None:
        self.allowed_modules: frozenset[str] = frozenset(allowed_modules)
        self.events: list[AuditEvent] = []
        self._token: contextvars.Token[tuple[AuditRecorder, ...]] | None = None
        self._used = False
        self._imports_seen: set[str] = set()

    def __enter__(self) -> AuditRecorder:
        if self._used:
            raise RuntimeError("an AuditRecorder can be entered only once")
        self._used = True
        _install_hook()
        self._token = _ACTIVE.set((*_ACTIVE.get(), self))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    @property
    def dangerous(self) -> bool:
        """True when at least one dangerous event was recorded."""
        return bool(self.events)

    def format(self) -> str:
        """The recorded events, one per line (for assertion messages)."""
        if not self.events:
            return "no dangerous audit events"
        return "\n".join(f"[{e.category}] {e.event}: {e.detail}" for e in self.events)

    # -- called by the hook -------------------------------------------------

    def _import(self, name: str, detail: str) -> None:
        if _in_tree(name, self.allowed_modules) or name in self._imports_seen:
            return
        self._imports_seen.add(name)
        self.events.append(AuditEvent("import", detail))

    def _offer(self, event: str, args: tuple[object, ...], importing: list[str] | None) -> None:
        if importing and any(_in_tree(m, self.allowed_modules) for m in importing):
            return  # part of importing an allowed module
        if event == "import":
            name = args[0] if args and isinstance(args[0], str) else "?"
            self._import(name, name)
            return
        if event == "exec" and args and type(args[0]) is types.CodeType:
            code: types.CodeType = args[0]  # type: ignore[assignment]
            if code.co_name == "<module>":
                module = _module_of_file(code.co_filename)
                if module is not None:
                    self._import(module, f"{module} (module body executed)")
                    return
        self.events.append(AuditEvent(event, _describe(args)))


_ACTIVE: contextvars.ContextVar[tuple[AuditRecorder, ...]] = contextvars.ContextVar(
    "safepickle_audit_recorders", default=()
)
_BUSY = threading.local()
_INSTALL_LOCK = threading.Lock()
_installed = False


def _hook(event: str, args: tuple[object, ...]) -> None:
    recorders = _ACTIVE.get()
    if not recorders or getattr(_BUSY, "on", False):
        return
    if classify(event, args) is None:
        return
    # Our own work below (frame walking, sys.modules) raises events too.
    _BUSY.on = True
    try:
        if event in _LOADER_EVENTS and _from_import_machinery():
            return
        importing = _importing_modules() if any(r.allowed_modules for r in recorders) else None
        for recorder in recorders:
            recorder._offer(event, args, importing)
    except Exception:  # an audit hook must never break the code it watches
        pass
    finally:
        _BUSY.on = False


def _install_hook() -> None:
    global _installed
    if _installed:
        return
    with _INSTALL_LOCK:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True
