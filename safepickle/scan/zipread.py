"""A lenient, in-memory zip reader for scanning (never extracts to disk).

PyTorch reads checkpoints with miniz, which is more lenient than Python's
:mod:`zipfile`: it takes each member's size and local-header offset from the
central directory, skips the local header by the lengths the local header
itself gives, checks no CRC and never compares the local name with the
central one.  A scanner built on :mod:`zipfile` rejects or misreads archives
that ``torch.load`` opens, which is how scanners get bypassed.  This reader
takes the lenient path everywhere, so it sees every member any of these
readers would see:

* the end-of-central-directory record is searched backwards from the end
  (archive comments included), with ZIP64 records honoured;
* data prepended to the archive is allowed for (as :mod:`zipfile` does);
* CRCs are not checked; flags other than encryption are ignored; a local
  name that differs from the central one is read anyway and noted;
* when the central directory is missing or broken, members are found by
  walking the local headers from the start instead.

Members are read only as far as asked (``read(entry, limit)``): stored data
is a zero-copy view, deflated data is inflated in bounded steps, so a zip
bomb costs no more than the limit.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ZipEntry", "ZipArchive", "ZipError", "TooBig", "find_end_record", "read_archive", "read"]

_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_LOC64 = b"PK\x06\x07"
_CDH = b"PK\x01\x02"
_LFH = b"PK\x03\x04"
_EOCD_LEN = 22
_MAX_COMMENT = 0xFFFF

_EOCD_S = struct.Struct("<4sHHHHIIH")
_EOCD64_S = struct.Struct("<4sQHHIIQQQQ")
_LOC64_S = struct.Struct("<4sIQI")
_CDH_S = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LFH_S = struct.Struct("<4sHHHHHIIIHH")


class ZipError(Exception):
    """The bytes are not a readable zip archive."""


class TooBig(Exception):
    """A member holds more than the limit it was read with."""


@dataclass(slots=True)
class ZipEntry:
    name: str
    method: int
    flags: int
    compressed_size: int
    size: int
    header_offset: int  # absolute offset of the local header in the buffer
    data_offset: int = -1  # absolute offset of the data, -1 when the local header is unreadable
    problems: list[str] = field(default_factory=list)

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & 1)


@dataclass(slots=True)
class ZipArchive:
    start: int  # offset of the archive in the buffer (after prepended data)
    entries: list[ZipEntry]
    problems: list[str]
    from_local_headers: bool = False


def find_end_record(buf: Any) -> int:
    """Offset of the end-of-central-directory record, searched backwards
    from the end as every reader does, or -1."""
    n = len(buf)
    lo = max(0, n - _EOCD_LEN - _MAX_COMMENT)
    tail = bytes(buf[lo:n])
    i = tail.rfind(_EOCD)
    while i >= 0:
        if len(tail) - i >= _EOCD_LEN:
            return lo + i
        i = tail.rfind(_EOCD, 0, i)
    return -1


def _name(raw: bytes, flags: int) -> str:
    if flags & 0x800:
        return raw.decode("utf-8", "replace")
    return raw.decode("cp437")


def _zip64_extra(extra: bytes, size: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, ln = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + ln]
        if tag == 1:
            vals = [struct.unpack_from("<Q", body, i)[0] for i in range(0, len(body) - 7, 8)]
            if size == 0xFFFFFFFF and vals:
                size = vals.pop(0)
            if csize == 0xFFFFFFFF and vals:
                csize = vals.pop(0)
            if offset == 0xFFFFFFFF and vals:
                offset = vals.pop(0)
            break
        pos += 4 + ln
    return size, csize, offset


def read_archive(buf: Any, *, max_entries: int, end_record: int | None = None) -> ZipArchive:
    """The members of the zip archive in ``buf``.  Raises :class:`ZipError`
    when neither the central directory nor any local header can be read."""
    eocd = find_end_record(buf) if end_record is None else end_record
    if eocd >= 0:
        try:
            return _from_central_directory(buf, eocd, max_entries)
        except ZipError as e:
            problem = f"central directory unreadable ({e}); members found from local headers"
    else:
        problem = "no end-of-central-directory record; members found from local headers"
    archive = _from_local_headers(buf, max_entries)
    archive.problems.insert(0, problem)
    return archive


def _from_central_directory(buf: Any, eocd: int, max_entries: int) -> ZipArchive:
    n = len(buf)
    _sig, _disk, _cd_disk, _n_disk, count, cd_size, cd_offset, _clen = _EOCD_S.unpack_from(buf, eocd)
    problems: list[str] = []
    cd_end = eocd  # where the central directory should end
    loc = eocd - _LOC64_S.size
    if loc >= 0 and bytes(buf[loc:loc + 4]) == _LOC64:
        _s, _d, _rec, _t = _LOC64_S.unpack_from(buf, loc)
        # The ZIP64 end record sits just before its locator.
        rec_pos = loc - _EOCD64_S.size
        if rec_pos >= 0 and bytes(buf[rec_pos:rec_pos + 4]) == _EOCD64:
            vals = _EOCD64_S.unpack_from(buf, rec_pos)
            count, cd_size, cd_offset = vals[7], vals[8], vals[9]
            cd_end = rec_pos
        else:
            problems.append("ZIP64 locator without a ZIP64 end record")
    start = cd_end - cd_size - cd_offset  # bytes prepended to the archive
    if start < 0 or cd_end - cd_size < 0:
        raise ZipError("central directory offset or size points outside the data")
    if count > max_entries:
        raise ZipError(f"{count} members declared, more than the limit of {max_entries}")
    pos = cd_end - cd_size
    entries: list[ZipEntry] = []
    while pos + _CDH_S.size <= cd_end and len(entries) < count:
        fields = _CDH_S.unpack_from(buf, pos)
        if fields[0] != _CDH:
            raise ZipError(f"bad central directory header at offset {pos}")
        flags, method = fields[3], fields[4]
        csize, size = fields[8], fields[9]
        nlen, xlen, clen = fields[10], fields[11], fields[12]
        offset = fields[16]
        name_end = pos + _CDH_S.size + nlen
        if name_end + xlen + clen > n:
            raise ZipError(f"central directory entry at offset {pos} runs past the end")
        raw_name = bytes(buf[pos + _CDH_S.size:name_end])
        extra = bytes(buf[name_end:name_end + xlen])
        size, csize, offset = _zip64_extra(extra, size, csize, offset)
        entry = ZipEntry(_name(raw_name, flags), method, flags, csize, size, start + offset)
        _locate_data(buf, entry, raw_name)
        entries.append(entry)
        pos = name_end + xlen + clen
    if len(entries) < count:
        problems.append(f"central directory lists {count} members but holds {len(entries)}")
    return ZipArchive(start, entries, problems)


def _locate_data(buf: Any, entry: ZipEntry, central_name: bytes) -> None:
    """Find the data of ``entry`` past its local header, the way miniz does:
    the local header's own name and extra lengths, sizes from the central
    directory."""
    off = entry.header_offset
    if off < 0 or off + _LFH_S.size > len(buf):
        entry.problems.append("local header offset points outside the data")
        return
    fields = _LFH_S.unpack_from(buf, off)
    if fields[0] != _LFH:
        entry.problems.append(f"no local header at offset {off}")
        return
    nlen, xlen = fields[9], fields[10]
    local_name = bytes(buf[off + _LFH_S.size:off + _LFH_S.size + nlen])
    if local_name != central_name:
        entry.problems.append(f"local header names it {local_name[:80]!r}, the central directory "
                              f"{central_name[:80]!r}")
    if fields[2] != entry.flags:
        entry.problems.append("local and central flags differ")
    entry.data_offset = off + _LFH_S.size + nlen + xlen
    if entry.data_offset + entry.compressed_size > len(buf):
        entry.problems.append("member data runs past the end of the archive")


def _from_local_headers(buf: Any, max_entries: int) -> ZipArchive:
    entries: list[ZipEntry] = []
    n = len(buf)
    view = bytes(buf) if not isinstance(buf, bytes) else buf
    pos = view.find(_LFH)
    while pos >= 0 and pos + _LFH_S.size <= n and len(entries) < max_entries:
        fields = _LFH_S.unpack_from(buf, pos)
        flags, method, csize, size, nlen, xlen = fields[2], fields[3], fields[7], fields[8], fields[9], fields[10]
        raw = view[pos + _LFH_S.size:pos + _LFH_S.size + nlen]
        entry = ZipEntry(_name(raw, flags), method, flags, csize, size, pos)
        entry.data_offset = pos + _LFH_S.size + nlen + xlen
        if flags & 8 and csize == 0:
            entry.problems.append("sizes are in a data descriptor: the member's length is unknown")
            entry.compressed_size = -1
        entries.append(entry)
        nxt = entry.data_offset + max(entry.compressed_size, 0)
        pos = view.find(_LFH, max(nxt, pos + 4))
    if not entries:
        raise ZipError("no zip member found")
    return ZipArchive(0, entries, [], from_local_headers=True)


def read(buf: Any, entry: ZipEntry, limit: int) -> Any:
    """The data of ``entry``, at most ``limit`` bytes (raises :class:`TooBig`
    beyond, and before inflating anything when the member declares more), as
    a view of ``buf`` for stored members and a bytearray for deflated ones.
    Raises :class:`ZipError` when it cannot be read."""
    if entry.data_offset < 0:
        raise ZipError("; ".join(entry.problems) or "local header unreadable")
    if entry.encrypted:
        raise ZipError("member is encrypted")
    start = entry.data_offset
    csize = entry.compressed_size
    if csize < 0:
        raise ZipError("member length unknown")
    stop = min(start + csize, len(buf))
    if entry.method == 0:
        if stop - start > limit:
            raise TooBig(stop - start)
        return memoryview(buf)[start:stop] if not isinstance(buf, bytes) else buf[start:stop]
    if entry.method == 8:
        if entry.size > limit:  # a reader would allocate what the member declares
            raise TooBig(entry.size)
        return _inflate(buf, start, stop, limit)
    raise ZipError(f"compression method {entry.method} is not supported (PyTorch reads stored and deflated only)")


# Most bytes one decompression call may produce: the output grows in steps of
# this size, so the peak is the output plus one step, never twice the limit.
OUTPUT_STEP = 1 << 24


def _inflate(buf: Any, start: int, stop: int, limit: int) -> bytearray:
    d = zlib.decompressobj(-15)
    out = bytearray()
    step = 1 << 20
    pos = start
    full = False  # the last call filled its output step: more may be pending
    try:
        while not d.eof and (pos < stop or d.unconsumed_tail or full):
            if d.unconsumed_tail or full or pos >= stop:
                chunk = d.unconsumed_tail
            else:
                chunk = bytes(buf[pos:min(pos + step, stop)])
                pos = min(pos + step, stop)
            room = min(limit + 1 - len(out), OUTPUT_STEP)
            got = d.decompress(chunk, room)
            out += got
            if len(out) > limit:
                raise TooBig(len(out))
            full = len(got) == room
    except zlib.error as e:
        raise ZipError(f"deflate data is broken: {e}") from None
    if not d.eof:
        raise ZipError("deflate data ends before its end marker")
    return out
