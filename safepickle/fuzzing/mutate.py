"""The byte-level generator: mutations of a seed corpus.

Seeds are the files of a corpus folder (``fuzz/corpus/``: valid pickles of
every protocol of the built-in policies' types, and hostile streams).  Each
case takes one seed and applies one to four mutations: flip a bit, set a byte
to an interesting value (0, 0xff, opcode bytes...), insert, delete or
duplicate a run, overwrite a 1/4/8-byte field with a boundary value (lengths,
memo indices), splice with another seed, truncate.  Half of the positions are
opcode starts (from the codec's decoder), where a mutation changes the
program rather than a payload.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

from ..codec.decode import decode
from ..codec.opcodes import OPCODES
from ..errors import MalformedPickle
from .case import FuzzCase
from .grammar import Chooser

__all__ = ["Seed", "load_corpus", "mutate_case"]

_OPCODE_BYTES = bytes(op.code for op in OPCODES)
_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x28, 0x2E)
_FIELDS = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**62, 2**63,
           2**64 - 1)
MAX_CASE = 1 << 20


class Seed:
    """One corpus entry: its bytes, name and the offsets where its opcodes start."""

    __slots__ = ("name", "data", "starts")

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data
        starts = []
        try:
            for op in decode(data):
                starts.append(op.offset)
        except MalformedPickle:
            pass
        self.starts = starts or [0]


def load_corpus(folders: Sequence[str | Path]) -> list[Seed]:
    """Every regular file of the folders (sorted, so runs are reproducible)."""
    seeds = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"corpus folder {root} does not exist")
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            if path.suffix in (".json", ".md", ".txt", ".py"):
                continue
            seeds.append(Seed(str(path.relative_to(root)), path.read_bytes()))
    return seeds


def _position(ch: Chooser, seed: Seed, data: bytearray) -> int:
    if data and ch.chance(0.5):
        starts = [s for s in seed.starts if s < len(data)]
        if starts:
            return ch.pick(starts)
    return ch.integer(0, max(0, len(data) - 1))


def _mutate_once(ch: Chooser, seed: Seed, data: bytearray, seeds: Sequence[Seed]) -> bytearray:
    kind = ch.integer(0, 10)
    pos = _position(ch, seed, data)
    if kind == 0 and data:  # flip a bit
        data[pos] ^= 1 << ch.integer(0, 7)
    elif kind == 1 and data:  # an interesting byte, or an opcode byte
        data[pos] = ch.pick(_INTERESTING_BYTES) if ch.chance(0.4) else ch.pick(_OPCODE_BYTES)
    elif kind == 2:  # insert random bytes or opcode bytes
        n = ch.integer(1, 8)
        blob = ch.blob(n) if ch.chance(0.5) else bytes(ch.pick(_OPCODE_BYTES) for _ in range(n))
        data[pos:pos] = blob
    elif kind == 3 and data:  # delete a run
        del data[pos:pos + ch.integer(1, 16)]
    elif kind == 4 and data:  # duplicate a run
        run = data[pos:pos + ch.integer(1, 32)]
        at = ch.integer(0, len(data))
        data[at:at] = run
    elif kind == 5 and data:  # overwrite a length/index field after an opcode byte
        width = ch.pick((1, 2, 4, 8))
        value = ch.pick(_FIELDS) % (1 << (8 * width))
        field = value.to_bytes(width, "little")
        at = min(pos + 1, len(data))
        data[at:at + width] = field
    elif kind == 6 and seeds:  # splice: our prefix, another seed's suffix
        other = ch.pick(seeds).data
        cut_a = ch.integer(0, len(data))
        cut_b = ch.integer(0, len(other))
        data = data[:cut_a] + bytearray(other[cut_b:])
    elif kind == 7 and data:  # truncate
        del data[ch.integer(0, len(data) - 1):]
    elif kind == 8:  # repeat a run many times (nesting, memo traffic)
        run = data[pos:pos + ch.integer(1, 4)] or bytearray(b"(")
        data[pos:pos] = run * ch.pick((10, 100, 1000, 5000))
    elif kind == 9 and data:  # an 8-byte length after a FRAME/BINBYTES8-like opcode
        data[pos:pos] = bytes((ch.pick((0x95, 0x8E, 0x8D, 0x96)),)) + struct.pack("<Q", ch.pick(_FIELDS))
    else:  # drop the final STOP
        if data.endswith(b"."):
            del data[-1]
    if len(data) > MAX_CASE:
        del data[MAX_CASE:]
    return data


def mutate_case(ch: Chooser, seeds: Sequence[Seed], origin: str = "bytes") -> FuzzCase:
    """A mutated seed as a fuzz case (with out-of-band buffers now and then)."""
    seed = ch.pick(seeds)
    data = bytearray(seed.data)
    for _ in range(ch.pick((1, 1, 1, 2, 2, 3, 4))):
        data = _mutate_once(ch, seed, data, seeds)
    buffers = None
    if b"\x97" in data and ch.chance(0.7):
        buffers = tuple(ch.blob(ch.integer(0, 64)) for _ in range(ch.integer(0, 4)))
    return FuzzCase(
        data=bytes(data),
        buffers=buffers,
        encoding=ch.pick(("ASCII", "ASCII", "ASCII", "latin1", "bytes")),
        fix_imports=ch.chance(0.9),
        origin=f"{origin}:{seed.name}",
    )
