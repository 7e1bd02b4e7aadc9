"""Which build of the scanner runs: compiled or interpreted.

The scanner's hot path is three modules: ``static.py`` (the walk of one
pickle stream), ``values.py`` (what it keeps on its simulated stack) and
``containers.py`` (the formats of an input, and the report).  When the
package was built with a C compiler, ``setup.py`` also compiled each with
Cython, as ``_static_c``, ``_values_c`` and ``_containers_c``; the compiled
ones import one another (never a module as written), so they run together
or not at all.  :func:`safepickle._compiled.choose` takes them when every
one was compiled from the source next to it, the modules as written
otherwise (or with ``SAFEPICKLE_PURE_PYTHON=1``).

:func:`scanner_kind` says which build runs.
"""

from __future__ import annotations

from typing import Any

from .._compiled import Kind, choose

__all__ = ["analyze", "scan_buffer", "Judge", "scanner_kind", "skipped_reason"]

_PAIRS = (("_static_c", "static"), ("_values_c", "values"), ("_containers_c", "containers"))

_kind, _skipped = choose(__package__, _PAIRS, "scanner")
if _kind == "compiled":
    from . import _containers_c as _containers
    from . import _static_c as _static
else:
    from . import containers as _containers  # type: ignore[no-redef]
    from . import static as _static  # type: ignore[no-redef]

#: ``analyze(data, start, judge, ...)``: one pickle stream (see ``static.analyze``).
analyze: Any = _static.analyze
#: ``scan_buffer(buf, judge, source=..., visitor=None)``: one whole input (see ``containers.scan_buffer``).
scan_buffer: Any = _containers.scan_buffer
#: The policy's verdicts for a scan, of the same build (see ``static.Judge``).
Judge: Any = _static.Judge


def scanner_kind() -> Kind:
    """``"compiled"`` when scans run the Cython-compiled scanner, ``"python"``
    when they run it interpreted."""
    return _kind


def skipped_reason() -> str | None:
    """Why the compiled scanner is not the one in use (None when it is)."""
    return _skipped
