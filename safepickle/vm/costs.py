"""What a load charges against ``max_alloc_bytes``, in bytes, and how often
it checks the limits that are not checked at every opcode.

The VM (``engine.py``) charges these, and the scanner (``scan/static.py``)
charges the same, so that a scan reports the ``max_alloc_bytes`` refusals a
load would make.  Sizes are CPython 3.11's on 64-bit platforms: what
``sys.getsizeof`` gives for the empty containers, and about two references
for a dict or set entry (one byte of EMPTY_SET must not be 216 free bytes).
"""

from __future__ import annotations

__all__ = ["CHECK_EVERY", "REF", "ENTRY", "LIST", "DICT", "SET"]

#: Opcodes between two checks of ``max_ops``, ``max_seconds`` and of the
#: references held by the stack and the memo.
CHECK_EVERY = 4096
#: One reference (a stack slot, a memo entry, a list item).
REF = 8
#: One dict or set entry, or one item of a container built from the stack.
ENTRY = 16
#: An empty list (and the fixed part of any container built from the stack).
LIST = 56
#: An empty dict.
DICT = 64
#: An empty set.
SET = 216
