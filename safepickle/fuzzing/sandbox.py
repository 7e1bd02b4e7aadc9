"""A safety net for the fuzzing process: while a fuzz case loads, audit
events that start processes, open sockets, write files, run code or call
ctypes are *blocked* (the audit hook raises :class:`Blocked`), not only
recorded.

The audit oracle (:class:`safepickle.audit.AuditRecorder`, installed first,
so it sees each event before this hook stops it) reports the event as a
finding; this hook makes sure that a VM bug found by the fuzzer cannot run a
fuzz-generated command on the machine that runs the fuzzer.  ``Blocked``
derives from ``BaseException`` so that no ``except Exception`` inside the VM
can swallow it; it then escapes the load and is a finding of the exceptions
oracle too.
"""

from __future__ import annotations

import contextvars
import sys
import threading

from ..audit import AuditRecorder, classify

__all__ = ["Blocked", "blocking", "install"]

_BLOCKED_CATEGORIES = frozenset({"process", "network", "file", "ctypes", "code", "interactive"})
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("safepickle_fuzz_blocking", default=False)
_lock = threading.Lock()
_installed = False


class Blocked(BaseException):
    """An event the fuzzing sandbox refused to let happen."""


def _hook(event: str, args: tuple) -> None:
    if not _ACTIVE.get():
        return
    category = classify(event, args)
    if category in _BLOCKED_CATEGORIES:
        raise Blocked(f"fuzzing sandbox blocked audit event {event!r} ({category})")


def install() -> None:
    """Install the hook (once per process; hooks cannot be removed)."""
    global _installed
    if _installed:
        return
    with _lock:
        if not _installed:
            # the recorder's hook first: it must see each event before we stop it
            with AuditRecorder():
                pass
            sys.addaudithook(_hook)
            _installed = True


class blocking:
    """Context manager: block dangerous events in this context."""

    def __enter__(self) -> blocking:
        install()
        self._token = _ACTIVE.set(True)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self._token)
