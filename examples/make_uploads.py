"""Writes the two bundled example uploads (run from the repo root:
``python examples/make_uploads.py``).

* ``uploads/features.pkl``: what a data team sends, a dict of NumPy arrays
  and metadata, pickled at protocol 5 by NumPy.
* ``uploads/evil.pkl``: a classic attack, ``os.system("echo pwned > ...")``
  through GLOBAL + REDUCE, written at opcode level.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent / "uploads"


def features() -> dict:
    import numpy as np

    rng = np.random.default_rng(20261127)
    return {
        "name": "weekly-features",
        "matrix": rng.standard_normal((64, 16)).astype(np.float32),
        "labels": rng.integers(0, 4, size=64, dtype=np.int64),
        "columns": np.array([f"f{i}" for i in range(16)]),
        "created": np.datetime64("2026-11-27"),
    }


def evil() -> bytes:
    command = b"echo pwned > /tmp/safepickle-pwned"
    return (b"\x80\x02cos\nsystem\n" + b"X" + struct.pack("<I", len(command)) + command + b"\x85R.")


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    (HERE / "features.pkl").write_bytes(pickle.dumps(features(), protocol=5))
    (HERE / "evil.pkl").write_bytes(evil())
    print("wrote", *sorted(p.name for p in HERE.iterdir()))
