"""Pausing the cyclic garbage collector while a load runs.

A load allocates many containers, and each allocation can trigger a GC pass
over everything allocated so far: on container-heavy pickles most of the
time of ``pickle.loads`` itself is GC passes.  Nothing a load builds is
garbage until the load ends, so pausing the collector for the load is safe.
The switch is process-wide (``gc.disable``), so overlapping loads in several
threads share one counter: the collector is re-enabled when the last of them
ends, and only if it was enabled when the first began.  Other threads run
without cyclic collection meanwhile (reference counting still frees their
acyclic garbage).
"""

from __future__ import annotations

import gc
import threading

__all__ = ["GCPause"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False


def _age_young_objects() -> None:
    """Move what the load allocated out of the young generations.

    Otherwise the first allocation after ``gc.enable()`` runs a young
    collection over every object the load built (all still young, since the
    collector was off): on a 15 MB pickle of small containers that pass costs
    more than the load.  ``freeze()`` + ``unfreeze()`` moves every tracked
    object to the oldest generation without scanning.  Skipped when the
    application froze objects itself (``unfreeze`` would thaw them too).
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


class GCPause:
    """Context manager: the collector is off inside, restored on every exit."""

    __slots__ = ("active",)

    def __init__(self, active: bool = True) -> None:
        self.active = active

    def __enter__(self) -> GCPause:
        global _depth, _was_enabled
        if self.active:
            with _lock:
                if _depth == 0:
                    _was_enabled = gc.isenabled()
                    gc.disable()
                _depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        global _depth
        if self.active:
            with _lock:
                _depth -= 1
                if _depth == 0 and _was_enabled:
                    _age_young_objects()
                    gc.enable()
