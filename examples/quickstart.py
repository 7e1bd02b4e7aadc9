"""The quick start: load a bundled upload under ``numpy-only``, then watch a
hostile one get refused.  Run from the repo root: ``python examples/quickstart.py``."""

from __future__ import annotations

from pathlib import Path

import safepickle

UPLOADS = Path(__file__).resolve().parent / "uploads"


def main() -> int:
    with open(UPLOADS / "features.pkl", "rb") as f:
        features = safepickle.load(f, policy="numpy-only")
    print("features.pkl loaded under numpy-only:")
    for key, value in features.items():
        shape = getattr(value, "shape", None)
        dtype = getattr(value, "dtype", None)
        print(f"  {key:8} {type(value).__name__:10} {'' if shape is None else shape} {'' if dtype is None else dtype}")
    try:
        safepickle.loads((UPLOADS / "evil.pkl").read_bytes(), policy="numpy-only")
    except safepickle.ForbiddenGlobal as e:
        print(f"evil.pkl refused: {type(e).__name__}: {e}")
        return 0
    print("evil.pkl was NOT refused")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
