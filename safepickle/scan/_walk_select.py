"""Which build of the scanner's walk runs: compiled or interpreted.

The walk is ``safepickle/scan/static.py``.  When the package was built with
a C compiler, ``setup.py`` also compiled that same file with Cython into the
extension ``safepickle.scan._static_c``.  :func:`safepickle._compiled.choose`
picks it when it was compiled from the ``static.py`` next to it, the
interpreted module otherwise (or with ``SAFEPICKLE_PURE_PYTHON=1``).

:func:`walker_kind` says which one runs.
"""

from __future__ import annotations

from typing import Any

from .._compiled import Kind, choose
from . import static as _written

__all__ = ["analyze", "walker_kind", "skipped_reason"]

_module, _kind, _skipped = choose(__package__, (("_static_c", "static"),), _written, "scanner")

#: ``analyze(data, start, judge, ...)`` of the chosen build (see ``static.analyze``).
analyze: Any = _module.analyze


def walker_kind() -> Kind:
    """``"compiled"`` when scans run the Cython-compiled walk, ``"python"``
    when they run it interpreted."""
    return _kind


def skipped_reason() -> str | None:
    """Why the compiled walk is not the one in use (None when it is)."""
    return _skipped
