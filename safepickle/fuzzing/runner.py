"""The fuzz loop, and the supervisor that keeps it alive.

A run is a list of *slots* (policy x generator), each with an equal share of
the time budget (``seconds``) or the same number of cases (``examples``).
:func:`run_slot` runs one slot in this process: it generates case ``i``,
applies every oracle, minimizes and writes each new finding, and prints
progress.

A stream that crashes the interpreter (a C stack overflow in ``hash`` of a
deeply nested tuple, say) would take an in-process fuzzer down with it, so
:func:`run` (with ``isolate=True``, the default of the command line) runs each
slot in a child process that reports every case number on a pipe before it
runs it.  When the child dies, the supervisor regenerates that case (sources
are deterministic), minimizes it with forked loads, writes the crash as a
finding, and resumes the slot at the next case; a child that stops reporting
for ``hang_seconds`` is killed and its case reported as a hang.
"""

from __future__ import annotations

import io
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .case import FuzzCase
from .findings import Finding, write_artifacts
from .minimize import minimize
from .oracles import Checker
from .policyspec import FUZZ_CAPS, TIGHT_CAPS, PolicyUnderTest, prepare, spec_for
from .sources import make_source

__all__ = ["FuzzConfig", "SlotResult", "RunResult", "call_setup", "run", "run_slot"]


@dataclass
class FuzzConfig:
    """Options of a run (the command line's flags)."""

    policies: list[Any] = field(default_factory=lambda: ["data-only"])
    generators: list[str] = field(default_factory=lambda: ["grammar", "bytes"])
    seconds: float | None = None
    examples: int | None = None
    seed: int = 0
    corpus: list[str] | None = None
    artifacts: str = "fuzz-artifacts"
    differential: bool = True
    file_load: bool = True
    minimize: bool = True
    minimize_seconds: float = 20.0
    keep_limits: bool = False
    isolate: bool = True
    hang_seconds: float = 120.0
    memory_cap: int = 8 << 30  # address space of an isolated child
    setup: str | None = None  # "module:function" called in each fuzzing process before its first case
    tight_every: int = 8  # every Nth case also runs under TIGHT_CAPS (0: never; never with keep_limits)
    progress: TextIO | None = None
    progress_every: float = 5.0

    @property
    def caps(self) -> dict[str, Any] | None:
        return None if self.keep_limits else dict(FUZZ_CAPS)


@dataclass
class SlotResult:
    """What one slot did."""

    policy: str
    generator: str
    cases: int = 0
    seconds: float = 0.0
    findings: list[dict[str, Any]] = field(default_factory=list)  # {"summary", "report", "signature"}
    duplicates: int = 0
    restarts: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def execs_per_second(self) -> float:
        return self.cases / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RunResult:
    slots: list[SlotResult]

    @property
    def findings(self) -> list[dict[str, Any]]:
        return [f for s in self.slots for f in s.findings]

    @property
    def exit_code(self) -> int:
        return 1 if self.findings else 0


def _say(cfg: FuzzConfig, text: str) -> None:
    if cfg.progress is not None:
        print(text, file=cfg.progress, flush=True)


def _slot_budget(cfg: FuzzConfig, n_slots: int) -> tuple[float | None, int | None]:
    if cfg.examples is not None:
        return None, cfg.examples
    return (cfg.seconds if cfg.seconds is not None else 60.0) / max(1, n_slots), None


def call_setup(setup: str | None) -> None:
    """Import ``module`` and call ``function()`` of a ``module:function``
    setup hook (users import or register their own classes there; the
    harness's tests plant defects there to prove the oracles find them)."""
    if not setup:
        return
    import importlib

    module, _, func = setup.partition(":")
    if not module or not func:
        raise ValueError(f"setup {setup!r} is not module:function")
    getattr(importlib.import_module(module), func)()


def run_slot(put: PolicyUnderTest, generator: str, cfg: FuzzConfig, *, start: int = 0,
             seconds: float | None = None, examples: int | None = None, known: set | None = None,
             heartbeat: Any = None) -> SlotResult:
    """Run one slot in this process.  ``known`` holds the signatures already
    reported (a finding with one of them is counted, not written again)."""
    source = make_source(generator, put, cfg.seed, cfg.corpus)
    checker = Checker(put, differential=cfg.differential, file_load=cfg.file_load)
    tight_put, tight = put, None
    if cfg.tight_every and not cfg.keep_limits:
        tight_put = prepare({**put.spec, "caps": dict(TIGHT_CAPS)}, None)
        tight = Checker(tight_put, differential=cfg.differential, file_load=cfg.file_load, worker=checker.worker)
        tight.stats = checker.stats
    result = SlotResult(put.label, generator)
    known = set() if known is None else known
    t0 = time.monotonic()
    last_report = t0
    i = start
    try:
        while True:
            if examples is not None and i - start >= examples:
                break
            if seconds is not None and time.monotonic() - t0 >= seconds:
                break
            if heartbeat is not None:
                heartbeat(i)
            case = source.case(i)
            use_tight = tight is not None and i % cfg.tight_every == cfg.tight_every - 1
            case_put, case_checker = (tight_put, tight) if use_tight else (put, checker)
            for finding in case_checker.check(case):
                key = (put.label, *finding.signature)
                if key in known:
                    result.duplicates += 1
                    continue
                known.add(key)
                result.findings.append(_report(case_put, generator, cfg, case_checker, finding, case, i, heartbeat))
                _say(cfg, f"  FINDING {result.findings[-1]['summary']}\n    -> {result.findings[-1]['report']}")
            i += 1
            result.cases += 1
            now = time.monotonic()
            if now - last_report >= cfg.progress_every:
                last_report = now
                _say(cfg, _progress_line(put.label, generator, result.cases, now - t0, len(result.findings),
                                         checker))
    finally:
        result.seconds = time.monotonic() - t0
        result.stats = asdict(checker.stats)
        checker.close()
    _say(cfg, _progress_line(put.label, generator, result.cases, result.seconds, len(result.findings), checker)
         + " (done)")
    return result


def _progress_line(label: str, gen: str, cases: int, secs: float, nfind: int, checker: Checker) -> str:
    st = checker.stats
    rate = cases / secs if secs > 0 else 0.0
    return (f"[{label}/{gen}] cases={cases} execs/s={rate:.0f} findings={nfind} "
            f"(loaded={st.loaded} refused={st.refused} cpython: in-process={st.cpython_in_process} "
            f"worker={st.cpython_worker} inconclusive={st.cpython_inconclusive})")


def _report(put: PolicyUnderTest, generator: str, cfg: FuzzConfig, checker: Checker, finding: Finding,
            case: FuzzCase, index: int, heartbeat: Any) -> dict[str, Any]:
    small = case
    final = finding
    if cfg.minimize:
        saved = asdict(checker.stats)

        def same(candidate: FuzzCase) -> bool:
            if heartbeat is not None:
                heartbeat(None)
            return any(f.signature == finding.signature for f in checker.check(candidate))

        small = minimize(case, same, seconds=cfg.minimize_seconds)
        again = [f for f in checker.check(small) if f.signature == finding.signature]
        if again:
            final = again[0]
        else:  # flaky (timing): keep the original
            small = case
        for k, v in saved.items():
            setattr(checker.stats, k, v)
    path = write_artifacts(cfg.artifacts, final, small, put.spec, original=case,
                           extra={"seed": cfg.seed, "generator": generator, "index": index})
    return {"summary": f"{put.label}: {final.summary()}", "report": str(path),
            "signature": list(final.signature)}


# -- the supervised run ----------------------------------------------------------------


def run(cfg: FuzzConfig) -> RunResult:
    """Run every slot; isolated in child processes when ``cfg.isolate``."""
    specs = [spec_for(p, cfg.caps) for p in cfg.policies]
    slots = [(spec, gen) for spec in specs for gen in cfg.generators]
    seconds, examples = _slot_budget(cfg, len(slots))
    results = []
    if not cfg.isolate:
        call_setup(cfg.setup)
    for spec, gen in slots:
        if cfg.isolate:
            results.append(_supervise(cfg, spec, gen, seconds, examples))
        else:
            put = prepare(spec, cfg.caps)
            results.append(run_slot(put, gen, cfg, seconds=seconds, examples=examples))
    return RunResult(results)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _supervise(cfg: FuzzConfig, spec: dict[str, Any], gen: str, seconds: float | None,
               examples: int | None) -> SlotResult:
    from .policyspec import label_of

    total = SlotResult(label_of(spec), gen)
    known: set = set()
    start = 0
    t0 = time.monotonic()
    while True:
        left_s = None if seconds is None else seconds - (time.monotonic() - t0)
        left_n = None if examples is None else examples - (start - 0)
        if (left_s is not None and left_s <= 0) or (left_n is not None and left_n <= 0):
            break
        outcome = _run_child(cfg, spec, gen, start, left_s, left_n, known)
        kind, last, done = outcome
        if done is not None:
            part = done
            total.cases += part["cases"]
            total.findings += part["findings"]
            total.duplicates += part["duplicates"]
            for k, v in part["stats"].items():
                total.stats[k] = total.stats.get(k, 0) + v
            known.update(tuple(s) for s in part["known"])
            break
        # the child died or hung at case `last`
        total.restarts += 1
        if last is None:
            _say(cfg, f"  the fuzzing child died before its first case ({kind}); giving up on this slot")
            total.findings.append({"summary": f"{total.policy}: child process failed to start ({kind})",
                                   "report": "", "signature": ["exceptions", "child-start", kind]})
            break
        total.cases += last - start + 1
        found = _report_crash(cfg, spec, gen, last, kind, known)
        if found is not None:
            total.findings.append(found)
        start = last + 1
    total.seconds = time.monotonic() - t0
    return total


def _run_child(cfg: FuzzConfig, spec: dict[str, Any], gen: str, start: int, seconds: float | None,
               examples: int | None, known: set) -> tuple[str, int | None, dict[str, Any] | None]:
    """Run a slot in a child; return (how it ended, last case started, summary if it finished)."""
    rfd, wfd = os.pipe()
    child_cfg = {
        "spec": spec, "gen": gen, "start": start, "examples": examples,
        "deadline": None if seconds is None else time.time() + seconds,
        "known": [list(k) for k in known], "fd": wfd,
        "cfg": {k: getattr(cfg, k) for k in FuzzConfig.__dataclass_fields__ if k not in ("progress", "policies")},
        "quiet": cfg.progress is None,
    }
    # The child's progress (its stderr) is relayed to cfg.progress line by line.
    proc = subprocess.Popen(
        [sys.executable, "-c", "from safepickle.fuzzing.runner import child_main; child_main()",
         json.dumps(child_cfg)],
        pass_fds=(wfd,), env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(wfd)
    errfd = proc.stderr.fileno()
    last: int | None = None
    done: dict[str, Any] | None = None
    bufs = {rfd: b"", errfd: b""}
    open_fds = [rfd, errfd]
    kind = "exit"
    beat = time.monotonic()
    try:
        while rfd in open_fds:
            ready, _, _ = select.select(open_fds, [], [], 1.0)
            if time.monotonic() - beat > cfg.hang_seconds:
                kind = "hang"
                proc.kill()
                break
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.remove(fd)
                    continue
                bufs[fd] += chunk
                while b"\n" in bufs[fd]:
                    line, bufs[fd] = bufs[fd].split(b"\n", 1)
                    if fd == errfd:
                        _say(cfg, line.decode("utf-8", "replace"))
                    elif line.startswith(b"done "):
                        done = json.loads(line[5:])
                    else:
                        beat = time.monotonic()
                        if line.isdigit():
                            last = int(line)
    finally:
        os.close(rfd)
        code = proc.wait()
        rest = proc.stderr.read()
        proc.stderr.close()
        for line in (bufs[errfd] + rest).decode("utf-8", "replace").splitlines():
            _say(cfg, line)
    if done is not None:
        return "done", last, done
    if kind != "hang":
        kind = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    return kind, last, None


def child_main() -> None:
    """Entry point of an isolated slot (see :func:`_run_child`)."""
    conf = json.loads(sys.argv[1])
    cfg = FuzzConfig(**{k: v for k, v in conf["cfg"].items() if k in FuzzConfig.__dataclass_fields__})
    cfg.progress = None if conf["quiet"] else sys.stderr
    cap = cfg.memory_cap
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    out = os.fdopen(conf["fd"], "wb", buffering=0)

    def heartbeat(i: int | None) -> None:
        out.write(b"alive\n" if i is None else b"%d\n" % i)

    call_setup(cfg.setup)
    put = prepare(conf["spec"], cfg.caps)
    known = {tuple(k) for k in conf["known"]}
    seconds = None if conf["deadline"] is None else max(0.0, conf["deadline"] - time.time())
    res = run_slot(put, conf["gen"], cfg, start=conf["start"], seconds=seconds, examples=conf["examples"],
                   known=known, heartbeat=heartbeat)
    summary = {"cases": res.cases, "findings": res.findings, "duplicates": res.duplicates, "stats": res.stats,
               "known": [list(k) for k in known]}
    out.write(b"done " + json.dumps(summary).encode() + b"\n")
    out.close()


# -- crashes -----------------------------------------------------------------------------


_SETUP_DONE: set[str] = set()


def _setup_once(setup: str | None) -> None:
    """The supervisor regenerates crashing cases and forks loads: with the
    same setup as the child, once."""
    if setup and setup not in _SETUP_DONE:
        _SETUP_DONE.add(setup)
        call_setup(setup)


def _fork_outcome(put: PolicyUnderTest, case: FuzzCase, cpython_too: bool) -> str | None:
    """Load in a forked child; the name of the signal that killed it, or None."""
    from .. import vm as _vm

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            signal.alarm(60)
            for how in ("loads", "load"):
                try:
                    if how == "loads":
                        _vm.loads(case.data, policy=put.policy, **case.load_kwargs())
                    else:
                        _vm.load(io.BytesIO(case.data), policy=put.policy, **case.load_kwargs())
                except BaseException:
                    pass
            if cpython_too:
                from .cpython_side import load_in_process

                load_in_process(case.data, put.runtime, case.load_kwargs())
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return None


def _report_crash(cfg: FuzzConfig, spec: dict[str, Any], gen: str, index: int, kind: str,
                  known: set) -> dict[str, Any] | None:
    put = prepare(spec, cfg.caps)
    _setup_once(cfg.setup)
    source = make_source(gen, put, cfg.seed, cfg.corpus)
    case = source.case(index)
    if cfg.tight_every and not cfg.keep_limits and index % cfg.tight_every == cfg.tight_every - 1:
        put = prepare({**put.spec, "caps": dict(TIGHT_CAPS)}, None)  # the case ran under the tight limits
    if kind == "hang":
        finding = Finding("resources", "hang", f"case {index} ran for more than {cfg.hang_seconds:.0f}s")
        small = case
    else:
        sig = _fork_outcome(put, case, cpython_too=False)
        if sig is None:
            if _fork_outcome(put, case, cpython_too=True) is not None:
                _say(cfg, f"  case {index}: CPython's own unpickler crashed in-process ({kind}); not a "
                          "safepickle finding")
                return None
            finding = Finding("exceptions", "crash", f"the fuzzing process died ({kind}) at case {index}; "
                              "not reproduced by a load alone", exception=kind)
            small = case
        else:
            finding = Finding("exceptions", "crash", f"the process dies with {sig} while loading this stream",
                              exception=f"{sig}: interpreter crash")
            small = minimize(case, lambda c: _fork_outcome(put, c, False) == sig,
                             seconds=cfg.minimize_seconds * 3) if cfg.minimize else case
    key = (put.label, *finding.signature)
    if key in known:
        return None
    known.add(key)
    path = write_artifacts(cfg.artifacts, finding, small, put.spec, original=case,
                           extra={"seed": cfg.seed, "generator": gen, "index": index})
    summary = f"{put.label}: {finding.summary()}"
    _say(cfg, f"  FINDING {summary}\n    -> {path}")
    return {"summary": summary, "report": str(path), "signature": list(finding.signature)}
