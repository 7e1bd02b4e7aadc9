"""Stand-in for the ``cython`` module when Cython is not installed at run time.

``engine.py`` carries Cython pure-mode annotations (``@cython.locals``,
``cython.compiled``, C type names).  Cython is only a build requirement, so
an installed package may run the interpreted engine without it: this module
gives those names their interpreted meaning (decorators that do nothing,
``compiled = False``), exactly what Cython's own shadow module does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["cython"]


def _keep(func: Callable[..., Any]) -> Callable[..., Any]:
    return func


class _Shim:
    """The subset of Cython's pure-mode API that the engine uses."""

    compiled = False

    # C types named in annotations: interpreted, every integer is a Python int.
    Py_ssize_t = int
    longlong = int
    int = int
    uchar = int
    bint = bool
    double = float
    p_const_char = bytes  # a pointer into the data, in the compiled build
    p_const_uchar = bytes
    NULL = None

    @staticmethod
    def locals(**_types: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return _keep

    @staticmethod
    def cfunc(func: Callable[..., Any]) -> Callable[..., Any]:
        return func

    @staticmethod
    def cclass(cls: type) -> type:
        return cls

    @staticmethod
    def inline(func: Callable[..., Any]) -> Callable[..., Any]:
        return func

    @staticmethod
    def exceptval(*_args: Any, **_kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return _keep

    @staticmethod
    def boundscheck(_on: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return _keep

    @staticmethod
    def wraparound(_on: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return _keep

    @staticmethod
    def cast(_type: Any, value: Any) -> Any:
        return value

    @staticmethod
    def declare(_type: Any, value: Any = None) -> Any:
        return value


cython = _Shim()
