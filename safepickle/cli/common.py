"""What every subcommand shares: errors for people, policy loading, inputs, progress.

A :class:`CliError` carries one line for the user and an exit code; ``main``
prints it as ``safepickle: <line>`` and never a traceback.
"""

from __future__ import annotations

import codecs
import os
import stat
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["CliError", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "load_policy_arg", "iter_inputs", "Progress",
           "read_input", "one_line", "check_decoding_options"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """An error for people: ``message`` is one line, ``code`` the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = one_line(message)
        self.code = code


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_policy_arg(value: str | None) -> Any:
    """The Policy named by ``--policy`` (a built-in name or a file), or a
    :class:`CliError` that says why it cannot be had."""
    from pydantic import ValidationError

    from ..policy import PolicyFileError, coerce_policy, format_validation_error

    try:
        return coerce_policy(value)
    except ValidationError as e:
        detail = "; ".join(format_validation_error(e).splitlines())
        raise CliError(f"policy {value!r} is not valid: {detail}") from None
    except PolicyFileError as e:
        raise CliError(f"cannot load policy {value!r}: {e}") from None
    except (OSError, ValueError, TypeError) as e:
        raise CliError(f"cannot load policy {value!r}: {e}") from None


def check_decoding_options(encoding: str, errors: str) -> None:
    """A :class:`CliError` (exit 2) for an ``--encoding`` or ``--errors`` that
    Python does not know: a typo must not turn every Python 2 file into a
    refusal.  ``bytes`` is pickle's own encoding (py2 str stays bytes)."""
    if encoding != "bytes":
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise CliError(f"--encoding {encoding!r}: unknown encoding") from None
    try:
        codecs.lookup_error(errors)
    except LookupError:
        raise CliError(f"--errors {errors!r}: unknown error handler (strict, ignore, replace, "
                       "backslashreplace, surrogateescape...)") from None


def iter_inputs(paths: list[str], errors: list[tuple[str, str]]) -> Iterator[str]:
    """Every file to scan: files (and named pipes) as given, directories
    walked recursively (sorted, symlinked directories not followed), ``-``
    for stdin.  Paths
    that cannot be used go to ``errors`` as ``(path, reason)``."""
    for p in paths:
        if p == "-":
            yield p
            continue
        if os.path.isdir(p):
            def failed(e: OSError, top: str = p) -> None:
                errors.append((e.filename or top, _reason(e)))

            for root, dirs, files in os.walk(p, onerror=failed):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if os.path.isfile(full):
                        yield full
        elif os.path.isfile(p) or _is_fifo(p):
            # A pipe named on the command line (``<(gunzip -c x.gz)``) is read
            # to its end, as stdin is; a directory walk takes regular files only.
            yield p
        elif os.path.exists(p):
            errors.append((p, "not a regular file"))
        else:
            errors.append((p, "no such file or directory"))


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def read_input(path: str) -> bytes:
    """The bytes of ``path`` (``-``: stdin), or a :class:`CliError`."""
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CliError(f"{path}: {_reason(e)}") from None


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal and
    the run is long (it appears after ``delay`` seconds)."""

    def __init__(self, total: int, stream: TextIO | None = None, *, enabled: bool | None = None,
                 delay: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = _isatty(self.stream) and total > 1
        self.enabled = enabled
        self.total = total
        self.done = 0
        self.start = time.monotonic()
        self.delay = delay
        self.last = 0.0
        self.shown = False

    def step(self, label: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < self.delay or (now - self.last < 0.1 and self.done < self.total):
            return
        self.last = now
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        rate = self.done / max(now - self.start, 1e-9)
        tail = label[-40:]
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                          f"{rate:.0f}/s {tail}\x1b[K")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
