"""Which build of the VM loop runs: compiled or interpreted.

There is one VM, ``safepickle/vm/engine.py``.  When the package was built
with a C compiler, ``setup.py`` also compiled that same file with Cython into
the extension ``safepickle.vm._engine_c``, and ``actions.py`` into
``_actions_c``.  :func:`safepickle._compiled.choose` picks the compiled pair
when both were compiled from the sources next to them, the interpreted
``engine`` otherwise (or with ``SAFEPICKLE_PURE_PYTHON=1``).

:func:`engine_kind` says which one runs.
"""

from __future__ import annotations

from typing import Any

from .._compiled import PURE_ENV, Kind, choose

__all__ = ["run", "engine_kind", "skipped_reason", "PURE_ENV"]

EngineKind = Kind

# compiled module -> the interpreted module it must have been compiled from
_PAIRS = (("_engine_c", "engine"), ("_actions_c", "actions"))

_kind, _skipped = choose(__package__, _PAIRS, "VM")
if _kind == "compiled":
    from . import _engine_c as _module
else:
    from . import engine as _module  # type: ignore[no-redef]

#: ``run(data, pos, ctx, feeder=None)`` of the chosen build (see ``engine.run``).
run: Any = _module.run


def engine_kind() -> EngineKind:
    """``"compiled"`` when loads run the Cython-compiled VM loop, ``"python"``
    when they run it interpreted."""
    return _kind


def skipped_reason() -> str | None:
    """Why the compiled VM is not the one in use (None when it is)."""
    return _skipped
