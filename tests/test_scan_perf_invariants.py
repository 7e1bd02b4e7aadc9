"""What the speed work on the decoder and the scanner must never change.

* The decoder's loop reads the frequent argument kinds in place; it must
  agree with a decoder built from nothing but the shared readers and the
  framing rule (the reference below), opcode by opcode, error by error, on
  CPython's pickles, the hostile and fuzz corpora, and mutations of them.
* ``lazy_bytes`` gives payload lengths, never different opcodes or errors.
* The scanner never copies a large payload, yet keeps the type (and the
  first bytes) of every bytes value, so its verdicts do not change.
* Format sniffing by first byte, and file reading in two ``read`` calls,
  see what the full checks see.
"""

from __future__ import annotations

import collections
import gc
import importlib
import os
import pickle
import random
import struct
import threading
import tracemalloc
from pathlib import Path

import pytest

import safepickle
from safepickle.codec.decode import INLINE_KINDS, LAZY_KINDS, as_buffer, decode, iter_ops
from safepickle.codec.opcodes import BY_CODE, BY_NAME, NAMES, OPCODES
from safepickle.codec.readers import ARG_KINDS, BadArgument, Truncated
from safepickle.errors import MalformedPickle, SafePickleError
from safepickle.scan import MMAP_MIN, judge_for, scan
from safepickle.scan import _read as read_path
from safepickle.scan.formats import MAGICS, sniff
from safepickle.scan.values import describe
from tests.hostile_corpus import CASES

ROOT = Path(__file__).resolve().parent.parent
scanner = importlib.import_module("safepickle.scan._scanner_select")  # the build in use
decode_mod = importlib.import_module("safepickle.codec.decode")  # the module (the package exports the function)


# -- the reference: the shared readers and the framing rule, nothing else --------------


def reference_decode(data, start=0):
    """Every opcode as ``(offset, name, arg, end)``, then ``("error", offset, rule, message)``
    when the stream is refused: each argument read by its kind's shared reader."""
    buf = as_buffer(data)
    end = len(buf)
    pos = start
    frame_end = -1
    out = []
    while True:
        if frame_end >= 0 and pos == frame_end:
            frame_end = -1
        if pos >= end:
            return [*out, ("error", pos, "truncated", "pickle data was truncated before STOP")]
        op = BY_CODE.get(buf[pos])
        if op is None:
            return [*out, ("error", pos, "unknown-opcode", f"invalid load key {buf[pos]:#04x}")]
        arg, stop = None, pos + 1
        if op.arg is not None:
            try:
                arg, stop = op.arg.read(buf, pos + 1, end)
            except Truncated:
                return [*out, ("error", pos, "truncated", "pickle data was truncated")]
            except BadArgument as e:
                return [*out, ("error", pos, "bad-argument", str(e))]
        if frame_end >= 0 and stop > frame_end:
            return [*out, ("error", pos, "frame-straddle", "opcode straddles the end of its frame")]
        if op.name == "FRAME":
            if frame_end >= 0:
                return [*out, ("error", pos, "frame-nested",
                               "a new frame begins before the end of the current frame")]
            if stop + arg > end:
                return [*out, ("error", pos, "frame-truncated", f"frame of {arg} bytes runs past the end of the data")]
            frame_end = stop + arg
        out.append((pos, op.name, _same(arg), stop))
        if op.name == "STOP":
            return out
        pos = stop


def _same(value):
    """A comparable form: type and repr (so NaN equals NaN, and 1 is not True)."""
    return (type(value).__name__, repr(value))


def ours(data, start=0):
    out = []
    try:
        for op in decode(data, start):
            out.append((op.offset, op.opcode.name, _same(op.arg), op.end))
    except MalformedPickle as e:
        out.append(("error", e.offset, e.rule, e.detail))
    return out


def ours_lazy(data, start=0):
    """iter_ops with lazy_bytes, payloads filled back in from their lengths."""
    buf = as_buffer(data)
    out = []
    try:
        for offset, code, arg, end in iter_ops(data, start, lazy_bytes=True):
            name = NAMES[code]
            if BY_CODE[code].arg is not None and BY_CODE[code].arg.name in LAZY_KINDS:
                assert type(arg) is int
                raw = bytes(buf[end - arg:end])
                arg = bytearray(raw) if name == "BYTEARRAY8" else raw
            out.append((offset, name, _same(arg), end))
    except MalformedPickle as e:
        out.append(("error", e.offset, e.rule, e.detail))
    return out


class Obj:
    def __init__(self) -> None:
        self.a = [1, "x"]

    def __reduce__(self):
        return (collections.OrderedDict, ([("k", 1)],))


def cpython_streams() -> list[bytes]:
    values = [
        None, True, False, 0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**31, 2**63, -(2**200),
        0.0, -0.0, 1.5, float("inf"), float("nan"), "", "a", "é\u20ac", "\ud800", "x" * 300, "y" * 70000,
        b"", b"\x00", b"z" * 255, b"z" * 256, b"w" * 70000, bytearray(b"ba"), bytearray(300),
        (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1, [2, [3]]], {}, {"a": {"b": ()}}, set(), {1, 2},
        frozenset({3}), list(range(2000)), {i: str(i) for i in range(1200)}, Obj(), collections.deque([1]),
    ]
    streams = []
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        for v in values:
            streams.append(pickle.dumps(v, proto))
        shared = ["s"]
        streams.append(pickle.dumps([shared, shared, values], proto))
    return streams


def corpus_streams() -> list[bytes]:
    streams = [c.data for c in CASES]
    fuzz = ROOT / "fuzz" / "corpus"
    if fuzz.is_dir():
        streams += [p.read_bytes() for p in sorted(fuzz.rglob("*")) if p.is_file() and p.stat().st_size < 1 << 20]
    return streams


def mutations(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    out = [data[:k] for k in range(0, len(data), max(1, len(data) // 24))]
    for _ in range(count):
        b = bytearray(data)
        if not b:
            break
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
    return out


# -- the decoder's loop against the reference ----------------------------------------------


@pytest.mark.parametrize("source", ["cpython", "corpus"])
def test_decoder_agrees_with_the_reader_only_reference(source):
    streams = cpython_streams() if source == "cpython" else corpus_streams()
    assert streams
    for data in streams:
        expected = reference_decode(data)
        assert ours(data) == expected
        assert ours(memoryview(bytearray(data))) == expected
        assert ours_lazy(data) == expected


def test_decoder_agrees_with_the_reference_on_mutations():
    rng = random.Random(20240611)
    seeds = [d for d in cpython_streams() + corpus_streams() if len(d) <= 2048]
    checked = 0
    for data in seeds[::2]:
        for m in mutations(data, rng, 24):
            expected = reference_decode(m)
            assert ours(m) == expected, m[:80]
            assert ours_lazy(m) == expected, m[:80]
            checked += 1
    assert checked > 2000


def test_decoder_agrees_with_the_reference_from_a_start_offset():
    a = pickle.dumps({"a": [1, 2]}, 4)
    b = pickle.dumps(("x", b"y" * 300), 2)
    data = a + b
    assert ours(data, len(a)) == reference_decode(data, len(a))
    assert ours_lazy(data, len(a)) == reference_decode(data, len(a))


def _first(data: bytes):
    try:
        _offset, _code, arg, end = next(iter_ops(data))
        return ("ok", _same(arg), end)
    except MalformedPickle as e:
        return ("error", e.rule, e.detail)


def _reader_first(data: bytes):
    try:
        arg, end = BY_CODE[data[0]].arg.read(data, 1, len(data))
        return ("ok", _same(arg), end)
    except Truncated:
        return ("error", "truncated", "pickle data was truncated")
    except BadArgument as e:
        return ("error", "bad-argument", str(e))


def _arguments(kind: str) -> list[bytes]:
    """Well-formed and ill-formed argument bytes of each kind read in place."""
    if kind == "uint1":
        return [bytes([v]) for v in (0, 1, 127, 128, 255)]
    if kind in ("uint2", "int4", "uint4", "uint8", "float8"):
        fmt = {"uint2": "<H", "int4": "<i", "uint4": "<I", "uint8": "<Q", "float8": ">d"}[kind]
        if kind == "float8":
            values = [0.0, -0.0, 1.5, -2.25e300, float("inf"), float("nan"), 5e-324]
        else:
            size = struct.calcsize(fmt)
            lo = -(1 << (8 * size - 1)) if kind == "int4" else 0
            hi = (1 << (8 * size - (1 if kind == "int4" else 0))) - 1
            values = sorted({lo, lo + 1, -1 if lo else 0, 0, 1, 255, 256, hi - 1, hi})
        return [struct.pack(fmt, v) for v in values]
    texts = [b"", b"a", "é€".encode(), "\ud800".encode("utf-8", "surrogatepass"), b"\xff", b"\xc3",
             b"ok\xe2\x82", b"x" * 300]
    if kind in ("unicodestring1", "bytes1"):
        return [bytes([len(t)]) + t for t in texts if len(t) < 256] + [b"\xff" + b"z" * 10]
    fmt = "<I" if kind in ("unicodestring4", "bytes4") else "<Q"
    return [struct.pack(fmt, len(t)) + t for t in texts] + [struct.pack(fmt, 2**32 - 1) + b"zz",
                                                            b"\xff" * struct.calcsize(fmt) + b"q"]


@pytest.mark.parametrize("kind", sorted(INLINE_KINDS))
def test_each_kind_read_in_place_agrees_with_its_shared_reader(kind):
    assert kind in ARG_KINDS
    codes = [op.code for op in OPCODES if op.arg is not None and op.arg.name == kind]
    assert codes
    for code in codes:
        if NAMES[code] == "FRAME":
            continue  # its argument opens a frame: covered by the stream tests above
        for arg in _arguments(kind):
            for cut in range(len(arg) + 1):  # every truncation, and the whole argument
                data = bytes([code]) + arg[:cut]
                assert _first(data) == _reader_first(data), (NAMES[code], data[:20])
            # inside a frame that ends one byte early: the reader's result, then the straddle
            framed = b"\x95" + struct.pack("<Q", len(arg)) + bytes([code]) + arg
            got = ours(framed)[-1]
            if _reader_first(bytes([code]) + arg)[0] == "ok":
                assert got[2] == "frame-straddle"
            else:
                assert got[2] in ("truncated", "bad-argument")
            assert ours(framed) == reference_decode(framed)


def test_every_opcode_has_a_reading_and_only_table_bytes_are_known():
    known = {op.code for op in OPCODES}
    for b in range(256):
        if b in known:
            op = BY_CODE[b]
            shared = op.arg is not None and op.arg.name not in INLINE_KINDS
            assert decode_mod._KIND[b] != decode_mod._UNKNOWN
            assert (decode_mod._KIND[b] == decode_mod._SHARED) == shared
            assert (decode_mod._READ[b] is None) == (op.arg is None)
            if op.arg is not None:
                assert decode_mod._READ[b] is op.arg.read
        else:
            assert decode_mod._KIND[b] == decode_mod._UNKNOWN
            with pytest.raises(MalformedPickle) as info:
                list(decode(b"\x80\x04" + bytes([b])))
            assert info.value.rule == "unknown-opcode" and info.value.offset == 2
    assert LAZY_KINDS <= INLINE_KINDS


# -- the scanner keeps what matters of large payloads, and copies none --------------------


def _peak_of(fn) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_scan_does_not_copy_large_payloads(tmp_path):
    payload = 32 << 20
    data = pickle.dumps([b"\x00" * payload, bytearray(payload)], protocol=5)
    report = None

    def run():
        nonlocal report
        report = scan(data, policy="data-only")

    peak = _peak_of(run)
    assert report.ok and report.size == len(data)
    assert peak < 4 << 20, f"scanning {len(data)} bytes allocated {peak} bytes"
    path = tmp_path / "big.pkl"
    path.write_bytes(data)
    peak = _peak_of(lambda: scan(str(path), policy="data-only"))
    assert peak < 4 << 20, f"scanning a {len(data)}-byte file allocated {peak} bytes"


@pytest.mark.parametrize("size", [16, 255, 256, 257, 4096, 100_000])
@pytest.mark.parametrize("text", [False, True])
def test_large_bytes_values_keep_their_type_and_first_bytes(size, text):
    """A bytes value of any size: the same verdicts as the VM's, the same
    description in messages."""
    raw = (b"abcdefghij" if text else bytes(range(256))) * (size // 10 + 1)
    raw = raw[:size]
    b8 = b"\x8e" + struct.pack("<Q", size) + raw
    ba8 = b"\x96" + struct.pack("<Q", size) + raw
    cases = [
        # bytes as a STACK_GLOBAL operand: malformed for the VM and for scan
        b"\x80\x04" + b8 + b"\x8c\x01x\x93.",
        # a bytearray as a dict key: unhashable
        b"\x80\x05}" + ba8 + b"K\x01s.",
        # a bytearray made read-only: fine
        b"\x80\x05" + ba8 + b"\x98.",
        # bytes as a dict key: fine
        b"\x80\x04}" + b8 + b"K\x01s.",
    ]
    for data in cases:
        report = scan(data, policy="data-only")
        try:
            safepickle.loads(data, policy="data-only")
            loaded = True
        except SafePickleError:
            loaded = False
        assert report.ok == loaded, (size, data[:12])
    # a persistent id of large bytes is described as the whole value would be
    data = b"\x80\x04" + b8 + b"Q."
    report = scan(data, policy="data-only")
    assert [p.pid for p in report.persistent_ids] == [describe(raw)]
    assert not report.ok


def test_large_bytes_holding_a_pickle_are_still_scanned():
    inner = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93."
    inner = inner + b"\x00" * 5000
    data = pickle.dumps({"blob": inner}, protocol=4)
    report = scan(data, policy="data-only")
    assert "os:system" in [g.qualified for g in report.globals]


# -- the op budget: counted, checked only where it can be reached ------------------------------


def _ops_policy(max_ops: int):
    from safepickle.policy import Policy

    return Policy.model_validate({"name": f"ops-{max_ops}", "extends": ["data-only"], "limits": {"max_ops": max_ops}})


@pytest.mark.parametrize("data", [pickle.dumps(list(range(40)), 2), pickle.dumps({"a": (1, 2), "b": [None]}, 4),
                                  pickle.dumps(["x"] * 5, 0), b"N0" * 20 + b"N."],
                         ids=["p2", "p4-frame", "p0", "one-byte-opcodes"])
def test_max_ops_is_reported_at_the_first_opcode_past_it(data):
    offsets = [op.offset for op in decode(data)]
    n = len(offsets)
    for max_ops in (1, n - 2, n - 1, n, n + 1, len(data), 10 * len(data)):
        report = scan(data, policy=_ops_policy(max_ops))
        assert report.pickles[0].opcodes == n
        over = [v for v in report.violations if v.rule == "limits.max_ops"]
        if n > max_ops:
            assert [(v.offset, v.opcode) for v in over] == [(offsets[max_ops], NAMES[data[offsets[max_ops]]])]
            with pytest.raises(SafePickleError):
                safepickle.loads(data, policy=_ops_policy(max_ops))
        else:
            assert over == [] and report.ok
            safepickle.loads(data, policy=_ops_policy(max_ops))


def test_max_ops_counts_across_pickles_one_after_another():
    one = pickle.dumps([1, 2, 3], 2)
    n = len(list(decode(one)))
    report = scan(one * 3, policy=_ops_policy(n))
    assert [p.opcodes for p in report.pickles] == [n, n, n]
    assert not [v for v in report.violations if v.rule == "limits.max_ops"]  # the budget is per pickle


# -- sniffing and reading ---------------------------------------------------------------------


def _slow_sniff(buf: bytes, start: int = 0):
    """Every magic tried in turn, without the first-byte shortcut."""
    head = buf[start:start + 8]
    for magic, kind in MAGICS:
        if head.startswith(magic) and (kind != "zlib" or (len(head) >= 2 and (head[0] << 8 | head[1]) % 31 == 0)):
            return kind
    if len(buf) - start >= 512 and buf[start + 257:start + 262] == b"ustar":
        return "tar"
    return None


def test_sniff_agrees_with_trying_every_magic():
    rng = random.Random(7)
    heads = [m for m, _ in MAGICS] + [b"\x80\x04", b"(", b"\x78\x9c", b"\x78\x01", b"\x78\x02"]
    for first in range(256):
        for tail in (b"", b"\x00" * 7, bytes([rng.randrange(256) for _ in range(7)])):
            buf = bytes([first]) + tail
            assert sniff(buf) == _slow_sniff(buf)
    for _ in range(5000):
        h = rng.choice(heads)
        h = h[:rng.randint(0, len(h))] + bytes(rng.randrange(256) for _ in range(rng.randint(0, 3)))
        if rng.random() < 0.3:
            pad = bytearray(rng.randbytes(600))
            pad[257:262] = b"ustar"
            h += bytes(pad)
        start = rng.randint(0, 2)
        buf = bytes(start) + h
        assert sniff(buf, start) == _slow_sniff(buf, start)
        assert sniff(memoryview(buf), start) == _slow_sniff(buf, start)
    for magic, kind in MAGICS:
        if kind != "zlib":
            assert sniff(magic + b"\x00" * 8) == kind
            assert sniff(b"abc" + magic + b"\x00" * 8, 3) == kind


@pytest.mark.parametrize("size", [0, 1, (1 << 16) - 1, 1 << 16, (1 << 16) + 1, (2 << 16) + 5, MMAP_MIN - 1,
                                  MMAP_MIN + 3])
def test_files_of_every_size_are_read_whole(tmp_path, size):
    rng = random.Random(size)
    data = rng.randbytes(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    got = read_path(str(path))
    try:
        assert bytes(got) == data
    finally:
        if not isinstance(got, bytes):
            got.close()
    assert scan(str(path), policy="data-only").size == size


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_named_pipe_is_read_to_its_end(tmp_path):
    data = pickle.dumps(list(range(100_000)), protocol=2)  # several pipe buffers
    assert len(data) > 3 * (1 << 16)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def writer():
        with open(fifo, "wb") as f:
            for i in range(0, len(data), 1000):
                f.write(data[i:i + 1000])
                f.flush()

    t = threading.Thread(target=writer)
    t.start()
    try:
        report = scan(str(fifo), policy="data-only")
    finally:
        t.join(timeout=30)
    assert report.size == len(data) and report.ok


def test_unreadable_paths_raise_oserror_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        scan(str(tmp_path / "missing.pkl"))
    assert info.value.filename == str(tmp_path / "missing.pkl")
    with pytest.raises(IsADirectoryError) as info:
        scan(str(tmp_path))
    assert info.value.filename == str(tmp_path)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_left_as_it_was(enabled):
    small = pickle.dumps([1, 2], 4)
    large = pickle.dumps([{"k": i} for i in range(20_000)], 4)
    assert len(large) >= 1 << 16
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        for data in (small, large):
            scan(data, policy="data-only")
            assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


# Rules of the refusals that decoding makes (the others come from the simulation).
_DECODE_RULES = {"truncated", "frame-truncated", "frame-nested", "frame-straddle", "unknown-opcode"}


def _walk_agrees_with_the_reference(data, judge) -> str:
    """Check scan's walk (which decodes in its own loop) against the
    reference decoder on one stream; returns how the walk ended."""
    ref = reference_decode(data)
    decoded = [r for r in ref if r[0] != "error"]
    rep = scanner.analyze(data, 0, judge).report
    ops = rep.opcodes
    assert ops <= len(decoded)
    if rep.complete:
        assert ref[-1][1] == "STOP" and ops == len(decoded) and rep.end == ref[-1][3]
        return "complete"
    bad = rep.malformed
    if bad is not None and ref[-1][0] == "error" and bad.offset == ref[-1][1]:
        assert ops == len(decoded)
        assert bad.rule == ref[-1][2]
        if bad.rule not in ("truncated", "frame-truncated"):  # those get the declared length in their message
            assert bad.message == ref[-1][3]
        return "decode error"
    # stopped by the simulation (stack, mark, memo, extension...) at an opcode the reference decoded
    assert bad is None or bad.rule not in _DECODE_RULES, (bad, ref[-3:])
    assert ops > 0 and (bad is None or bad.offset == decoded[ops - 1][0])
    return "simulation stop"


def test_the_scan_walk_decodes_as_the_reference_does():
    """scan's walk reads the frequent argument kinds in its own loop (no
    generator per opcode); it must see the opcodes, ends and refusals that
    the reference decoder sees, on CPython's pickles, the corpora and their
    mutations, with both kinds of buffer."""
    judge = judge_for("stdlib")
    rng = random.Random(20261127)
    seeds = cpython_streams() + corpus_streams()
    endings = collections.Counter()
    for data in seeds:
        endings[_walk_agrees_with_the_reference(data, judge)] += 1
        _walk_agrees_with_the_reference(memoryview(bytearray(data)), judge)
        if len(data) <= 2048:
            for m in mutations(data, rng, 8):
                endings[_walk_agrees_with_the_reference(m, judge)] += 1
    assert min(endings.values()) > 200 and len(endings) == 3, endings


def test_disasm_and_decode_share_one_loop():
    """disasm and decode() are iter_ops wrapped: one loop."""
    from safepickle import disasm

    assert disasm.decode is decode
    data = pickle.dumps({"a": [1, b"x" * 300]}, 4)
    assert [op.offset for op in decode(data)] == [o for o, *_ in iter_ops(data)]
    assert BY_NAME["BINBYTES8"].arg.name in LAZY_KINDS


def _names_stream(module: str, name: str, memo_index: int) -> bytes:
    """protocol 4: module and name as text opcodes chosen by length, the
    name memoized at ``memo_index`` (BINPUT or LONG_BINPUT) and fetched back
    (BINGET or LONG_BINGET), then STACK_GLOBAL."""

    def text(s: str) -> bytes:
        raw = s.encode("utf-8", "surrogatepass")
        return (b"\x8c" + bytes([len(raw)]) if len(raw) < 256 else b"X" + struct.pack("<I", len(raw))) + raw

    put = b"q" + bytes([memo_index]) if memo_index < 256 else b"r" + struct.pack("<I", memo_index)
    get = b"h" + bytes([memo_index]) if memo_index < 256 else b"j" + struct.pack("<I", memo_index)
    return b"\x80\x04" + text(module) + text(name) + put + b"0" + get + b"\x93."


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_scan_walk_reads_the_values_it_reads_in_place(proto):
    """The values the walk reads in place are the decoder's: ints (the
    result of a stream that is one int), text and memo indices (the names a
    STACK_GLOBAL reports), GLOBAL lines, floats (in a refusal's message)."""
    judge = judge_for("data-only")
    for v in (0, 1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), -1, 2**31, 2**40):
        assert scanner.analyze(pickle.dumps(v, proto), 0, judge).result == v
    for module, name, index in (("m", "f", 0), ("é€mod", "\ud800x", 255), ("a" * 255, "b" * 256, 256),
                                ("pkg.sub", "Cls.inner", 70_000)):
        site, = scanner.analyze(_names_stream(module, name, index), 0, judge).report.sites
        assert (site.raw_module, site.raw_name) == (module, name)
    for module, name in (("os", "system"), ("modé", "námé")):
        data = f"c{module}\n{name}\n)R.".encode()
        site, = scanner.analyze(data, 0, judge).report.sites
        assert (site.raw_module, site.raw_name) == (module, name)
    bad = scanner.analyze(b"cos\xff\nsystem\n.", 0, judge).report.malformed
    assert (bad.offset, bad.rule, bad.message) == (0, "bad-argument", "module or name is not UTF-8")
    for f in (1.5, -0.0, 1e300):
        rep = scanner.analyze(b"G" + struct.pack(">d", f) + b")R.", 0, judge).report
        assert repr(f) in rep.violations[0].message
