"""The built-in policies: ``names()`` and ``path(name)``.

The files live in the repository's top-level ``policies/`` folder, which the
wheel installs as the package ``safepickle._policies``.  Both layouts are
found: the installed package first, then the checkout next to this package
(editable installs, ``PYTHONPATH=.``).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["names", "path", "folder"]

_SUFFIX = ".toml"


def folder() -> Path:
    """The folder that holds the built-in policy files."""
    try:
        root = importlib.resources.files("safepickle._policies")
    except ModuleNotFoundError:
        root = None
    if root is not None:
        # A regular package gives a Path; a namespace package a
        # MultiplexedPath whose children are Paths.  Zipped installs are not
        # supported (policy files may name relative parents).
        for child in root.iterdir():
            if isinstance(child, Path) and child.suffix == _SUFFIX:
                return child.parent
    return Path(__file__).resolve().parent.parent / "policies"


def names() -> list[str]:
    """Names of the built-in policies, sorted."""
    return sorted(p.stem for p in folder().glob(f"*{_SUFFIX}"))


def path(name: str) -> Path:
    """The file of built-in policy ``name``; KeyError when there is none."""
    if name not in names():
        raise KeyError(name)
    return folder() / f"{name}{_SUFFIX}"
