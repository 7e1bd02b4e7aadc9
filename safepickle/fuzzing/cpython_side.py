"""The other side of the differential oracle: CPython's C unpickler, with
``find_class`` restricted to the policy's allowlist.

``find_class`` admits exactly what ``Runtime.check`` (the static verdict, no
import) allows and then lets CPython import the global its own way, so a
difference in *how* a name is resolved shows up as a difference in results.
CPython's C ``Unpickler`` does not expose the protocol to ``find_class``; the
protocol in force at each global opcode is read from the stream with the
codec's decoder (calls happen in stream order).

Streams that reference no global at all cannot make CPython run anything, so
small ones with small memo indices are unpickled in-process
(:func:`in_process_safe`, :func:`load_in_process`).  Every other stream
goes to a worker process (:class:`CPythonWorker`) whose address space is
capped with ``RLIMIT_AS`` and whose every load has a deadline: a hostile
stream can exhaust the worker, never the fuzzer.  A worker that dies or hangs
is restarted and the case is reported as inconclusive.

The worker answers with the canonical description (:mod:`.graph`) of what it
loaded, or the refusal.
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import json
import os
import pickle
import select
import struct
import subprocess
import sys
import time
from typing import Any

from ..codec.decode import decode
from ..errors import MalformedPickle
from .graph import describe

__all__ = [
    "GLOBAL_OPS",
    "CPythonWorker",
    "RestrictedUnpickler",
    "Outcome",
    "global_protocols",
    "in_process_safe",
    "load_in_process",
    "restricted_load",
]

#: Opcodes that make an unpickler call ``find_class``.
GLOBAL_OPS = frozenset({"GLOBAL", "INST", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4"})

_HEADER = struct.Struct(">I")


class Outcome(dict):
    """What one side did: ``status`` is ``loaded`` (with ``desc``), ``refused``
    (with ``type`` and ``message``), or ``inconclusive`` (the side could not
    decide: resource cap, crash, timeout; with ``why``)."""


def global_protocols(data: bytes) -> list[int]:
    """The protocol in force at each global-referencing opcode, in stream
    order, as far as the codec's decoder reads the stream."""
    protos: list[int] = []
    proto = 0
    try:
        for op in decode(data):
            name = op.opcode.name
            if name == "PROTO":
                proto = op.arg
            elif name in GLOBAL_OPS:
                protos.append(proto)
    except MalformedPickle:
        pass
    return protos


#: Memo indices up to this are harmless to CPython (its memo is an array
#: grown to the highest index put: LONG_BINPUT 0x7fffffff costs it 16 GiB).
SAFE_MEMO_INDEX = 1 << 16
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def in_process_safe(data: bytes) -> bool:
    """True when CPython's unpickler can read ``data`` in this process without
    risk: the whole stream decodes to STOP (so CPython reads the same
    opcodes), no opcode references a global (nothing gets imported or
    called), and no memo index is large (CPython allocates the memo up to
    it).  Everything else goes to the capped worker."""
    try:
        for op in decode(data):
            name = op.opcode.name
            if name in GLOBAL_OPS or (name in _PUTS and op.arg >= SAFE_MEMO_INDEX):
                return False
    except MalformedPickle:
        return False
    return True


class RestrictedUnpickler(pickle.Unpickler):
    """CPython's C unpickler whose ``find_class`` admits only what the
    policy's static verdict allows."""

    def __init__(self, file: Any, runtime: Any, protos: list[int], *, fix_imports: bool = True,
                 **kw: Any) -> None:
        super().__init__(file, fix_imports=fix_imports, **kw)
        self._rt = runtime
        self._protos = protos
        self._calls = 0
        self._fix = fix_imports

    def find_class(self, module: str, name: str) -> Any:
        protos = self._protos
        proto = protos[min(self._calls, len(protos) - 1)] if protos else 0
        self._calls += 1
        verdict = self._rt.check(module, name, proto, self._fix)
        if not verdict.allowed:
            raise pickle.UnpicklingError(f"{module}:{name} refused ({verdict.rule})")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not supported by the differential side")


def _install_extensions(runtime: Any) -> None:
    """Make copyreg's registry (which CPython's EXT opcodes read) hold exactly
    the policy's extension table.  Only ever done in the worker, or in-process
    for streams without EXT opcodes (where it is not consulted)."""
    table = getattr(runtime, "extensions", None) or {}
    copyreg._extension_registry.clear()
    copyreg._inverted_registry.clear()
    copyreg._extension_cache.clear()
    for code, entry in dict(table).items():
        module, _, name = str(entry).partition(":")
        copyreg._inverted_registry[int(code)] = (module, name)
        copyreg._extension_registry[(module, name)] = int(code)


def restricted_load(data: bytes, runtime: Any, kwargs: dict[str, Any]) -> Any:
    """Unpickle with the restricted C unpickler (raises what it raises)."""
    kw = dict(kwargs)
    fix = kw.pop("fix_imports", True)
    return RestrictedUnpickler(io.BytesIO(data), runtime, global_protocols(data), fix_imports=fix, **kw).load()


def _outcome_of(data: bytes, runtime: Any, kwargs: dict[str, Any]) -> Outcome:
    try:
        value = restricted_load(data, runtime, kwargs)
        return Outcome(status="loaded", desc=describe(value))
    except (MemoryError, RecursionError) as e:
        return Outcome(status="inconclusive", why=type(e).__name__)
    except Exception as e:
        return Outcome(status="refused", type=type(e).__name__, message=str(e)[:300])


def load_in_process(data: bytes, runtime: Any, kwargs: dict[str, Any]) -> Outcome:
    """The CPython side for a stream :func:`in_process_safe` accepts."""
    return _outcome_of(data, runtime, kwargs)


# -- the worker process ---------------------------------------------------------


def _send(stream: Any, payload: dict[str, Any]) -> None:
    raw = json.dumps(payload, ensure_ascii=True).encode("ascii")
    stream.write(_HEADER.pack(len(raw)) + raw)
    stream.flush()


def _recv(stream: Any) -> dict[str, Any] | None:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (n,) = _HEADER.unpack(head)
    raw = stream.read(n)
    if len(raw) < n:
        return None
    return json.loads(raw)


def _runtime_for(spec: dict[str, Any], cache: dict[str, Any]) -> Any:
    key = json.dumps(spec, sort_keys=True)
    rt = cache.get(key)
    if rt is None:
        from .policyspec import policy_from_spec

        rt = policy_from_spec(spec).runtime()
        cache[key] = rt
    return rt


def worker_main() -> None:
    """The worker's loop: one request, one answer, on stdin/stdout."""
    import resource

    with contextlib.suppress(ImportError):  # NumPy's import reserves address space: before the cap
        import numpy  # noqa: F401
    cap = int(os.environ.get("SAFEPICKLE_FUZZ_WORKER_AS", str(3 << 30)))
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers on the real stdout
    cache: dict[str, Any] = {}
    while True:
        req = _recv(stdin)
        if req is None:
            return
        try:
            rt = _runtime_for(req["policy"], cache)
            _install_extensions(rt)
            kwargs = dict(req["kwargs"])
            if kwargs.get("buffers") is not None:
                kwargs["buffers"] = [bytearray.fromhex(b) for b in kwargs["buffers"]]
            out = _outcome_of(bytes.fromhex(req["data"]), rt, kwargs)
        except MemoryError:
            out = Outcome(status="inconclusive", why="MemoryError")
        except Exception as e:
            out = Outcome(status="inconclusive", why=f"worker error {type(e).__name__}: {e}")
        try:
            _send(stdout, out)
        except MemoryError:
            _send(stdout, Outcome(status="inconclusive", why="MemoryError while answering"))


class CPythonWorker:
    """A client of one worker process; restarted whenever it dies or hangs."""

    def __init__(self, timeout: float = 10.0, address_space: int = 3 << 30) -> None:
        self.timeout = timeout
        self.address_space = address_space
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ)
        env["SAFEPICKLE_FUZZ_WORKER_AS"] = str(self.address_space)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return subprocess.Popen(
            [sys.executable, "-c", "from safepickle.fuzzing.cpython_side import worker_main; worker_main()"],
            # stderr: CPython's unpickler prints its own complaints there (e.g. a
            # bytearray freed with exported buffers after a failed readinto)
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=2)
            except Exception:
                proc.kill()
                proc.wait()

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            self.restarts += 1

    def run(self, data: bytes, policy_spec: dict[str, Any], kwargs: dict[str, Any]) -> Outcome:
        """The CPython side's outcome for one stream."""
        if self.proc is None:
            self.proc = self._start()
        proc = self.proc
        kw = dict(kwargs)
        if kw.get("buffers") is not None:
            kw["buffers"] = [bytes(b).hex() for b in kw["buffers"]]
        try:
            _send(proc.stdin, {"policy": policy_spec, "data": data.hex(), "kwargs": kw})
        except (BrokenPipeError, OSError):
            self._kill()
            return Outcome(status="inconclusive", why="worker died")
        answer = self._read_answer(proc)
        if answer is None:
            code = proc.poll()
            self._kill()
            why = "worker timed out" if code is None else f"worker exited with {code}"
            return Outcome(status="inconclusive", why=why)
        return Outcome(answer)

    def _read_answer(self, proc: subprocess.Popen) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.timeout
        fd = proc.stdout.fileno()
        buf = bytearray()
        need = _HEADER.size
        have_header = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            buf += chunk
            if not have_header and len(buf) >= _HEADER.size:
                need = _HEADER.size + _HEADER.unpack_from(buf)[0]
                have_header = True
            if have_header and len(buf) >= need:
                return json.loads(bytes(buf[_HEADER.size:need]))
