"""The five oracles, applied to every fuzz case by :class:`Checker`.

1. **exceptions**: only :class:`~safepickle.SafePickleError` subclasses escape
   ``loads`` and ``load``; an :class:`~safepickle.InternalError` (the VM met a
   state it did not expect) is a finding too, and so is an error that does not
   say where it happened (no offset, an offset past the data, or an offset on
   an opcode without the opcode's name).
2. **audit**: an :class:`~safepickle.audit.AuditRecorder` watches each load
   (process, exec/compile, imports outside the policy's modules, file writes,
   sockets, ctypes...); any event is a finding.  The result is also walked:
   a class, function, module or method in it that the policy does not allow
   was handed out by mistake.
3. **differential**: CPython's C unpickler with ``find_class`` restricted to
   the policy (see :mod:`.cpython_side`) and safepickle must agree: both load
   structurally equal values (:mod:`.graph`), or safepickle refuses with a
   documented refusal (a limit, the strict text grammar, framing, a policy
   rule CPython's ``find_class`` cannot express), or both refuse.  ``load``
   from a file (seekable, or a pipe-like stream) must agree with ``loads``
   and leave the file just after STOP.
4. **resources**: each load ends within the policy's ``max_seconds`` (with
   slack) and its traced memory peak stays within ``max_alloc_bytes`` plus
   what the input itself can account for; a ``MemoryError`` inside the load
   means an allocation that no limit foresaw.
5. **scan**: every global the load asked the policy for (the VM's ``trace``)
   was reported by the static decoder and by ``safepickle.scan`` at the same
   offset, with the same name and verdict; the load never gets past the first
   global that scan says the policy refuses; ``scan`` itself never raises.
"""

from __future__ import annotations

import contextlib
import io
import time
import traceback
import tracemalloc
import types
from dataclasses import dataclass, field
from typing import Any

from .. import vm as _vm
from ..audit import AuditRecorder
from ..codec.decode import decode
from ..errors import ForbiddenGlobal, InternalError, LimitExceeded, MalformedPickle, SafePickleError
from .case import FuzzCase
from .cpython_side import CPythonWorker, Outcome, in_process_safe, load_in_process
from .findings import Finding
from .graph import describe, first_difference, global_name
from .policyspec import PolicyUnderTest
from .sandbox import blocking
from .sandbox import install as install_sandbox

__all__ = ["Checker", "CheckStats", "DOCUMENTED_TEXT_OPCODES", "SEMANTIC_RULES"]

#: Opcodes whose text argument follows our strict grammar (codec/readers.py):
#: a ``bad-argument`` refusal of one of them may be a stream CPython reads.
DOCUMENTED_TEXT_OPCODES = frozenset({"INT", "LONG", "FLOAT", "STRING", "GET", "PUT"})
#: MalformedPickle rules that are documented refusals of what CPython reads.
DOCUMENTED_MALFORMED = frozenset({"frame-straddle", "frame-nested", "frame-truncated"})
#: ForbiddenGlobal rules that CPython's find_class cannot express: policy
#: decisions about uses of objects, arguments, and the resolver's second gate.
SEMANTIC_RULES = frozenset({
    "call-target", "build-target", "append-target", "setitem-target", "additems-target", "build-attribute",
    "build-setstate", "guard", "persistent-id", "extension", "attribute-walk", "module",
})

#: ForbiddenGlobal rules that only the static verdict gives (scan must agree).
_STATIC_RULES = frozenset({"deny", "bad-name", "dotted-needs-proto-4"})

IN_PROCESS_MAX = 16 << 10  # streams without globals this small are unpickled in-process
MEMORY_PER_INPUT_BYTE = 512  # the most a load may legitimately build per input byte (sets, dicts, lists)
MEMORY_SLACK = 8 << 20
TIME_FACTOR = 1.5
TIME_SLACK = 1.0


class _Unseekable:
    """A pipe-like binary stream: ``read`` and ``readline`` only, short reads."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return self._buf.read()
        return self._buf.read(min(n, 4093))

    def readline(self, n: int = -1) -> bytes:
        return self._buf.readline(n)


class _MemoryMeter:
    """The peak memory of one load, above what was in use when it began.

    Small inputs (where amplification bugs live) are measured with
    :mod:`tracemalloc`, started for the load only (it slows every allocation
    several times); large inputs, where tracing would cost seconds, by the
    process's peak resident size (Linux ``VmHWM``, reset through
    ``/proc/self/clear_refs``), when the system offers it."""

    TRACE_MAX = 8 << 10

    def __init__(self, size: int) -> None:
        self.mode = "trace"
        if tracemalloc.is_tracing():
            self.mode = "traced"  # somebody else traces: only reset the peak
        elif size > self.TRACE_MAX and _rss_peak_available():
            self.mode = "rss"
        self.base = 0

    def start(self) -> None:
        if self.mode == "trace":
            tracemalloc.start(1)
        if self.mode in ("trace", "traced"):
            tracemalloc.reset_peak()
            self.base = tracemalloc.get_traced_memory()[0]
        else:
            _reset_rss_peak()
            self.base = _rss_peak()

    def stop(self) -> int:
        if self.mode == "rss":
            return max(0, _rss_peak() - self.base)
        peak = tracemalloc.get_traced_memory()[1] - self.base
        if self.mode == "trace":
            tracemalloc.stop()
        return peak


_RSS_OK: bool | None = None


def _rss_peak() -> int:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_rss_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _rss_peak_available() -> bool:
    global _RSS_OK
    if _RSS_OK is None:
        try:
            _reset_rss_peak()
            _RSS_OK = _rss_peak() > 0
        except OSError:
            _RSS_OK = False
    return _RSS_OK


@dataclass
class _Run:
    """What one load did."""

    value: Any = None
    error: BaseException | None = None
    trace: list = field(default_factory=list)
    events: list = field(default_factory=list)
    elapsed: float = 0.0
    peak: int | None = None
    position: int | None = None


@dataclass
class CheckStats:
    cases: int = 0
    loaded: int = 0
    refused: int = 0
    cpython_inconclusive: int = 0
    cpython_in_process: int = 0
    cpython_worker: int = 0


def _exc_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:300]}"


def _tb_text(e: BaseException) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=12))[-4000:]


_GLOBAL_LIKE = (
    type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
    types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType,
    types.ClassMethodDescriptorType, types.CodeType, types.FrameType, types.GetSetDescriptorType,
    types.MemberDescriptorType, staticmethod, classmethod, property,
)
_ATOMS = (type(None), bool, int, float, complex, str, bytes, bytearray, memoryview)


class Checker:
    """Applies the oracles to cases for one policy under test."""

    def __init__(self, put: PolicyUnderTest, *, differential: bool = True, file_load: bool = True,
                 worker: CPythonWorker | None = None, measure_memory: bool = True) -> None:
        self.measure_memory = measure_memory
        self.put = put
        self.rt = put.runtime
        self.limits = self.rt.limits
        self.differential = differential
        self.file_load = file_load
        self.worker = worker if worker is not None else (CPythonWorker() if differential else None)
        self.stats = CheckStats()
        self.scan_fn = _find_scan(put.policy)
        install_sandbox()  # before any recorder: installing a hook is itself an audit event
        _warm_codecs()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()

    # -- running loads ---------------------------------------------------------------

    def _load(self, case: FuzzCase, from_file: str | None) -> _Run:
        """One load under the audit recorder and the sandbox; the main
        ``loads`` (``from_file`` None) also has its time and memory measured."""
        run = _Run()
        kwargs = case.load_kwargs()
        policy = self.put.policy
        stream = None
        if from_file == "seekable":
            stream = io.BytesIO(case.data)
        elif from_file == "pipe":
            stream = _Unseekable(case.data)
        meter = _MemoryMeter(len(case.data)) if self.measure_memory and stream is None else None
        if meter is not None:
            meter.start()  # outside the recorder: resetting the RSS peak writes a /proc file
        with AuditRecorder(allowed_modules=self.put.allowed_modules) as rec:
            t0 = time.perf_counter()
            try:
                with blocking():
                    if stream is None:
                        run.value = _vm.loads(case.data, policy=policy, trace=run.trace, **kwargs)
                    else:
                        run.value = _vm.load(stream, policy=policy, trace=run.trace, **kwargs)
            except KeyboardInterrupt:
                raise
            except BaseException as e:
                run.error = e
            run.elapsed = time.perf_counter() - t0
        if meter is not None:
            run.peak = meter.stop()
        run.events = list(rec.events)
        if stream is not None and hasattr(stream, "tell") and run.error is None:
            run.position = stream.tell()
        return run

    # -- the oracles -------------------------------------------------------------------

    def check(self, case: FuzzCase) -> list[Finding]:
        """Every finding for one case (empty when all oracles pass)."""
        self.stats.cases += 1
        findings: list[Finding] = []
        main = self._load(case, None)
        if main.error is None:
            self.stats.loaded += 1
        else:
            self.stats.refused += 1
        findings += self._exceptions(case, main, "loads")
        findings += self._audit(main, "loads")
        findings += self._resources(case, main)
        static = _static_globals(case.data)
        sites, scan_findings = self._static_scan(case)
        findings += scan_findings
        findings += self._scan(case, main, static, sites, "loads")
        sp_desc = None
        if main.error is None:
            try:
                sp_desc = describe(main.value)
            except (RecursionError, MemoryError) as e:
                findings.append(Finding("differential", "undescribable", f"result cannot be walked: {_exc_text(e)}"))
        if self.file_load:
            mode = "seekable" if case.sha[-1] in "01234567" else "pipe"
            other = self._load(case, mode)
            findings += self._exceptions(case, other, f"load({mode})")
            findings += self._audit(other, f"load({mode})")
            findings += self._scan(case, other, static, sites, f"load({mode})")
            findings += self._file_agreement(case, main, sp_desc, other, mode)
        if self.differential:
            findings += self._differential(case, main, sp_desc)
        main.value = None
        return findings

    def _exceptions(self, case: FuzzCase, run: _Run, where: str) -> list[Finding]:
        e = run.error
        if e is None:
            return []
        if not isinstance(e, SafePickleError):
            return [Finding("exceptions", "escaped", f"{where} let {type(e).__name__} escape",
                            exception=_exc_text(e), detail={"traceback": _tb_text(e), "via": where})]
        if isinstance(e, InternalError):
            cause = e.__cause__
            return [Finding("exceptions", "internal-error",
                            f"{where}: InternalError (cause {type(cause).__name__ if cause else '?'})",
                            exception=_exc_text(e), offset=e.offset, opcode=e.opcode,
                            detail={"traceback": _tb_text(cause or e), "via": where,
                                    "cause": type(cause).__name__ if cause else None})]
        n = len(case.data)
        if e.offset is None:
            return [Finding("exceptions", "no-offset", f"{where}: {type(e).__name__} without an offset",
                            exception=_exc_text(e), opcode=e.opcode, detail={"via": where})]
        if not 0 <= e.offset <= n:
            return [Finding("exceptions", "bad-offset", f"{where}: offset {e.offset} outside the {n}-byte data",
                            exception=_exc_text(e), offset=e.offset, opcode=e.opcode, detail={"via": where})]
        whole_input = isinstance(e, LimitExceeded) and e.limit == "max_input_bytes" and e.offset == 0
        if e.offset < n and not e.opcode and not whole_input:  # an input-size refusal is about no opcode
            return [Finding("exceptions", "no-opcode", f"{where}: error at offset {e.offset} names no opcode",
                            exception=_exc_text(e), offset=e.offset, detail={"via": where})]
        return []

    def _audit(self, run: _Run, where: str) -> list[Finding]:
        out = []
        if run.events:
            first = run.events[0]
            out.append(Finding("audit", f"event-{first.category}",
                               f"{where}: dangerous audit event {first.event} ({first.detail[:120]})",
                               detail={"events": [f"[{e.category}] {e.event}: {e.detail}" for e in run.events],
                                       "via": where}))
        if run.error is None:
            leaked = self._forbidden_objects(run.value)
            if leaked:
                out.append(Finding("audit", "forbidden-object",
                                   f"{where}: the result holds {leaked[0]}, which the policy does not allow",
                                   detail={"objects": leaked[:10], "via": where}))
        return out

    def _allowed_object(self, obj: Any) -> bool:
        if id(obj) in self.put.allowed_ids:
            return True
        module, name = global_name(obj)
        if isinstance(obj, types.ModuleType):
            return False
        try:
            return bool(self.rt.check(module, name, 4, False).allowed)
        except Exception:
            return False

    def _forbidden_objects(self, value: Any, limit: int = 200_000) -> list[str]:
        """Classes, functions, modules... reachable in a result that the
        policy does not allow (each object's own class hierarchy excepted)."""
        seen: set[int] = set()
        todo: list = [(value, ())]
        out: list[str] = []
        while todo and len(seen) < limit:
            obj, own_types = todo.pop()
            if id(obj) in seen or isinstance(obj, _ATOMS):
                continue
            seen.add(id(obj))
            t = type(obj)
            if t in (list, tuple, set, frozenset):
                todo.extend((x, own_types) for x in obj)
                continue
            if t is dict:
                todo.extend((x, own_types) for x in obj)
                todo.extend((x, own_types) for x in obj.values())
                continue
            if isinstance(obj, _GLOBAL_LIKE):
                if obj in own_types or _own_code(obj, own_types):
                    continue
                if not self._allowed_object(obj):
                    module, name = global_name(obj)
                    out.append(f"{type(obj).__name__} {module}:{name}")
                continue
            mro = getattr(t, "__mro__", (t,))
            todo.extend((x, mro) for x in _instance_parts(obj))
            try:
                reduced = obj.__reduce_ex__(4)
            except Exception:
                continue
            if isinstance(reduced, tuple):
                for part in reduced[1:3]:
                    todo.append((part, mro))
                    if type(part) is tuple:
                        todo.extend((x, mro) for x in part)
        return out

    def _resources(self, case: FuzzCase, run: _Run) -> list[Finding]:
        out = []
        lim = self.limits
        budget_s = lim.max_seconds * TIME_FACTOR + TIME_SLACK
        if run.elapsed > budget_s:
            out.append(Finding("resources", "time",
                               f"load took {run.elapsed:.2f}s, limit max_seconds={lim.max_seconds}",
                               exception=_exc_text(run.error) if run.error else None,
                               detail={"elapsed": run.elapsed}))
        if run.peak is not None:
            budget_b = lim.max_alloc_bytes + MEMORY_PER_INPUT_BYTE * len(case.data) + MEMORY_SLACK
            if run.peak > budget_b:
                out.append(Finding("resources", "memory",
                                   f"load peaked at {run.peak} traced bytes, over {budget_b} "
                                   f"(max_alloc_bytes={lim.max_alloc_bytes} + {MEMORY_PER_INPUT_BYTE}/input byte)",
                                   exception=_exc_text(run.error) if run.error else None,
                                   detail={"peak": run.peak, "budget": budget_b}))
        e = run.error
        if isinstance(e, LimitExceeded) and e.value == "MemoryError":
            out.append(Finding("resources", "memory-error",
                               "an allocation failed with MemoryError instead of being refused by a limit first",
                               exception=_exc_text(e), offset=e.offset, opcode=e.opcode))
        return out

    def _static_scan(self, case: FuzzCase) -> tuple[dict[int, Any] | None, list[Finding]]:
        """``safepickle.scan``'s sites for the case; scan runs on every case,
        since it must never raise for any bytes (CONTRACT.md, Static scan)."""
        if self.scan_fn is None:
            return None, []
        try:
            return self.scan_fn(case), []
        except Exception as e:
            return None, [Finding("scan", "scan-raised", f"safepickle.scan raised {type(e).__name__}",
                                  exception=_exc_text(e), detail={"traceback": _tb_text(e)})]

    def _scan(self, case: FuzzCase, run: _Run, static: dict[int, tuple[str, Any]], sites: dict[int, Any] | None,
              where: str) -> list[Finding]:
        out = []
        for offset, module, name in run.trace:
            op = static.get(offset)
            if op is None:
                out.append(Finding("scan", "unseen-global",
                                   f"{where} asked for {module}:{name} at offset {offset}, where the static "
                                   "decoder saw no global opcode", offset=offset,
                                   detail={"static_offsets": sorted(static)[:50], "via": where}))
                continue
            opname, arg = op
            if opname in ("GLOBAL", "INST") and arg != (module, name):
                out.append(Finding("scan", "name-mismatch",
                                   f"{where} asked for {module}:{name} at offset {offset}; the decoder read "
                                   f"{arg[0]}:{arg[1]}", offset=offset, opcode=opname, detail={"via": where}))
            if sites is None:
                continue
            site = sites.get(offset)
            if site is None:
                out.append(Finding("scan", "scan-missed",
                                   f"{where} asked for {module}:{name} at offset {offset}; safepickle.scan "
                                   "reported no global there", offset=offset, opcode=opname, detail={"via": where}))
            elif site != "dynamic" and site[:2] != (module, name):
                out.append(Finding("scan", "scan-name-mismatch",
                                   f"{where} asked for {module}:{name} at offset {offset}; safepickle.scan "
                                   f"reported {site[0]}:{site[1]}", offset=offset, opcode=opname,
                                   detail={"via": where}))
            elif site != "dynamic" and run.error is None and not site[2]:
                out.append(Finding("scan", "verdict-mismatch",
                                   f"{where} resolved {module}:{name} at offset {offset} and loaded; "
                                   "safepickle.scan says the policy refuses it", offset=offset, opcode=opname,
                                   detail={"via": where}))
        e = run.error
        if (sites is not None and isinstance(e, ForbiddenGlobal) and e.rule in _STATIC_RULES
                and e.offset in sites and sites[e.offset] != "dynamic" and sites[e.offset][2]):
            out.append(Finding("scan", "verdict-mismatch",
                               f"{where} refused {e.module}:{e.name} at offset {e.offset} (rule {e.rule}); "
                               "safepickle.scan says the policy allows it", offset=e.offset, opcode=e.opcode,
                               exception=_exc_text(e), detail={"via": where}))
        if sites:
            # The load must stop at the first global the policy refuses statically:
            # going past it means the VM resolved (or skipped) a forbidden global.
            refused = [off for off, site in sites.items() if site != "dynamic" and not site[2]]
            if refused:
                first = min(refused)
                stop = getattr(e, "offset", None) if isinstance(e, SafePickleError) else None
                if e is None or (stop is not None and stop > first):
                    site = sites[first]
                    what = "loaded" if e is None else f"failed later, at offset {stop}"
                    out.append(Finding("scan", "passed-refused-global",
                                       f"{where} {what}, past {site[0]}:{site[1]} at offset {first}, which "
                                       "the policy refuses", offset=first,
                                       exception=_exc_text(e) if e is not None else None, detail={"via": where}))
        return out

    def _file_agreement(self, case: FuzzCase, main: _Run, sp_desc: list | None, other: _Run,
                        mode: str) -> list[Finding]:
        out = []
        e = main.error
        if (isinstance(e, LimitExceeded) and e.limit == "max_input_bytes" and other.error is None
                and len(case.data) > self.limits.max_input_bytes):
            # loads judges the whole buffer it is given; load reads only up to STOP
            return out
        if (main.error is None) != (other.error is None):
            what = "loaded" if main.error is None else f"refused ({_exc_text(main.error)})"
            got = "loaded" if other.error is None else f"refused ({_exc_text(other.error)})"
            out.append(Finding("differential", "load-vs-loads", f"loads {what} but load({mode}) {got}",
                               exception=_exc_text(other.error or main.error),
                               detail={"mode": mode}))
            return out
        if main.error is None and sp_desc is not None:
            try:
                other_desc = describe(other.value)
            except (RecursionError, MemoryError):
                return out
            diff = first_difference(sp_desc, other_desc)
            if diff is not None:
                out.append(Finding("differential", "load-vs-loads-value",
                                   f"load({mode}) built a different value than loads (token {diff[0]}: "
                                   f"{diff[1]!r} vs {diff[2]!r})", detail={"mode": mode}))
            if mode == "seekable" and other.position is not None:
                end = _stop_end(case.data)
                if end is not None and other.position != end:
                    out.append(Finding("differential", "load-position",
                                       f"load left the file at {other.position}, not just after STOP ({end})"))
        other.value = None
        return out

    def _cpython(self, case: FuzzCase) -> Outcome:
        kwargs = case.load_kwargs()
        if len(case.data) <= IN_PROCESS_MAX and in_process_safe(case.data):
            self.stats.cpython_in_process += 1
            return load_in_process(case.data, self.rt, kwargs)
        self.stats.cpython_worker += 1
        assert self.worker is not None
        return self.worker.run(case.data, self.put.spec, kwargs)

    def _differential(self, case: FuzzCase, main: _Run, sp_desc: list | None) -> list[Finding]:
        cp = self._cpython(case)
        status = cp.get("status")
        if status == "inconclusive":
            self.stats.cpython_inconclusive += 1
            return []
        e = main.error
        if status == "loaded":
            if e is None:
                if sp_desc is None:
                    return []
                diff = first_difference(sp_desc, cp["desc"])
                if diff is None:
                    return []
                return [Finding("differential", "value-mismatch",
                                f"safepickle and CPython built different values (token {diff[0]}: "
                                f"{str(diff[1])[:150]} vs {str(diff[2])[:150]})",
                                detail={"index": diff[0], "safepickle": sp_desc[max(0, diff[0] - 5):diff[0] + 5],
                                        "cpython": cp["desc"][max(0, diff[0] - 5):diff[0] + 5]})]
            if not isinstance(e, SafePickleError) or _documented_refusal(e):
                return []
            return [Finding("differential", "refused-what-cpython-loads",
                            f"safepickle refused ({type(e).__name__}, rule {e.rule}) a stream that CPython's "
                            "restricted unpickler loads", exception=_exc_text(e), offset=e.offset, opcode=e.opcode,
                            detail={"rule": e.rule})]
        if e is None:
            return [Finding("differential", "loaded-what-cpython-refuses",
                            f"safepickle loaded a stream that CPython's restricted unpickler refuses "
                            f"({cp.get('type')}: {cp.get('message', '')[:200]})",
                            exception=f"{cp.get('type')}: {cp.get('message', '')[:200]}",
                            detail={"cpython": dict(cp)})]
        return []


def _documented_refusal(e: SafePickleError) -> bool:
    if isinstance(e, LimitExceeded):
        return True
    rule = e.rule or ""
    if isinstance(e, ForbiddenGlobal):
        return rule in SEMANTIC_RULES or rule.startswith("denylist:")
    if isinstance(e, MalformedPickle):
        if rule in DOCUMENTED_MALFORMED:
            return True
        return rule == "bad-argument" and e.opcode in DOCUMENTED_TEXT_OPCODES
    return False


def _warm_codecs() -> None:
    """Import the codecs fuzz cases name in ``encoding=`` now: the caller
    chooses the encoding, so its first import is not the stream's doing."""
    import codecs

    from .case import ENCODINGS

    for enc in ENCODINGS:
        with contextlib.suppress(LookupError):
            codecs.lookup(enc)


def _own_code(obj: Any, own_types: tuple) -> bool:
    """A function, or a method bound to one, that a class of ``own_types``
    defines in its own body (``ipaddress.IPv4Network`` keeps a lambda of its
    ``__init__`` as ``hosts`` for a /32): what the class's own code put in
    its instance's state, not a global the load handed out."""
    func = obj.__func__ if isinstance(obj, types.MethodType) else obj
    if not isinstance(func, types.FunctionType):
        return False
    qualname = getattr(func, "__qualname__", "")
    module = getattr(func, "__module__", None)
    return any(isinstance(c, type) and c.__module__ == module and qualname.startswith(c.__qualname__ + ".")
               for c in own_types)


def _instance_parts(obj: Any) -> list:
    """What an instance holds that a walk for leaked globals must visit."""
    parts: list = []
    try:
        d = object.__getattribute__(obj, "__dict__")
    except Exception:
        d = None
    if type(d) is dict:
        parts.append(d)
    if isinstance(obj, (list, tuple, set, frozenset)):
        parts.extend(obj)
    elif isinstance(obj, dict):
        parts.extend(obj.keys())
        parts.extend(obj.values())
    dtype = getattr(type(obj), "dtype", None)
    if dtype is not None and type(obj).__name__ in ("ndarray", "MaskedArray"):
        try:
            if obj.dtype.hasobject:
                parts.extend(obj.ravel(order="K").tolist()[:100_000])
        except Exception:
            pass
    return parts


def _static_globals(data: bytes) -> dict[int, tuple[str, Any]]:
    """Offsets of the global-referencing opcodes the decoder reads."""
    out: dict[int, tuple[str, Any]] = {}
    try:
        for op in decode(data):
            name = op.opcode.name
            if name in ("GLOBAL", "INST", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4"):
                out[op.offset] = (name, op.arg)
    except MalformedPickle:
        pass
    return out


def _stop_end(data: bytes) -> int | None:
    try:
        end = None
        for op in decode(data):
            end = op.end
        return end
    except MalformedPickle:
        return None


class _ScanIndex:
    """``safepickle.scan`` as the static side of oracle 5: the sites of the
    first pickle of a stream by offset, ``(raw module, raw name, allowed)`` or
    ``"dynamic"`` for a STACK_GLOBAL whose operands scan could not follow."""

    def __init__(self, policy: Any) -> None:
        from ..scan import judge_for

        self._judge_for = judge_for
        self._policy = policy
        self._judges: dict[tuple, Any] = {}

    def __call__(self, case: FuzzCase) -> dict[int, Any]:
        from ..scan import scan

        key = (case.fix_imports, case.encoding, case.errors)
        judge = self._judges.get(key)
        if judge is None:
            judge = self._judge_for(self._policy, fix_imports=case.fix_imports, encoding=case.encoding,
                                    errors=case.errors)
            self._judges[key] = judge
        report = scan(case.data, judge=judge)
        out: dict[int, Any] = {}
        for pick in report.pickles:
            if pick.start != 0:
                continue
            for site in pick.sites:
                if site.module is None:
                    out[site.offset] = "dynamic"
                else:
                    out[site.offset] = (site.raw_module, site.raw_name, site.allowed)
            break
        return out


def _find_scan(policy: Any) -> Any:
    try:
        return _ScanIndex(policy)
    except ImportError:  # no static scan in this build: the decoder alone
        return None
