"""Shrinking a failing case to a small reproducer.

Delta debugging on the bytes: remove chunks of halving sizes while the case
still fails *the same way* (the same finding signature: oracle, kind and
exception type), then drop the out-of-band buffers and reset the keyword
arguments where that keeps the failure.  Bounded by a number of tries and a
time budget; the best case so far is always returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from .case import FuzzCase

__all__ = ["minimize"]


def minimize(case: FuzzCase, still_fails: Callable[[FuzzCase], bool], *, seconds: float = 20.0,
             max_tries: int = 4000) -> FuzzCase:
    """The smallest case found for which ``still_fails`` stays true."""
    deadline = time.monotonic() + seconds
    tries = 0

    def attempt(candidate: FuzzCase) -> bool:
        nonlocal tries
        if tries >= max_tries or time.monotonic() > deadline:
            return False
        tries += 1
        return still_fails(candidate)

    best = case
    data = best.data
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and tries < max_tries and time.monotonic() < deadline:
        i = 0
        progressed = False
        while i < len(data):
            candidate = data[:i] + data[i + chunk:]
            if candidate != data and attempt(best.with_data(candidate)):
                data = candidate
                best = best.with_data(data)
                progressed = True
            else:
                i += chunk
        if not progressed:
            if chunk == 1:
                break
            chunk //= 2
    for simplify in (
        lambda c: replace(c, buffers=None),
        lambda c: replace(c, buffers=c.buffers[:-1] if c.buffers else None),
        lambda c: replace(c, encoding="ASCII"),
        lambda c: replace(c, errors="strict"),
        lambda c: replace(c, fix_imports=True),
    ):
        simpler = simplify(best)
        if simpler != best and attempt(simpler):
            best = simpler
    return best
