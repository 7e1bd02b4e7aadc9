"""``safepickle disasm PATH``: every pickle of a file, opcode by opcode, with verdicts.

Exit 0 when the file passes the policy, 1 when the scan refuses it, 2 when
it cannot be read.
"""

from __future__ import annotations

import sys
from typing import Any

from ..disasm import format_line, joblib_gaps, listing
from .common import EXIT_OK, EXIT_REFUSED, CliError, load_policy_arg, read_input

__all__ = ["run"]

# Readings kept only in case a consumer reads the bytes that way.
_SECONDARY_VIEWS = ("plain pickle", "raw pickle")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def run(args: Any) -> int:
    from ..scan import judge_for
    from ..scan._scanner_select import scan_buffer  # the build judge_for made the Judge for

    if args.width < 1:
        raise CliError("--width must be 1 or more")
    policy = load_policy_arg(args.policy)
    judge = judge_for(policy, fix_imports=not args.no_fix_imports, encoding=args.encoding, errors=args.errors)
    data = read_input(args.path)
    out = sys.stdout

    def visit(analysis: Any, buf: Any) -> None:
        rep = analysis.report
        title = rep.part or "pickle"
        # The plain reading of a joblib stream is kept as a secondary one after the visit.
        secondary = not rep.primary or rep.view in _SECONDARY_VIEWS
        out.write(f"== {title} [{rep.view}{', secondary' if secondary else ''}] from offset {rep.start} ==\n")
        bad = rep.malformed
        if rep.view == "plain pickle" and bad is not None and bad.offset is not None:
            # Up to where it fails, the same opcodes as the joblib listing that follows.
            out.write(f"   (what pickle.load reads without joblib: the joblib listing below up to offset "
                      f"{bad.offset}, where it fails: {bad.message})\n")
            return
        gaps = joblib_gaps(rep, [n.report for n in analysis.nested]) if rep.view == "joblib" else None
        for line in listing(buf, rep, width=args.width, gaps=gaps):
            out.write(format_line(line) + "\n")

    report = scan_buffer(data, judge, source=args.path, visitor=visit)
    if not report.pickles:
        out.write(f"{args.path}: no pickle found ({report.format})\n")
    for note in report.notes:
        out.write(f"note: {note}\n")
    verdict = "ok" if report.ok else f"REFUSED ({_plural(len(report.violations), 'violation')})"
    out.write(f"{args.path}: {verdict} under policy {report.policy}\n")
    return EXIT_OK if report.ok else EXIT_REFUSED
