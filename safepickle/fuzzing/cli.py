"""The fuzz command line: ``python -m fuzz`` (repository) and ``safepickle fuzz``.

::

    python -m fuzz [run] [--seconds N | --examples N] [--seed S] [--policy NAME|FILE ...]
                   [--corpus DIR ...] [--artifacts DIR] [--generator grammar|bytes|atheris|all ...]
    python -m fuzz replay FILE [--policy NAME|FILE]
    python -m fuzz corpus [--out DIR]

Exit status: 0 when nothing was found, 1 when anything was found (replay:
when the reproducer still fails an oracle), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["main"]

_COMMANDS = ("run", "replay", "corpus")


class _Usage(Exception):
    pass


def _prog() -> str:
    here = Path(sys.argv[0] if sys.argv else "")
    if here.name == "safepickle" or (here.name == "__main__.py" and here.parent.name == "safepickle"):
        return "safepickle fuzz"
    return "python -m fuzz"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=_prog(),
        description="Fuzz safepickle's loader with hostile streams: every case goes through five oracles "
                    "(only SafePickleError escapes; nothing dangerous runs; same result as CPython's restricted "
                    "unpickler or a documented refusal; limits kept; scan saw every global).",
    )
    sub = ap.add_subparsers(dest="command")
    run = sub.add_parser("run", help="fuzz (the default command)")
    budget = run.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, help="total time budget, shared by all policy x generator slots "
                                                      "(default 60)")
    budget.add_argument("--examples", type=int, help="cases per generator per policy")
    run.add_argument("--seed", type=int, default=0, help="the same seed runs the same cases (default 0)")
    run.add_argument("--policy", action="append", metavar="NAME|FILE",
                     help="a built-in policy name, a policy file, or 'all' (every built-in; the default); repeatable")
    run.add_argument("--corpus", action="append", metavar="DIR",
                     help="seed inputs for the byte-level generator (default fuzz/corpus, else built-in samples)")
    run.add_argument("--artifacts", default="fuzz-artifacts", metavar="DIR",
                     help="where reproducers and reports go (default fuzz-artifacts)")
    run.add_argument("--generator", action="append", choices=("grammar", "bytes", "atheris", "all"),
                     help="generators to run (default grammar and bytes); repeatable")
    run.add_argument("--no-differential", action="store_true", help="skip the CPython differential oracle")
    run.add_argument("--no-minimize", action="store_true", help="write findings as found, unminimized")
    run.add_argument("--minimize-seconds", type=float, default=20.0, help="time to shrink each finding")
    run.add_argument("--keep-limits", action="store_true",
                     help="fuzz with the policy's own limits instead of the fuzzing caps")
    run.add_argument("--in-process", action="store_true",
                     help="run in this process (a crashing stream then ends the run)")
    run.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    run.add_argument("--setup", metavar="MODULE:FUNCTION",
                     help="called in each fuzzing process before the first case (import or register your classes)")
    rep = sub.add_parser("replay", help="re-run every oracle on a reproducer (.json report or .pickle)")
    rep.add_argument("file")
    rep.add_argument("--policy", metavar="NAME|FILE", help="override the policy recorded in the report")
    rep.add_argument("--no-differential", action="store_true")
    rep.add_argument("--setup", metavar="MODULE:FUNCTION", help="called before replaying (see run --setup)")
    cor = sub.add_parser("corpus", help="(re)write the seed corpus")
    cor.add_argument("--out", default="fuzz/corpus", metavar="DIR")
    cor.add_argument("--no-hostile", action="store_true", help="only the sample pickles")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz command line; return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in _COMMANDS and args[0] not in ("-h", "--help")):
        args.insert(0, "run")
    try:
        opts = _parser().parse_args(args)
    except SystemExit as e:  # argparse: usage errors exit 2, --help exits 0
        return int(e.code or 0)
    try:
        if opts.command == "replay":
            return _replay(opts)
        if opts.command == "corpus":
            return _corpus(opts)
        return _run(opts, sys.stderr)
    except _Usage as e:
        print(f"python -m fuzz: error: {e}", file=sys.stderr)
        return 2


def _policies(opts: argparse.Namespace) -> list[Any]:
    from .. import policies
    from ..policy import load_policy

    names = opts.policy or ["all"]
    out: list[Any] = []
    for p in names:
        if p == "all":
            out.extend(n for n in policies.names() if n not in out)
            continue
        try:
            load_policy(p)
        except Exception as e:
            raise _Usage(f"policy {p!r} cannot be loaded: {e}") from None
        out.append(p)
    return out


def _under_coverage() -> bool:
    """Is coverage.py measuring this process?  (Then slots run in-process,
    where it can see the VM, instead of in child processes.)"""
    cov = sys.modules.get("coverage")
    return cov is not None and getattr(getattr(cov, "Coverage", None), "current", lambda: None)() is not None


def _run(opts: argparse.Namespace, err: TextIO) -> int:
    from .runner import FuzzConfig, RunResult, run

    if opts.seconds is not None and opts.seconds <= 0:
        raise _Usage("--seconds must be positive")
    if opts.examples is not None and opts.examples <= 0:
        raise _Usage("--examples must be positive")
    for folder in opts.corpus or []:
        if not Path(folder).is_dir():
            raise _Usage(f"corpus folder {folder!r} does not exist")
    gens = opts.generator or ["grammar", "bytes"]
    if "all" in gens:
        gens = ["grammar", "bytes", "atheris"]
    gens = list(dict.fromkeys(gens))
    if "grammar" in gens:
        try:
            import hypothesis  # noqa: F401
        except ImportError:
            raise _Usage("the grammar generator needs hypothesis: pip install 'safepickle[fuzz]' "
                         "(or run --generator bytes)") from None
    policies = _policies(opts)
    seconds = opts.seconds if opts.seconds is not None or opts.examples is not None else 60.0
    in_proc = [g for g in gens if g != "atheris"]
    n_slots = len(policies) * len(gens)
    cfg = FuzzConfig(
        policies=policies, generators=in_proc, examples=opts.examples, seed=opts.seed, corpus=opts.corpus,
        artifacts=opts.artifacts, differential=not opts.no_differential, minimize=not opts.no_minimize,
        minimize_seconds=opts.minimize_seconds, keep_limits=opts.keep_limits,
        isolate=not (opts.in_process or _under_coverage()),
        progress=None if opts.quiet else err, setup=opts.setup,
        seconds=None if seconds is None else seconds * len(policies) * len(in_proc) / max(1, n_slots),
    )
    if _under_coverage() and not opts.in_process:
        print("coverage.py is measuring this process: fuzzing in-process so that it sees the VM "
              "(a stream that crashes the interpreter ends the run)", file=err)
    print(f"fuzzing {', '.join(map(str, policies))} with {', '.join(gens)} "
          f"({f'{opts.examples} examples each' if opts.examples else f'{seconds:.0f}s'}, seed {opts.seed}); "
          f"artifacts in {opts.artifacts}", file=err, flush=True)
    result = run(cfg) if in_proc else RunResult([])
    if "atheris" in gens:
        per_policy = None if seconds is None else seconds / max(1, n_slots)
        for p in policies:
            result.slots.append(_atheris_slot(p, opts, per_policy, err))
    _summary(result, opts, err)
    return result.exit_code


def _atheris_slot(policy: Any, opts: argparse.Namespace, seconds: float | None, err: TextIO) -> Any:
    """One atheris run (in a child process) for one policy."""
    from .runner import SlotResult, _child_env

    slot = SlotResult(str(policy), "atheris")
    try:
        import atheris  # noqa: F401
    except ImportError:
        slot.findings.append({"summary": "atheris is not installed (pip install 'safepickle[atheris]')",
                              "report": "", "signature": ["usage", "atheris-missing", ""]})
        return slot
    artifacts = Path(opts.artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.glob("*.json"))
    work = tempfile.mkdtemp(prefix="safepickle-atheris-")
    corpora = list(opts.corpus or (["fuzz/corpus"] if Path("fuzz/corpus").is_dir() else []))
    runs = opts.examples if opts.examples else None
    lib = [f"-seed={opts.seed or 1}", f"-artifact_prefix={artifacts}{os.sep}", "-rss_limit_mb=8192",
           "-timeout=60", "-print_final_stats=1"]
    lib.append(f"-runs={runs}" if runs else f"-max_total_time={max(1, int(seconds or 60))}")
    ours = ["--policy", str(policy), "--artifacts", str(artifacts)]
    if opts.setup:
        ours += ["--setup", opts.setup]
    if opts.no_differential:
        ours.append("--no-differential")
    if opts.no_minimize:
        ours.append("--no-minimize")
    if opts.keep_limits:
        ours.append("--keep-limits")
    from .atheris_main import BOOT

    cmd = [sys.executable, "-c", BOOT, *ours, "--", *lib, work, *corpora]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    slot.seconds = time.monotonic() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("stat::number_of_executed_units:"):
            slot.cases = int(line.split(":")[-1].strip())
        if line.startswith("FINDING") or "ERROR: libFuzzer" in line or line.startswith("  -> "):
            print(line, file=err)
    for path in sorted(set(artifacts.glob("*.json")) - before):
        slot.findings.append({"summary": f"{policy}: see report", "report": str(path), "signature": []})
    for crash in sorted(artifacts.glob("crash-*")) + sorted(artifacts.glob("timeout-*")) + \
            sorted(artifacts.glob("oom-*")):
        if crash.stat().st_mtime >= time.time() - slot.seconds - 5:
            slot.findings.append({"summary": f"{policy}: libFuzzer {crash.name.split('-')[0]} (interpreter "
                                  "crash, timeout or memory)", "report": str(crash), "signature": []})
    if proc.returncode not in (0, 1) and not slot.findings:
        tail = "\n".join(proc.stdout.splitlines()[-5:])
        slot.findings.append({"summary": f"{policy}: atheris exited with {proc.returncode}: {tail}",
                              "report": "", "signature": []})
    shutil.rmtree(work, ignore_errors=True)
    return slot


def _summary(result: Any, opts: argparse.Namespace, err: TextIO) -> None:
    print("", file=err)
    print(f"== safepickle fuzz summary (seed {opts.seed}) ==", file=err)
    print(f"{'policy':<28} {'generator':<9} {'cases':>8} {'execs/s':>8} {'findings':>8} {'dups':>5} "
          f"{'restarts':>8}", file=err)
    for s in result.slots:
        label = s.policy if len(s.policy) <= 28 else "..." + s.policy[-25:]
        print(f"{label:<28} {s.generator:<9} {s.cases:>8} {s.execs_per_second:>8.0f} {len(s.findings):>8} "
              f"{s.duplicates:>5} {s.restarts:>8}", file=err)
    findings = result.findings
    print(f"findings: {len(findings)}", file=err)
    for f in findings:
        print(f"  - {f['summary']}", file=err)
        if f.get("report"):
            print(f"    {f['report']}", file=err)
    print("exit 1 (findings)" if findings else "exit 0 (no finding)", file=err, flush=True)


def _replay(opts: argparse.Namespace) -> int:
    from .replay import replay

    if not Path(opts.file).exists():
        raise _Usage(f"{opts.file}: no such file")
    from .runner import call_setup

    call_setup(opts.setup)
    return replay(opts.file, policy=opts.policy, differential=not opts.no_differential)


def _corpus(opts: argparse.Namespace) -> int:
    from .corpus import write_corpus

    written = write_corpus(opts.out, include_hostile=not opts.no_hostile)
    hostile = sum(1 for p in written if p.name.startswith("hostile-"))
    print(f"wrote {len(written)} seeds to {opts.out} ({len(written) - hostile} samples, {hostile} hostile)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
