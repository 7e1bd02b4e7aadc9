"""Walking an input as every format it can be read as, and scanning each pickle in it.

Formats are told apart by content (:func:`~safepickle.scan.formats.sniff`),
never by name.  An input is read as:

* **pickles in a row** (a plain pickle file): every pickle, one after
  another; whatever follows the last STOP is reported, and scanned as a
  container when it is one (a zip appended to a pickle).  The legacy PyTorch
  format (a magic-number pickle, then four more, then raw storage bytes) is
  recognised and its storage bytes are not read as pickles;
* **zip** (PyTorch checkpoints, TorchScript, NumPy ``.npz``, any zip):
  every member, read leniently (:mod:`~safepickle.scan.zipread`); a member is
  scanned as pickles when its name ends in ``.pkl`` or its bytes start with a
  PROTO opcode, and as a container when its bytes are one;
* **npy**: the pickle after the header when the dtype holds objects;
* **gzip, bz2, xz, lzma, zlib** (joblib's compressions): decompressed within
  the limits, then read again;
* **tar** (the oldest PyTorch format): every member, in memory.

Inside a pickle, a joblib array wrapper switches on joblib's reading (the
array bytes skipped exactly as joblib does), and bytes values that hold a
pickle or a container are scanned too.  Readings that only a naive consumer
would make (the raw pickle reading of a container, the plain reading of a
joblib stream, pickles found in bytes values) are *secondary*: the globals
they name count, their failing to decode is a note.

Everything is bounded by the policy's limits: nesting of containers by
``max_depth`` (and at most :data:`MAX_NESTING`), members by
``max_container``, each decompressed or pickle member by
``max_input_bytes``, and all bytes inflated or scanned in containers
together by ``max_alloc_bytes``.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from typing import Any

try:
    import cython
except ImportError:  # Cython is only a build requirement: interpreted, cython.compiled is False
    from ..vm._cython_shim import cython

from ..vm.gcpause import GCPause
from .formats import COMPRESSED, decompress, describe_bytes, npy_header, sniff
from .report import GlobalRef, PickleReport, ScanReport, Violation
from .zipread import TooBig, ZipError, find_end_record, read, read_archive

if cython.compiled:
    # setup.py builds this file as safepickle.scan._containers_c: it walks
    # with the compiled walk (the two are chosen together, see _scanner_select).
    from ._static_c import Analysis, Judge, analyze
else:
    from .static import Analysis, Judge, analyze

__all__ = ["scan_buffer", "MAX_NESTING", "TORCH_LEGACY_MAGIC", "GC_PAUSE_MIN"]

MAX_NESTING = 16
# Inputs smaller than this are scanned with the cyclic collector left alone:
# they cannot allocate enough to make its passes matter, and pausing it costs
# more than it saves on a small file.
GC_PAUSE_MIN = 1 << 16
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PICKLES = 5  # magic, protocol version, sys info, the object, storage keys
_SECONDARY_KINDS = ("global", "dynamic-global")


def _join(label: str, name: str) -> str:
    return f"{label}!{name}" if label else name


@cython.cclass
class _Walker:
    """Everything read in one input, and the report it fills.  Compiled, an
    extension type whose methods are C calls from one another."""

    judge = cython.declare(object)
    limits = cython.declare(object)
    report = cython.declare(object)
    max_nesting = cython.declare(object)
    budget = cython.declare(object)
    budget_spent = cython.declare(cython.bint)
    analyses = cython.declare(list)
    visitor = cython.declare(object)
    base = cython.declare(object)

    def __init__(self, judge: Judge, report: ScanReport) -> None:
        self.judge = judge
        self.limits = judge.limits
        self.report = report
        self.max_nesting = min(MAX_NESTING, judge.limits.max_depth)
        self.budget = judge.limits.max_alloc_bytes  # bytes inflated or scanned inside containers
        self.budget_spent = False
        self.analyses = []  # (analysis, counts as primary)
        self.visitor = None  # called with (analysis, buffer) for every pickle kept (disasm)
        # Where the buffer being read starts in the input (None: decompressed
        # bytes, which no offset of the input holds); each report kept gets it.
        self.base = 0

    # -- recording ------------------------------------------------------------------

    @cython.cfunc
    def format(self, kind: str) -> None:
        if kind not in self.report.formats:
            self.report.formats.append(kind)

    @cython.cfunc
    def problem(self, kind: str, part: str, rule: str, message: str, primary: bool, offset: int | None = None) -> None:
        if primary:
            self.report.violations.append(Violation(kind, part, offset, None, rule, message))
        else:
            self.note(f"{part}: {message}" if part else message)

    @cython.cfunc
    def note(self, text: str) -> None:
        if text not in self.report.notes:
            self.report.notes.append(text)

    @cython.cfunc
    def spend(self, n: int, part: str) -> bool:
        """Charge ``n`` bytes to the container budget; False when it is spent."""
        if self.budget_spent:
            return False
        self.budget -= n
        if self.budget < 0:
            self.budget_spent = True
            self.problem("limit", part, "limits.max_alloc_bytes",
                         f"containers expand to more than max_alloc_bytes = {self.limits.max_alloc_bytes} bytes: "
                         "the rest is not scanned (limit max_alloc_bytes)", True)
            return False
        return True

    @cython.cfunc
    def keep(self, a: Analysis, primary: bool, buf: Any) -> None:
        a.report.base = self.base
        self.analyses.append((a, primary))
        if self.visitor is not None:
            self.visitor(a, buf)
        for nested in a.nested:
            self.keep(nested, primary, buf)

    # -- dispatch --------------------------------------------------------------------

    @cython.cfunc
    def walk(self, buf: Any, label: str, depth: int, primary: bool) -> str:
        """Scan ``buf`` (a whole input or member) as everything it can be;
        returns the format it was read as first."""
        if depth > self.max_nesting:
            self.problem("limit", label, "limits.max_depth",
                         f"containers nested more than {self.max_nesting} deep: not scanned (limit max_depth)", primary)
            return "nested"
        kind = sniff(buf)
        if kind is None:
            return self.pickles(buf, label, 0, depth, primary)
        self.format(kind)
        if kind == "zip":
            self.zip(buf, label, depth, primary)
        elif kind == "npy":
            self.npy(buf, label, depth, primary)
        elif kind in COMPRESSED:
            self.compressed(kind, buf, label, depth, primary)
        elif kind == "tar":
            self.tar(buf, label, depth, primary)
        # A consumer that calls pickle.load on the file anyway: only what it
        # would import before failing matters.
        raw = analyze(buf, 0, self.judge, part=label, primary=False, view="raw pickle")
        if raw.report.sites:
            self.keep(raw, False, buf)
        return kind

    # -- pickles in a row ----------------------------------------------------------------

    @cython.cfunc
    def pickles(self, buf: Any, label: str, start: int, depth: int, primary: bool) -> str:
        """Every pickle from ``start`` on, one after another; then whatever follows."""
        n = len(buf)
        pos = start
        count = 0
        fmt = "pickle"
        legacy_torch = False
        while pos < n:
            part = label if count == 0 else f"{label}#{count + 1}"
            a = self.one_pickle(buf, part, pos, primary)
            rep = a.report
            if not rep.complete:
                if count == 0:
                    if rep.opcodes <= 1 and buf[pos] != 0x80:
                        fmt = "unknown"
                        self.note(f"{label or 'input'}: format not recognised: scanned as a raw pickle")
                    self.keep(a, primary, buf)
                    self.follow_blobs(a, buf, depth)
                    break
                # Not another pickle: trailing data.  What it would import before failing still counts.
                if rep.sites:
                    self.keep(a, False, buf)
                self.trailing(buf, label, pos, depth, primary)
                break
            self.keep(a, primary, buf)
            self.follow_blobs(a, buf, depth)
            if rep.end - rep.start > self.limits.max_input_bytes:
                self.problem("limit", part, "limits.max_input_bytes",
                             f"pickle of {rep.end - rep.start} bytes (limit max_input_bytes = "
                             f"{self.limits.max_input_bytes})", primary, rep.start)
            if count == 0:
                if rep.view == "joblib":
                    fmt = "joblib"
                elif a.result == TORCH_LEGACY_MAGIC:
                    legacy_torch = True
                    fmt = "pytorch-legacy"
                self.format(fmt)
            count += 1
            pos = rep.end
            if legacy_torch and count == _TORCH_LEGACY_PICKLES:
                if pos < n:
                    self.note(f"{_join(label, 'storages')}: {n - pos} bytes of tensor storage data at offset {pos}")
                break
        if count > 1:
            self.note(f"{label or 'input'}: {count} pickles one after another")
        return fmt

    @cython.cfunc
    def one_pickle(self, buf: Any, part: str, pos: int, primary: bool) -> Analysis:
        a = analyze(buf, pos, self.judge, part=part, primary=primary)
        if not a.joblib_wrappers:
            return a
        # A joblib stream: joblib's reading is the one that counts; the plain
        # reading stays as a secondary one (what a naive pickle.load would do).
        j = analyze(buf, pos, self.judge, part=part, primary=primary, joblib=True, view="joblib")
        self.format("joblib")
        a.report.view = "plain pickle"
        self.keep(a, False, buf)
        return j

    @cython.cfunc
    def inside(self, buf: Any, label: str, depth: int, primary: bool, at: Any) -> None:
        """``walk`` a buffer held in the current one: ``at`` is where it starts
        in the current buffer, None when it was decompressed from it."""
        outer = self.base
        self.base = None if at is None or outer is None else outer + at
        try:
            self.walk(buf, label, depth, primary)
        finally:
            self.base = outer

    @cython.cfunc
    def follow_blobs(self, a: Analysis, buf: Any, depth: int) -> None:
        """Scan the bytes values of a stream that hold a pickle or a container."""
        for off, length in a.blobs:
            label = f"{a.report.part}@{off}"
            if not self.spend(length, label):
                return
            self.note(f"{label}: a bytes value of {length} bytes holds "
                      f"{describe_bytes(buf, off, off + length)}: scanned as well")
            self.inside(_slice(buf, off, off + length), label, depth + 1, False, off)

    @cython.cfunc
    def trailing(self, buf: Any, label: str, pos: int, depth: int, primary: bool) -> None:
        n = len(buf)
        what = describe_bytes(buf, pos, n)
        where = label or "input"
        if what == "zero bytes":
            self.note(f"{where}: {n - pos} zero bytes after the last STOP (offset {pos})")
            return
        self.note(f"{where}: {n - pos} bytes after the last STOP at offset {pos} are not a pickle ({what})")
        kind = sniff(buf, pos)
        if kind == "zip" or kind is None:
            self.appended_zip(buf, label, pos, depth)
        elif self.spend(n - pos, label):
            self.inside(_slice(buf, pos, n), f"{label}@{pos}", depth + 1, False, pos)

    @cython.cfunc
    def appended_zip(self, buf: Any, label: str, after: int, depth: int) -> None:
        """A zip after the pickle data, found by its end record as zipfile
        finds it (member offsets relative to the zip or to the file alike)."""
        eocd = find_end_record(buf)
        if eocd < after:
            return
        try:
            archive = read_archive(buf, max_entries=self.limits.max_container, end_record=eocd)
        except ZipError as e:
            self.note(f"{label or 'input'}: an appended zip archive is unreadable: {e}")
            return
        if archive.from_local_headers or archive.start < after:
            return
        self.format("zip")
        self.note(f"{label or 'input'}: a zip archive starts at offset {archive.start}, after the pickle data")
        self.zip_members(buf, archive, f"{label}@{archive.start}", depth + 1, False)

    # -- zip --------------------------------------------------------------------------------

    @cython.cfunc
    def zip(self, buf: Any, label: str, depth: int, primary: bool) -> None:
        try:
            archive = read_archive(buf, max_entries=self.limits.max_container)
        except ZipError as e:
            self.problem("container", label, "zip", f"unreadable zip archive: {e}", primary)
            return
        names = [e.name for e in archive.entries]
        if any(x.endswith("/data.pkl") or x == "data.pkl" for x in names):
            torch_like = any(x.endswith(("/version", "/byteorder", ".data/version")) for x in names)
            self.format("pytorch-zip" if torch_like else "zip")
        elif names and all(x.endswith(".npy") for x in names):
            self.format("npz")
        for p in archive.problems:
            self.note(f"{label or 'input'}: zip: {p}")
        if archive.from_local_headers:
            # Neither PyTorch nor zipfile opens it; other readers might, so
            # the members found are scanned, but the archive is not vouched for.
            self.problem("container", label, "zip", "the zip archive has no readable central directory "
                         "(members found by their local headers were scanned)", primary)
        self.zip_members(buf, archive, label, depth, primary)

    @cython.cfunc
    def zip_members(self, buf: Any, archive: Any, label: str, depth: int, primary: bool) -> None:
        seen: set[str] = set()
        for entry in archive.entries:
            part = _join(label, entry.name)
            if entry.name in seen:
                self.note(f"{part}: the name appears more than once in the archive; every copy is scanned")
            seen.add(entry.name)
            for p in entry.problems:
                self.note(f"{part}: {p}")
            self.member(buf, entry, part, depth, primary)

    @cython.cfunc
    def member(self, buf: Any, entry: Any, part: str, depth: int, primary: bool) -> None:
        """One zip member: scanned as pickles when it is named ``*.pkl`` or
        starts with a PROTO opcode, as a container when it is one."""
        is_pkl = entry.name.endswith(".pkl")
        try:
            head = _member_head(buf, entry)
        except ZipError as e:
            self.problem("container", part, "zip-member", f"member cannot be read: {e}", primary and is_pkl)
            return
        kind = sniff(head)
        looks_pickle = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
        if kind is None and not is_pkl and not looks_pickle:
            return  # data (tensor storage, text...): never unpickled
        limit = min(self.limits.max_input_bytes, max(self.budget, 0))
        try:
            data = read(buf, entry, limit)
        except TooBig:
            self.problem("limit", part, "limits.max_input_bytes",
                         f"member holds more than {limit} bytes: not scanned (limit max_input_bytes, or what is "
                         "left of max_alloc_bytes)", primary)
            return
        except ZipError as e:
            self.problem("container", part, "zip-member", f"member cannot be read: {e}", primary)
            return
        if not self.spend(len(data), part):
            return
        outer = self.base
        if entry.method != 0 or outer is None:
            self.base = None  # inflated: no offset of the input holds these bytes
        else:
            self.base = outer + entry.data_offset
        try:
            self.member_data(data, kind, is_pkl, part, depth, primary)
        finally:
            self.base = outer

    @cython.cfunc
    def member_data(self, data: Any, kind: Any, is_pkl: bool, part: str, depth: int, primary: bool) -> None:
        if kind is not None:
            self.walk(data, part, depth + 1, primary)
        elif is_pkl:
            self.pickles(data, part, 0, depth, primary)
        else:
            # Starts like a pickle without the name of one: a pickle if it
            # decodes; if not, only what it names counts (tensor bytes may
            # start like this).
            a = analyze(data, 0, self.judge, part=part, primary=False)
            if a.report.complete:
                self.pickles(data, part, 0, depth, primary)
            elif a.report.sites:
                self.keep(a, False, data)

    # -- npy, compressed, tar -------------------------------------------------------------------

    @cython.cfunc
    def npy(self, buf: Any, label: str, depth: int, primary: bool) -> None:
        h = npy_header(buf, 0)
        if isinstance(h, str):
            self.problem("container", label, "npy", h, primary, 0)
            return
        if h.objects is False:
            self.note(f"{label or 'input'}: .npy array of {h.descr!r}, shape {h.shape!r}: no pickle inside")
            return
        if h.objects is None:
            self.note(f"{label or 'input'}: .npy dtype {str(h.descr)[:80]} not understood: "
                      "its data is scanned as a pickle in case NumPy reads it as one")
        pkl_part = _join(label, "array") if label else "array"
        a = analyze(buf, h.data_offset, self.judge, part=pkl_part, primary=primary and h.objects is True)
        if h.objects is None and not a.report.complete:
            if a.report.sites:
                a.report.primary = False
                self.keep(a, False, buf)
            return
        self.keep(a, primary and h.objects is True, buf)
        end = a.report.end
        if end is not None and end < len(buf):
            self.note(f"{pkl_part}: {len(buf) - end} bytes after the array's pickle (offset {end}) are ignored "
                      "by numpy.load")

    @cython.cfunc
    def compressed(self, kind: str, buf: Any, label: str, depth: int, primary: bool) -> None:
        limit = min(self.limits.max_input_bytes, max(self.budget, 0))
        try:
            data = decompress(kind, buf, 0, limit)
        except TooBig:
            self.problem("limit", label, "limits.max_input_bytes",
                         f"{kind} data decompresses to more than {limit} bytes: not scanned (limit max_input_bytes "
                         "or the remaining max_alloc_bytes)", primary)
            return
        except ValueError as e:
            self.problem("container", label, kind, str(e), primary)
            return
        if not self.spend(len(data), label):
            return
        self.inside(data, _join(label, f"<{kind}>"), depth + 1, primary, None)

    @cython.cfunc
    def tar(self, buf: Any, label: str, depth: int, primary: bool) -> None:
        try:
            with tarfile.open(fileobj=io.BytesIO(bytes(buf)), mode="r:") as tf:
                self.tar_members(tf, label, depth, primary)
        except (tarfile.TarError, OSError, ValueError, EOFError) as e:
            self.problem("container", label, "tar", f"unreadable tar archive: {e}", primary)

    @cython.cfunc
    def tar_members(self, tf: tarfile.TarFile, label: str, depth: int, primary: bool) -> None:
        count = 0
        for m in tf:
            count += 1
            if count > self.limits.max_container:
                self.problem("limit", label, "limits.max_container",
                             "more tar members than max_container: the rest is not scanned", primary)
                return
            if not m.isfile():
                continue
            part = _join(label, m.name)
            if m.size > self.limits.max_input_bytes:
                self.problem("limit", part, "limits.max_input_bytes", f"tar member of {m.size} bytes: not scanned",
                             primary)
                continue
            if not self.spend(m.size, part):
                return
            f = tf.extractfile(m)
            data = f.read() if f is not None else b""
            outer = self.base
            self.base = None if outer is None or m.sparse else outer + m.offset_data
            try:
                if sniff(data) is not None:
                    self.walk(data, part, depth + 1, primary)
                elif m.name.endswith(".pkl") or m.name in ("pickle", "tensors", "storages", "sys_info") or \
                        (len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5):
                    self.pickles(data, part, 0, depth, primary)
            finally:
                self.base = outer


def _slice(buf: Any, start: int, stop: int) -> Any:
    return buf[start:stop] if isinstance(buf, bytes) else memoryview(buf)[start:stop]


def _member_head(buf: Any, entry: Any) -> bytes:
    """The first bytes of a zip member (enough to tell its format)."""
    if entry.method == 0:
        return bytes(read(buf, entry, len(buf))[:64])
    if entry.method == 8 and entry.data_offset >= 0 and not entry.encrypted:
        d = zlib.decompressobj(-15)
        try:
            return d.decompress(bytes(buf[entry.data_offset:entry.data_offset + 4096]), 64)
        except zlib.error as e:
            raise ZipError(f"deflate data is broken: {e}") from None
    read(buf, entry, 0)  # raises the reason it cannot be read
    return b""


def scan_buffer(buf: Any, judge: Judge, *, source: str, visitor: Any = None) -> ScanReport:
    """Scan one whole input held in ``buf`` (bytes or a memoryview).
    ``visitor``, when given, is called with ``(analysis, buffer)`` for every
    pickle reading kept, in order (the disassembler lists them)."""
    report = ScanReport(source, judge.policy_name, len(buf), "", [], [], [], [], [])  # positional: the quicker call
    w = _Walker(judge, report)
    w.visitor = visitor
    if len(buf) == 0:
        report.format = "empty"
        report.violations.append(Violation("malformed", "", 0, None, "truncated", "the input is empty: no pickle"))
        return report
    if len(buf) < GC_PAUSE_MIN:
        report.format = w.walk(buf, "", 0, True)
        _collect(report, w.analyses)
        return report
    # The simulated stack holds as many small containers as a load would:
    # pausing the cyclic collector saves its repeated passes over them.
    with GCPause():
        report.format = w.walk(buf, "", 0, True)
        _collect(report, w.analyses)
    return report


def _collect(report: ScanReport, analyses: list[tuple[Analysis, bool]]) -> None:
    """Fill the report's pickles, globals and violations from the analyses."""
    by_name: dict[tuple[str, str], GlobalRef] = {}
    seen_sites: set[tuple[str, int, str]] = set()
    seen_violations: set[tuple[str, str, int | None, str]] = set()
    container_violations = report.violations
    report.violations = violations = []
    pickles = report.pickles
    notes = report.notes
    for a, primary in analyses:
        rep: PickleReport = a.report
        rep.primary = primary = primary and rep.primary
        pickles.append(rep)
        for site in rep.sites:
            if site.module is None:
                continue
            key = (site.part, site.offset, site.opcode)
            if key in seen_sites:
                continue
            seen_sites.add(key)
            name = (site.module, site.name)
            ref = by_name.get(name)
            if ref is None:
                ref = by_name[name] = GlobalRef(site.module, site.name, site.allowed, site.rule, site.message)
            elif ref.allowed and not site.allowed:
                ref.allowed, ref.rule, ref.message = False, site.rule, site.message
            ref.sites.append(site)
        found = rep.violations
        if rep.malformed is not None:
            found = [*found, rep.malformed]
        for v in found:
            if primary or v.kind in _SECONDARY_KINDS:
                key2 = (v.kind, v.part, v.offset, v.rule)
                if key2 not in seen_violations:
                    seen_violations.add(key2)
                    violations.append(v)
            else:
                where = f"{v.part} " if v.part else ""
                notes.append(f"{where}({rep.view} reading) {v.kind} at offset {v.offset}: {v.message}")
        if rep.notes:
            notes.extend(f"{rep.part}: {n}" if rep.part else n for n in rep.notes)
    violations.extend(container_violations)
    report.globals = list(by_name.values())
