"""The payloads of the load benchmarks, built deterministically.

* ``records``: small JSON-like records (str, int, float, bool, None, short
  lists and a nested dict), ~100 bytes each pickled: 200k records ~20 MB.
* ``nested``: mixed nested containers (lists, tuples, dicts, sets, frozensets)
  that share sub-objects, so the memo and its back-references carry weight.
* ``numpy``: a dict of NumPy arrays of several dtypes, for protocol 5 in-band,
  protocol 5 out-of-band (``buffer_callback``) and protocol 2.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Payload", "records", "nested", "numpy_arrays", "make_payloads"]


@dataclass
class Payload:
    """One pickled benchmark input.  ``buffers`` holds the out-of-band
    buffers of a protocol 5 pickle written with a ``buffer_callback``."""

    name: str
    data: bytes
    policy: str = "data-only"
    buffers: list[Any] | None = None
    note: str = ""
    extra_bytes: int = field(default=0)  # out-of-band bytes, not in ``data``

    @property
    def mb(self) -> float:
        return (len(self.data) + self.extra_bytes) / 1e6


_WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def records(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n`` JSON-like records."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        out.append({
            "id": i,
            "name": f"user{i:07d}",
            "email": f"user{i}@example.org",
            "score": rnd.random() * 100,
            "active": rnd.random() < 0.5,
            "age": rnd.randrange(18, 90),
            "tags": [rnd.choice(_WORDS), rnd.choice(_WORDS)],
            "address": {"city": rnd.choice(_WORDS).title(), "zip": f"{rnd.randrange(100000):05d}"},
            "parent": None if i % 7 else i // 7,
        })
    return out


def nested(n: int, seed: int = 2) -> dict[str, Any]:
    """Mixed nested containers with ``n`` nodes, many references shared."""
    rnd = random.Random(seed)
    shared_strings = [f"label-{j}" for j in range(64)]
    shared_tuples = [(j, float(j) / 3, shared_strings[j % 64]) for j in range(256)]
    nodes: list[dict[str, Any]] = []
    for i in range(n):
        node: dict[str, Any] = {
            "id": i,
            "coords": (rnd.random(), rnd.random(), rnd.random()),
            "label": shared_strings[i % 64],
            "kind": shared_tuples[rnd.randrange(256)],
            "flags": {rnd.randrange(32) for _ in range(3)},
            "frozen": frozenset((i % 5, i % 11)),
            "children": [],
            "blob": b"\x00\x01" * (i % 4),
        }
        if nodes:
            parent = nodes[rnd.randrange(len(nodes))]
            parent["children"].append(node)  # shared: the node is also in ``nodes``
            node["parent_kind"] = parent["kind"]
        nodes.append(node)
    return {"nodes": nodes, "index": {i: nodes[i] for i in range(0, n, 10)},
            "pairs": [(nodes[i], nodes[(i * 7) % n]) for i in range(0, n, 5)]}


def numpy_arrays(total_mb: float, seed: int = 3) -> dict[str, Any]:
    """A dict of arrays of about ``total_mb`` MB in all, several dtypes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    each = int(total_mb * 1e6 / 8)  # bytes per array, 8 arrays
    return {
        "f64": rng.random(each // 8),
        "f32": rng.random(each // 4, dtype=np.float32),
        "i64": rng.integers(0, 1 << 40, each // 8),
        "i32": rng.integers(0, 1 << 30, each // 4, dtype=np.int32),
        "u8": rng.integers(0, 256, each, dtype=np.uint8),
        "c128_2d": (rng.random((each // 16 // 64, 64)) + 1j * rng.random((each // 16 // 64, 64))),
        "f64_fortran": np.asfortranarray(rng.random((each // 8 // 128, 128))),
        "bool": rng.random(each) < 0.5,
    }


def _numpy_payloads(total_mb: float, tag: str) -> list[Payload]:
    arrays = numpy_arrays(total_mb)
    out = [Payload(f"numpy{tag}-p5-inband", pickle.dumps(arrays, protocol=5), policy="numpy-only")]
    bufs: list[Any] = []
    data = pickle.dumps(arrays, protocol=5, buffer_callback=bufs.append)
    raw = [b.raw() for b in bufs]
    out.append(Payload(f"numpy{tag}-p5-oob", data, policy="numpy-only", buffers=raw,
                       extra_bytes=sum(m.nbytes for m in raw), note="out-of-band"))
    out.append(Payload(f"numpy{tag}-p2", pickle.dumps(arrays, protocol=2), policy="numpy-only"))
    return out


def make_payloads(quick: bool = False, with_numpy: bool = True) -> list[Payload]:
    """The payloads of one benchmark run (``quick``: about a tenth of the size)."""
    scale = 10 if quick else 1
    out = [
        Payload("records", pickle.dumps(records(200_000 // scale), protocol=5)),
        Payload("nested", pickle.dumps(nested(150_000 // scale), protocol=5)),
    ]
    if with_numpy:
        out += _numpy_payloads(200 / scale, "")
    return out
