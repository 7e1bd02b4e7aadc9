"""Which build of the VM loop runs: compiled or interpreted.

There is one VM, ``safepickle/vm/engine.py``.  When the package was built
with a C compiler, ``setup.py`` also compiled that same file with Cython into
the extension ``safepickle.vm._engine_c`` (another module name, so both stay
importable side by side).  This module picks one at import time:

* the interpreted ``engine`` when the environment variable
  ``SAFEPICKLE_PURE_PYTHON`` is ``1`` (for debugging and for running the test
  suite against both builds);
* else the compiled ``_engine_c`` when it imports and it and the compiled
  ``_actions_c`` it uses were compiled from the very ``engine.py`` and
  ``actions.py`` next to them (their SHA-256 match);
* else the interpreted ``engine``.  A compiled module built from another
  version of the source (a stale in-place build) is never run: it is
  skipped with a :class:`RuntimeWarning`.

:func:`engine_kind` says which one runs.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from . import engine as _pure

__all__ = ["run", "engine_kind", "skipped_reason", "PURE_ENV"]

PURE_ENV = "SAFEPICKLE_PURE_PYTHON"

EngineKind = Literal["compiled", "python"]


# compiled module -> the interpreted module it must have been compiled from
_PAIRS = (("_engine_c", "engine"), ("_actions_c", "actions"))


def _digest(module: ModuleType) -> str | None:
    """SHA-256 of an interpreted module's source, or None if it is not on disk."""
    origin = getattr(module, "__file__", None)
    if not origin or not origin.endswith(".py"):
        return None
    try:
        return hashlib.sha256(Path(origin).read_bytes()).hexdigest()
    except OSError:
        return None


def _choose() -> tuple[ModuleType, EngineKind, str | None]:
    if os.environ.get(PURE_ENV) == "1":
        return _pure, "python", f"{PURE_ENV}=1"
    try:
        compiled = importlib.import_module("._engine_c", __package__)
    except ImportError as e:
        return _pure, "python", f"the compiled engine is not installed ({e})"
    for compiled_name, source_name in _PAIRS:
        built = importlib.import_module(f".{compiled_name}", __package__)
        current = _digest(importlib.import_module(f".{source_name}", __package__))
        if current is not None and getattr(built, "_COMPILED_FROM_SHA256", None) != current:
            reason = (f"{built.__file__} was compiled from another version of safepickle/vm/{source_name}.py; "
                      "rebuild it (pip install ., or python setup.py build_ext --inplace)")
            warnings.warn(f"safepickle: {reason}; running the interpreted VM", RuntimeWarning, stacklevel=2)
            return _pure, "python", reason
    return compiled, "compiled", None


_module, _kind, _skipped = _choose()

#: ``run(data, pos, ctx, feeder=None)`` of the chosen build (see ``engine.run``).
run: Any = _module.run


def engine_kind() -> EngineKind:
    """``"compiled"`` when loads run the Cython-compiled VM loop, ``"python"``
    when they run it interpreted."""
    return _kind


def skipped_reason() -> str | None:
    """Why the compiled VM is not the one in use (None when it is)."""
    return _skipped
