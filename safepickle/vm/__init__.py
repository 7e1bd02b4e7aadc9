"""The restricted VM: executes pickle opcodes, asking the policy for every
global, call, BUILD, persistent id and extension code.

:func:`engine_kind` says whether the VM loop runs compiled (Cython) or
interpreted (see ``_engine_select``)."""

from ._engine_select import engine_kind
from .load import load, loads

__all__ = ["engine_kind", "load", "loads"]
