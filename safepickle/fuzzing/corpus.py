"""Writing the seed corpus (``python -m fuzz corpus``).

Two kinds of seeds: ``sample-<value>-p<N>.pickle``, every sample value of the
built-in policies' types (:mod:`.samples`) pickled at protocols 0-5 (NumPy
ones also out-of-band at 5), and ``hostile-<name>.pickle``, every stream of
the hostile corpus of the test suite (``tests/hostile_corpus.py``, when the
repository's ``tests`` package is importable).  The folder's files are
rewritten from scratch; nothing else is kept, so the corpus always matches
the samples and the hostile corpus.
"""

from __future__ import annotations

import re
from pathlib import Path

from .samples import pickled_samples

__all__ = ["write_corpus", "hostile_streams"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def hostile_streams() -> list[tuple[str, bytes]]:
    """``(name, data)`` of the test suite's hostile corpus ([] when absent)."""
    try:
        from tests.hostile_corpus import CASES
    except Exception:
        return []
    return [(c.name, c.data) for c in CASES]


def write_corpus(folder: str | Path, include_hostile: bool = True, max_size: int = 64 << 10) -> list[Path]:
    """(Re)write the seed corpus in ``folder``; return the files written.
    Streams larger than ``max_size`` (some hostile ones are megabytes of
    MARKs) are left out: the mutators make those shapes themselves."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("*.pickle"):
        old.unlink()
    written = []
    for sample in pickled_samples():
        path = root / f"sample-{_SAFE.sub('_', sample.name)}-p{sample.proto}.pickle"
        path.write_bytes(sample.data)
        written.append(path)
    if include_hostile:
        for name, data in hostile_streams():
            if len(data) > max_size:
                continue
            path = root / f"hostile-{_SAFE.sub('_', name)}.pickle"
            path.write_bytes(data)
            written.append(path)
    return written
