"""The audit recorder records each dangerous category and nothing benign."""

from __future__ import annotations

import collections
import ctypes
import importlib
import json
import marshal
import os
import pickle
import socket
import sys
import threading
import uuid

import pytest

from safepickle.audit import CATEGORIES, AuditEvent, AuditRecorder, classify


def _events(rec: AuditRecorder) -> list[str]:
    return [e.event for e in rec.events]


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """Write a fresh module (never imported before) and return a factory for it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def make(body: str = "VALUE = 1\n") -> str:
        name = f"sp_audit_probe_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(body)
        importlib.invalidate_caches()
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


# -- each category ----------------------------------------------------------


def test_records_process_creation():
    with AuditRecorder() as rec:
        os.system("true")
    assert _events(rec) == ["os.system"]
    assert rec.events[0].category == "process"
    assert "true" in rec.events[0].detail


def test_records_compile_and_exec():
    with AuditRecorder() as rec:
        code = compile("1", "x", "eval")
        exec(compile("y = 2", "<string>", "exec"), {})
        eval(code)
    assert _events(rec) == ["compile", "compile", "exec", "exec"]
    assert {e.category for e in rec.events} == {"code"}


def test_records_marshal_loads_called_directly():
    blob = marshal.dumps(1)
    with AuditRecorder() as rec:
        marshal.loads(blob)
    assert _events(rec) == ["marshal.loads"]


def test_records_file_writes_not_reads(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("x")
    with AuditRecorder() as rec:
        with open(target) as fh:
            fh.read()
        with open(target, "rb") as fh:
            fh.read()
        os.close(os.open(target, os.O_RDONLY))
        os.stat(target)
        os.listdir(tmp_path)
    assert rec.events == []

    with AuditRecorder() as rec:
        with open(target, "w") as fh:
            fh.write("y")
        with open(target, "a"):
            pass
        with open(target, "r+b"):
            pass
        os.close(os.open(tmp_path / "new", os.O_WRONLY | os.O_CREAT))
        os.rename(tmp_path / "new", tmp_path / "new2")
        os.remove(tmp_path / "new2")
        os.mkdir(tmp_path / "d")
        os.rmdir(tmp_path / "d")
        os.chmod(target, 0o600)
    assert _events(rec) == [
        "open",
        "open",
        "open",
        "open",
        "os.rename",
        "os.remove",
        "os.mkdir",
        "os.rmdir",
        "os.chmod",
    ]
    assert {e.category for e in rec.events} == {"file"}
    assert str(target) in rec.events[0].detail


def test_records_sockets():
    with AuditRecorder() as rec:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.close()
    assert _events(rec) == ["socket.__new__"]
    assert rec.events[0].category == "network"


def test_records_ctypes():
    with AuditRecorder() as rec:
        ctypes.CDLL(None)
    assert "ctypes.dlopen" in _events(rec)
    assert {e.category for e in rec.events} == {"ctypes"}


def test_records_stdlib_unpickler_find_class():
    data = pickle.dumps(collections.OrderedDict(a=1))
    with AuditRecorder() as rec:
        pickle.loads(data)
    assert _events(rec) == ["pickle.find_class"]
    assert rec.events[0].detail == "('collections', 'OrderedDict')"


def test_records_type_attribute_tampering():
    class Target:
        pass

    with AuditRecorder() as rec:
        Target.__module__ = "elsewhere"
    assert _events(rec) == ["object.__setattr__"]


@pytest.mark.parametrize(
    "event",
    ["os.exec", "os.spawn", "os.posix_spawn", "os.fork", "subprocess.Popen", "pty.spawn",
     "builtins.input", "webbrowser.open", "urllib.Request", "code.__new__", "shutil.rmtree",
     "os.chown", "ctypes.call_function", "socket.connect"],
)
def test_records_events_raised_by_name(event):
    # sys.audit raises the very event the real call would raise, without its effect.
    with AuditRecorder() as rec:
        sys.audit(event, "arg")
    assert _events(rec) == [event]
    assert rec.events[0].category in CATEGORIES


# -- imports ----------------------------------------------------------------


def test_records_new_imports_by_statement_and_import_module(probe_module):
    first, second = probe_module(), probe_module()
    with AuditRecorder() as rec:
        __import__(first)
        importlib.import_module(second)
    names = [e.detail.split()[0] for e in rec.events]
    assert _events(rec) == ["import", "import"]
    assert names == [first, second]


def test_ignores_already_imported_and_allowed_modules(probe_module):
    allowed = probe_module()
    with AuditRecorder(allowed_modules={allowed}) as rec:
        import json as _json  # noqa: F401  (already imported)

        importlib.import_module("os.path")
        importlib.import_module(allowed)
    assert rec.events == []


def test_allowed_module_covers_its_body_but_not_others(probe_module):
    inner = probe_module()
    outer = probe_module(f"import {inner}\ncompile('1', 'x', 'eval')\n")
    with AuditRecorder(allowed_modules={outer}) as rec:
        importlib.import_module(outer)
    assert rec.events == []

    again = probe_module(f"import {probe_module()}\ncompile('1', 'x', 'eval')\n")
    with AuditRecorder() as rec:
        importlib.import_module(again)
    assert _events(rec) == ["import", "import", "compile"]


def test_allowed_modules_cover_submodules_only_by_dotted_prefix():
    from safepickle.audit import _in_tree

    roots = frozenset({"numpy"})
    assert _in_tree("numpy", roots)
    assert _in_tree("numpy._core.multiarray", roots)
    assert not _in_tree("numpyx", roots)
    assert not _in_tree("numpy_evil.x", roots)


# -- benign code and isolation ---------------------------------------------


def test_benign_work_records_nothing(tmp_path):
    blob = pickle.dumps({"a": [1, 2.5, "x", (None, True)]})
    with AuditRecorder() as rec:
        json.dumps(json.loads('{"a": [1, 2, 3]}'))
        pickle.loads(blob)  # no globals: find_class is never called
        sorted(range(100), key=lambda v: -v)
        sys._getframe()
        collections.OrderedDict(a=1)
        hash(b"x" * 1000)
        os.getpid()
        str(tmp_path)
    assert rec.events == [], rec.format()
    assert not rec.dangerous
    assert rec.format() == "no dangerous audit events"


def test_nothing_recorded_outside_the_block():
    with AuditRecorder() as rec:
        pass
    compile("1", "x", "eval")
    assert rec.events == []


def test_nested_recorders_both_receive():
    with AuditRecorder() as outer:
        compile("1", "x", "eval")
        with AuditRecorder() as inner:
            compile("2", "x", "eval")
        compile("3", "x", "eval")
    assert len(outer.events) == 3
    assert len(inner.events) == 1


def test_other_threads_are_not_recorded():
    seen = {}

    def worker() -> None:
        compile("1", "x", "eval")
        with AuditRecorder() as own:
            compile("2", "x", "eval")
        seen["own"] = own.events

    with AuditRecorder() as rec:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert rec.events == []
    assert [e.event for e in seen["own"]] == ["compile"]


def test_hook_never_calls_methods_of_event_arguments():
    calls = []

    class Hostile:
        def __repr__(self) -> str:
            calls.append("repr")
            return "hostile"

        def __fspath__(self) -> str:
            calls.append("fspath")
            return "/x"

    with AuditRecorder() as rec:
        sys.audit("os.system", Hostile())
        sys.audit("open", Hostile(), "w", 0)
    assert calls == []
    assert len(rec.events) == 2
    assert "Hostile" in rec.events[0].detail


def test_long_details_are_truncated():
    with AuditRecorder() as rec:
        sys.audit("os.system", "x" * 10_000)
    assert len(rec.events[0].detail) < 300


def test_recorder_is_single_use():
    rec = AuditRecorder()
    with rec:
        pass
    with pytest.raises(RuntimeError), rec:
        pass


# -- classification ---------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "args", "category"),
    [
        ("open", ("/x", "r", os.O_RDONLY), None),
        ("open", ("/x", None, os.O_RDONLY), None),
        ("open", ("/x", "w", 0), "file"),
        ("open", ("/x", "x", 0), "file"),
        ("open", ("/x", None, os.O_RDWR), "file"),
        ("open", ("/x", None, os.O_CREAT), "file"),
        ("os.listdir", ("/",), None),
        ("sys._getframe", (), None),
        ("os.system", (b"true",), "process"),
        ("socket.getaddrinfo", (), "network"),
        ("ctypes.dlsym", (), "ctypes"),
        ("shutil.copyfile", (), "file"),
        ("pickle.find_class", ("os", "system"), "unpickle"),
    ],
)
def test_classify(event, args, category):
    assert classify(event, args) == category


def test_audit_event_is_a_value():
    assert AuditEvent("os.system", "x") == AuditEvent("os.system", "x")
    assert AuditEvent("socket.bind", "x").category == "network"
