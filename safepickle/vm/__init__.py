"""The restricted VM: executes pickle opcodes, asking the policy for every
global, call, BUILD, persistent id and extension code."""

from .load import load, loads

__all__ = ["load", "loads"]
