"""Static scan: what loading a pickle (or a model file holding pickles) would do, without loading it.

::

    report = safepickle.scan(data_or_path, policy="numpy-only")
    report.ok            # True when a load under that policy would refuse nothing
    report.globals       # every module:qualname referenced, with offsets and uses
    report.violations    # what the policy would refuse, with offsets

``scan`` never imports a module and never calls anything the stream names:
it decodes the opcodes with the VM's own codec and simulates the VM's stack
(:mod:`.static`), judges every global with the policy's static verdict (the
one ``loads`` uses), and reads containers (zip, NumPy, joblib, compressed,
tar) in memory (:mod:`.containers`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
from typing import Any

from .report import (
    KINDS,
    USES,
    Extension,
    GlobalRef,
    PersistentId,
    PickleReport,
    ScanReport,
    Site,
    Violation,
)

__all__ = [
    "scan",
    "judge_for",
    "ScanReport",
    "PickleReport",
    "GlobalRef",
    "Site",
    "Violation",
    "Extension",
    "PersistentId",
    "KINDS",
    "USES",
]

# Files at least this large are mapped rather than read.
MMAP_MIN = 1 << 20
# Files are read in pieces of this size until the end (or until MMAP_MIN).
_CHUNK = 1 << 16
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)

# The container layer, imported on the first scan (it pulls in the codec,
# zip and decompression readers: ``import safepickle`` need not).
_scan_buffer: Any = None


def _buffer_scanner() -> Any:
    global _scan_buffer
    if _scan_buffer is None:
        from ._scanner_select import scan_buffer

        _scan_buffer = scan_buffer
    return _scan_buffer


def judge_for(policy: Any = None, *, fix_imports: bool = True, encoding: str = "ASCII",
              errors: str = "strict") -> Any:
    """The :class:`~safepickle.scan.static.Judge` of ``policy`` (a name, a
    path or a Policy); reuse it to scan many inputs under one policy."""
    from ..policy import coerce_policy
    from ._scanner_select import Judge

    return Judge(coerce_policy(policy).runtime(), fix_imports=fix_imports, encoding=encoding, errors=errors)


def scan(
    data_or_path: Any,
    /,
    policy: Any = None,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    source: str | None = None,
    judge: Any = None,
) -> ScanReport:
    """Scan bytes, a file path, or a binary file object, under ``policy``.

    ``data_or_path``: a bytes-like object (the pickle data itself), a
    ``str``/``os.PathLike`` path of a file, or an object with ``read()``.
    ``policy``: as for :func:`safepickle.loads` (default ``"data-only"``).
    ``fix_imports``, ``encoding`` and ``errors`` mean what they mean for
    ``loads`` (they change the names a protocol 0-2 stream asks for, and
    whether its py2 strings decode).  ``judge`` (from :func:`judge_for`)
    replaces ``policy`` and the three options when given.

    Returns a :class:`ScanReport`; never imports or calls anything the data
    names.  Raises ``OSError`` when a path cannot be read, and the policy's
    errors when the policy cannot be loaded; never anything for any bytes.
    """
    scan_buffer = _scan_buffer or _buffer_scanner()
    if judge is None:
        judge = judge_for(policy, fix_imports=fix_imports, encoding=encoding, errors=errors)
    kind = type(data_or_path)
    if kind is bytes:
        return scan_buffer(data_or_path, judge, source=source or "<bytes>")
    if kind is str:
        return _scan_path(data_or_path, judge, source)
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        return scan_buffer(_flat(data_or_path), judge, source=source or "<bytes>")
    if isinstance(data_or_path, (str, os.PathLike)):
        return _scan_path(os.fspath(data_or_path), judge, source)
    read = getattr(data_or_path, "read", None)
    if read is None:
        raise TypeError(f"scan() takes bytes, a path or a binary file object, not {type(data_or_path).__name__}")
    data = read()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("scan() needs a binary file object: read() returned text")
    return scan_buffer(bytes(data), judge, source=source or getattr(data_or_path, "name", "<stream>"))


def _flat(data: Any) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _read(path: str) -> bytes | mmap.mmap:
    """The bytes of the file at ``path``; a read-only map of it instead when
    it is a regular file of at least :data:`MMAP_MIN` bytes.  Read until the
    end of the file (a pipe or a growing file included), with no ``fstat``
    for a small one: two ``read`` calls in all."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        if e.filename is None:
            e.filename = path
        raise
    try:
        data = os.read(fd, _CHUNK)
        if not data:
            return data
        more = os.read(fd, _CHUNK)
        if not more:
            return data
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size >= MMAP_MIN:
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        parts = [data, more]
        while more:
            more = os.read(fd, MMAP_MIN)
            parts.append(more)
        return b"".join(parts)
    except OSError as e:
        if e.filename is None:
            e.filename = path
        raise
    finally:
        os.close(fd)


def _scan_path(path: str, judge: Any, source: str | None) -> ScanReport:
    scan_buffer = _scan_buffer or _buffer_scanner()
    name = source or path
    data = _read(path)
    if type(data) is bytes:
        return scan_buffer(data, judge, source=name)
    mm = data
    try:
        view = memoryview(mm)
        try:
            return scan_buffer(view, judge, source=name)
        finally:
            # A slice still alive keeps the map open until it is collected.
            with contextlib.suppress(BufferError):
                view.release()
    finally:
        with contextlib.suppress(BufferError):
            mm.close()
