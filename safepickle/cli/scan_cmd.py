"""``safepickle scan PATH...``: scan files, directories and stdin under a policy.

Exit 0 when every input passes, 1 when any is refused, 2 on usage errors or
inputs that cannot be read (those win: the run did not see everything).
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TextIO

from .common import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError, Progress, iter_inputs, load_policy_arg, read_input

__all__ = ["run", "render_text"]

_worker_judge: Any = None


def _judge(policy: Any, args: Any) -> Any:
    from ..scan import judge_for

    return judge_for(policy, fix_imports=not args.no_fix_imports, encoding=args.encoding, errors=args.errors)


def _worker_init(policy_arg: str | None, fix_imports: bool, encoding: str, errors: str) -> None:
    global _worker_judge
    from ..scan import judge_for

    _worker_judge = judge_for(policy_arg, fix_imports=fix_imports, encoding=encoding, errors=errors)


def _scan_one(path: str, judge: Any = None) -> tuple[str, Any]:
    """("ok", report dict) or ("error", reason); never raises for a file's content."""
    from ..scan import scan

    judge = judge or _worker_judge
    try:
        if path == "-":
            data = read_input("-")
            return "ok", scan(data, judge=judge, source="-").to_dict()
        return "ok", scan(path, judge=judge).to_dict()
    except CliError as e:
        return "error", e.message
    except OSError as e:
        return "error", e.strerror or type(e).__name__
    except MemoryError:
        return "error", "out of memory while scanning"


def run(args: Any) -> int:
    policy = load_policy_arg(args.policy)
    judge = _judge(policy, args)
    errors: list[tuple[str, str]] = []
    paths = list(iter_inputs(args.paths, errors))
    if args.jobs < 1:
        raise CliError("--jobs must be 1 or more")
    results: list[tuple[str, tuple[str, Any]]] = []
    progress = Progress(len(paths), enabled=False if args.no_progress else None)
    try:
        if args.jobs > 1 and len([p for p in paths if p != "-"]) > 1:
            results = _parallel(paths, args, progress, judge)
        else:
            for p in paths:
                results.append((p, _scan_one(p, judge)))
                progress.step(p)
    finally:
        progress.close()
    reports = []
    for path, (status, value) in results:
        if status == "ok":
            reports.append(value)
        else:
            errors.append((path, value))
    _output(args, reports, errors, judge.policy_name, sys.stdout)
    for path, reason in errors:
        print(f"safepickle: {path}: {reason}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    if not paths:
        raise CliError("no file to scan")
    return EXIT_OK if all(r["ok"] for r in reports) else EXIT_REFUSED


def _parallel(paths: list[str], args: Any, progress: Progress, judge: Any) -> list[tuple[str, tuple[str, Any]]]:
    out: dict[int, tuple[str, tuple[str, Any]]] = {}
    files = [(i, p) for i, p in enumerate(paths) if p != "-"]
    for i, p in enumerate(paths):
        if p == "-":
            out[i] = (p, _scan_one(p, judge))
            progress.step(p)
    init = (args.policy, not args.no_fix_imports, args.encoding, args.errors)
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_worker_init, initargs=init) as pool:
        futures = {pool.submit(_scan_one, p): (i, p) for i, p in files}
        for fut in as_completed(futures):
            i, p = futures[fut]
            try:
                out[i] = (p, fut.result())
            except Exception as e:  # a worker that died (killed, out of memory): that file is not scanned
                out[i] = (p, ("error", f"the scanning process failed: {type(e).__name__}"))
            progress.step(p)
    return [out[i] for i in sorted(out)]


def _output(args: Any, reports: list[dict], errors: list[tuple[str, str]], policy: str, out: TextIO) -> None:
    from .. import __version__

    if args.format == "json":
        doc = {
            "policy": policy,
            "ok": all(r["ok"] for r in reports) and not errors,
            "files": reports,
            "errors": [{"path": p, "error": e} for p, e in errors],
            "summary": _summary(reports, errors),
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
    elif args.format == "sarif":
        from .sarif import sarif_log

        json.dump(sarif_log(reports, errors, version=__version__, policy=policy), out, indent=2)
        out.write("\n")
    else:
        for r in reports:
            out.write(render_text(r, verbose=args.verbose))
        if len(reports) + len(errors) > 1:
            s = _summary(reports, errors)
            out.write(f"{s['files']} inputs: {s['ok']} ok, {s['refused']} refused, {s['errors']} not scanned "
                      f"(policy {policy})\n")


def _summary(reports: list[dict], errors: list[tuple[str, str]]) -> dict[str, int]:
    ok = sum(1 for r in reports if r["ok"])
    return {"files": len(reports) + len(errors), "ok": ok, "refused": len(reports) - ok, "errors": len(errors)}


def _what(r: dict) -> str:
    fmt = r["format"]
    extra = [f for f in r["formats"] if f != fmt]
    text = fmt + (f" (also {', '.join(extra)})" if extra else "")
    if fmt == "unknown":
        text = "format not recognised, scanned as a raw pickle"
    if r["protocol"] is not None:
        text += f", protocol {r['protocol']}"
    return text


def render_text(r: dict, *, verbose: bool = False) -> str:
    """The text report of one scan report dict."""
    lines = []
    n = len(r["globals"])
    if r["ok"]:
        lines.append(f"{r['source']}: ok: {_what(r)}, {n} global{'s' if n != 1 else ''} (policy {r['policy']})")
    else:
        k = len(r["violations"])
        lines.append(f"{r['source']}: REFUSED: {_what(r)}, {k} violation{'s' if k != 1 else ''} "
                     f"(policy {r['policy']})")
    for v in r["violations"]:
        where = f"{v['part']} " if v["part"] else ""
        at = f"offset {v['offset']}" if v["offset"] is not None else "-"
        op = f" {v['opcode']}" if v["opcode"] else ""
        name = f" {v['global']}" if v["global"] else ""
        lines.append(f"  {where}{at}{op}{name}: [{v['kind']}] {v['message']}")
    if verbose:
        for g in r["globals"]:
            uses = " ".join(f"{u}@{','.join(map(str, offs[:8]))}{'...' if len(offs) > 8 else ''}"
                            for u, offs in g["uses"].items())
            verdict = "allowed" if g["allowed"] else f"REFUSED ({g['rule']})"
            lines.append(f"  global {g['global']}: {verdict}; {uses}")
        for p in r["pickles"]:
            label = p["part"] or "pickle"
            extras = []
            if p["extensions"]:
                extras.append("extension codes " + ", ".join(str(e["code"]) for e in p["extensions"]))
            if p["persistent_ids"]:
                extras.append(f"{len(p['persistent_ids'])} persistent ids")
            if p["out_of_band_buffers"]:
                extras.append(f"{len(p['out_of_band_buffers'])} out-of-band buffers")
            end = p["end"] if p["end"] is not None else "-"
            lines.append(f"  {label} [{p['view']}{'' if p['primary'] else ', secondary'}]: bytes {p['start']}..{end}, "
                         f"protocol {p['protocol']}, {p['opcodes']} opcodes" + ("; " + "; ".join(extras) if extras
                                                                                 else ""))
        for note in r["notes"]:
            lines.append(f"  note: {note}")
    return "\n".join(lines) + "\n"
