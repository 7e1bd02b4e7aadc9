"""Choosing between a module as written and its Cython-compiled copy.

``setup.py`` compiles a few hot modules (the VM loop, the scanner's walk)
with Cython into extensions under other names, so that both stay
importable side by side.  :func:`choose` picks one at import time:

* the module as written when the environment variable
  ``SAFEPICKLE_PURE_PYTHON`` is ``1`` (for debugging, and for running the
  test suite against both builds);
* else the compiled copies, when all of them import and each was compiled
  from the very source file next to it (its SHA-256 matches): they import
  each other, so they are taken together or not at all;
* else the module as written.  A compiled copy built from another version of
  the source (a stale in-place build) is never run: it is skipped with a
  :class:`RuntimeWarning`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Literal

__all__ = ["PURE_ENV", "Kind", "choose"]

PURE_ENV = "SAFEPICKLE_PURE_PYTHON"

Kind = Literal["compiled", "python"]


def _digest(module: ModuleType) -> str | None:
    """SHA-256 of a module's source, or None if it is not on disk."""
    origin = getattr(module, "__file__", None)
    if not origin or not origin.endswith(".py"):
        return None
    try:
        return hashlib.sha256(Path(origin).read_bytes()).hexdigest()
    except OSError:
        return None


def choose(package: str, pairs: tuple[tuple[str, str], ...], what: str) -> tuple[Kind, str | None]:
    """``("compiled", None)`` when every compiled module of ``pairs``
    (``(compiled name, source name)`` within ``package``) imports and was
    compiled from the source beside it; else ``("python", why not)``.
    ``what`` names the build in the warning ("VM", "scanner")."""
    if os.environ.get(PURE_ENV) == "1":
        return "python", f"{PURE_ENV}=1"
    for compiled_name, source_name in pairs:
        try:
            built = importlib.import_module(f".{compiled_name}", package)
        except ImportError as e:
            return "python", f"the compiled {what} is not installed ({e})"
        current = _digest(importlib.import_module(f".{source_name}", package))
        if current is not None and getattr(built, "_COMPILED_FROM_SHA256", None) != current:
            where = package.replace(".", "/")
            reason = (f"{built.__file__} was compiled from another version of {where}/{source_name}.py; "
                      "rebuild it (pip install ., or python setup.py build_ext --inplace)")
            warnings.warn(f"safepickle: {reason}; running the interpreted {what}", RuntimeWarning, stacklevel=2)
            return "python", reason
    return "compiled", None
