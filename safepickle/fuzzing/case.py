"""One fuzz case: the bytes of a stream and the keyword arguments of the load."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["FuzzCase"]

ENCODINGS = ("ASCII", "latin1", "utf-8", "koi8_r")  # "bytes" is no codec: py2 strings stay bytes


@dataclass(frozen=True)
class FuzzCase:
    """A stream and how to load it.

    ``buffers`` is ``None`` for a load without ``buffers=``, else the bytes of
    each out-of-band buffer (each load gets fresh ``bytearray`` copies, so a
    load cannot change the case).  ``origin`` says where the case came from
    (generator, seed entry, case number); it is informative only.
    """

    data: bytes
    buffers: tuple[bytes, ...] | None = None
    encoding: str = "ASCII"
    errors: str = "strict"
    fix_imports: bool = True
    origin: str = field(default="", compare=False)

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``loads``/``load`` (and CPython's unpickler)."""
        kw: dict[str, Any] = {"fix_imports": self.fix_imports, "encoding": self.encoding, "errors": self.errors}
        if self.buffers is not None:
            kw["buffers"] = [bytearray(b) for b in self.buffers]
        return kw

    def with_data(self, data: bytes) -> FuzzCase:
        return replace(self, data=data)

    @property
    def sha(self) -> str:
        h = hashlib.sha256(self.data)
        h.update(repr((self.buffers, self.encoding, self.errors, self.fix_imports)).encode())
        return h.hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "data_hex": self.data.hex(),
            "buffers_hex": None if self.buffers is None else [b.hex() for b in self.buffers],
            "encoding": self.encoding,
            "errors": self.errors,
            "fix_imports": self.fix_imports,
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], data: bytes | None = None) -> FuzzCase:
        bufs = d.get("buffers_hex")
        return cls(
            data=bytes.fromhex(d["data_hex"]) if data is None else data,
            buffers=None if bufs is None else tuple(bytes.fromhex(b) for b in bufs),
            encoding=d.get("encoding", "ASCII"),
            errors=d.get("errors", "strict"),
            fix_imports=bool(d.get("fix_imports", True)),
            origin=d.get("origin", ""),
        )
