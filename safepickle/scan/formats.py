"""Telling formats apart by their content, and the small readers of each.

Never by file name or extension: :func:`sniff` looks at the leading bytes
only.  :func:`npy_header` reads a NumPy ``.npy`` header the way
``numpy.lib.format`` does (a Python literal, read with
:func:`ast.literal_eval`, which evaluates nothing); :func:`decompress` undoes
the compressions joblib writes, in bounded steps.
"""

from __future__ import annotations

import ast
import bz2
import lzma
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from .zipread import OUTPUT_STEP, TooBig

__all__ = ["sniff", "MAGICS", "NpyHeader", "npy_header", "decompress", "COMPRESSED", "describe_bytes"]

NPY_MAGIC = b"\x93NUMPY"
COMPRESSED = ("gzip", "bz2", "xz", "lzma", "zlib", "joblib-zfile", "lz4")

# Most bytes a .npy header may have before the scanner refuses to parse it
# (NumPy's own default for untrusted files is 10000).
NPY_HEADER_MAX = 1 << 20


# Leading bytes of each container format, in the order they are tried.  zlib
# (0x78 and a second byte that makes the pair a multiple of 31) is checked
# apart; tar's magic is not at the start.
MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (NPY_MAGIC, "npy"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x5d\x00\x00", "lzma"),
    (b"ZF0x", "joblib-zfile"),
    (b"\x78", "zlib"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
# A byte no magic starts with (every pickle's first byte, PROTO 0x80, among
# them) rules out all but tar at once.
_FIRST_BYTES = frozenset(magic[0] for magic, _kind in MAGICS)


def sniff(buf: Any, start: int = 0) -> str | None:
    """The container format the bytes at ``start`` begin with, or None
    (a pickle, or something unknown)."""
    if start < len(buf) and buf[start] in _FIRST_BYTES:
        head = bytes(buf[start:start + 8])
        for magic, kind in MAGICS:
            if head.startswith(magic):
                if kind != "zlib":
                    return kind
                if len(head) >= 2 and (head[0] << 8 | head[1]) % 31 == 0:
                    return kind
    if len(buf) - start >= 512 and bytes(buf[start + 257:start + 262]) == b"ustar":
        return "tar"
    return None


@dataclass(slots=True)
class NpyHeader:
    version: tuple[int, int]
    data_offset: int
    descr: Any
    shape: Any
    objects: bool | None  # True: object dtype; False: plain data; None: cannot tell


# A descr string that certainly holds no Python objects.
_PLAIN_DESCR = re.compile(r"[<>|=]?(?:\?|b1|[biu][1248]|f(?:2|4|8|16)|c(?:8|16|32)|[SUVa][0-9]+|"
                          r"[mM]8(?:\[[0-9]*[a-zA-Z]+\])?)\Z")


def _descr_objects(descr: Any) -> bool | None:
    """Does a NumPy ``descr`` hold objects?  Iterative walk of the forms
    ``descr_to_dtype`` accepts; None for a form it does not know."""
    todo = [descr]
    seen = 0
    while todo:
        d = todo.pop()
        seen += 1
        if seen > 100_000:
            return None
        if isinstance(d, str):
            if not _PLAIN_DESCR.match(d):
                return True if d.lstrip("<>|=")[:1] in ("O", "o") else None
        elif isinstance(d, tuple) and len(d) == 2:  # (descr, shape): a subarray
            todo.append(d[0])
        elif isinstance(d, list):
            for f in d:
                if not isinstance(f, tuple) or len(f) not in (2, 3):
                    return None
                todo.append(f[1])
        else:
            return None
    return False


def npy_header(buf: Any, start: int = 0) -> NpyHeader | str:
    """The header of the ``.npy`` data at ``start``, or why it is unreadable."""
    n = len(buf)
    if n - start < 10:
        return "truncated .npy header"
    major, minor = buf[start + 6], buf[start + 7]
    if major == 1:
        hlen = struct.unpack_from("<H", buf, start + 8)[0]
        pos = start + 10
    elif major in (2, 3):
        if n - start < 12:
            return "truncated .npy header"
        hlen = struct.unpack_from("<I", buf, start + 8)[0]
        pos = start + 12
    else:
        return f"unknown .npy format version {major}.{minor}"
    if hlen > NPY_HEADER_MAX:
        return f".npy header of {hlen} bytes is larger than the scanner reads ({NPY_HEADER_MAX})"
    if pos + hlen > n:
        return ".npy header runs past the end of the data"
    raw = bytes(buf[pos:pos + hlen])
    try:
        text = raw.decode("utf-8" if major == 3 else "latin1")
        d = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, UnicodeDecodeError) as e:
        return f".npy header is not a Python literal: {type(e).__name__}"
    if not isinstance(d, dict) or "descr" not in d or "shape" not in d:
        return ".npy header is not a dict with descr and shape"
    return NpyHeader((major, minor), pos + hlen, d["descr"], d["shape"], _descr_objects(d["descr"]))


def decompress(kind: str, buf: Any, start: int, limit: int) -> bytearray:
    """The decompressed bytes of the ``kind`` stream at ``start``: at most
    ``limit`` bytes (:class:`TooBig` beyond); ValueError when the data is
    broken or the codec is not available.  Concatenated streams are read
    one after another, as ``gzip``/``bz2``/``lzma`` readers do.  The output
    grows in steps of at most :data:`~safepickle.scan.zipread.OUTPUT_STEP`
    bytes and is never copied, so the peak stays near ``limit``."""
    data = memoryview(buf)[start:] if not isinstance(buf, bytes) else buf[start:]
    if kind == "joblib-zfile":  # b"ZF" + hex length + zlib data (joblib < 0.10)
        raw = bytes(data[:64])
        m = re.match(rb"ZF0x([0-9a-fA-F]+) ?", raw)
        if not m:
            return _fail("joblib ZF header unreadable")
        data = data[m.end():]
        kind = "zlib"
    if kind == "lz4":
        try:
            import lz4.frame  # optional: joblib's lz4 support needs it too
        except ImportError:
            return _fail("lz4-compressed data needs the lz4 package to be scanned")
        make = lz4.frame.LZ4FrameDecompressor
    elif kind == "gzip":
        def make():
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif kind == "zlib":
        def make():
            return zlib.decompressobj(zlib.MAX_WBITS)
    elif kind == "bz2":
        make = bz2.BZ2Decompressor
    elif kind in ("xz", "lzma"):
        fmt = lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE

        def make():
            return lzma.LZMADecompressor(format=fmt)
    else:
        return _fail(f"unknown compression {kind}")
    out = bytearray()
    rest = bytes(data)
    try:
        while rest:
            d = make()
            _run(d, rest, out, limit)
            if not getattr(d, "eof", True):
                return _fail(f"{kind} data ends early")
            rest = d.unused_data
            if kind in ("zlib",) or not rest.strip(b"\x00"):
                break
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
        return _fail(f"{kind} data is broken: {e}")
    return out


def _run(d: Any, data: bytes, out: bytearray, limit: int) -> None:
    """Feed ``data`` to decompressor ``d``, appending to ``out``, which may
    not grow past ``limit`` bytes (:class:`TooBig`)."""
    chunk = 1 << 20
    for i in range(0, len(data), chunk):
        part = data[i:i + chunk]
        while True:
            room = min(limit + 1 - len(out), OUTPUT_STEP)
            if isinstance(d, bz2.BZ2Decompressor | lzma.LZMADecompressor):
                out += d.decompress(part, max_length=room)
                if len(out) > limit:
                    raise TooBig(len(out))
                if d.eof or d.needs_input:
                    break
                part = b""
            elif hasattr(d, "unconsumed_tail"):  # zlib
                got = d.decompress(part, room)
                out += got
                if len(out) > limit:
                    raise TooBig(len(out))
                # a full step may leave output pending inside zlib, even with no input left
                if d.eof or (not d.unconsumed_tail and len(got) < room):
                    break
                part = d.unconsumed_tail
            else:  # lz4: no output bound per call (at most ~255 bytes a byte of its 1 MB input); check after
                out += d.decompress(part)
                if len(out) > limit:
                    raise TooBig(len(out))
                break
        if getattr(d, "eof", False):
            break


def _fail(message: str) -> bytes:
    raise ValueError(message)


def describe_bytes(buf: Any, start: int, stop: int) -> str:
    """A few words on what the bytes from ``start`` look like, for notes."""
    kind = sniff(buf, start)
    if kind:
        return kind
    head = bytes(buf[start:min(stop, start + 64)])
    if not head.strip(b"\x00"):
        return "zero bytes"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "text"
    return "binary data"
