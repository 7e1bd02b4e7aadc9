"""``safepickle disasm PATH``: every pickle of a file, opcode by opcode, with verdicts.

Exit 0 when the file passes the policy, 1 when the scan refuses it, 2 when
it cannot be read.
"""

from __future__ import annotations

import sys
from typing import Any

from ..disasm import format_line, listing
from .common import EXIT_OK, EXIT_REFUSED, load_policy_arg, read_input

__all__ = ["run"]


def run(args: Any) -> int:
    from ..scan import judge_for
    from ..scan.containers import scan_buffer

    policy = load_policy_arg(args.policy)
    judge = judge_for(policy, fix_imports=not args.no_fix_imports, encoding=args.encoding, errors=args.errors)
    data = read_input(args.path)
    out = sys.stdout

    def visit(analysis: Any, buf: Any) -> None:
        rep = analysis.report
        title = rep.part or "pickle"
        kind = "" if rep.primary else ", secondary"
        out.write(f"== {title} [{rep.view}{kind}] from offset {rep.start} ==\n")
        if rep.view == "joblib":
            out.write("   (joblib reading: the same opcodes as the plain listing, with the array data skipped; "
                      "see 'safepickle scan -v')\n")
            return
        for line in listing(buf, rep, width=args.width):
            out.write(format_line(line) + "\n")

    report = scan_buffer(data, judge, source=args.path, visitor=visit)
    if not report.pickles:
        out.write(f"{args.path}: no pickle found ({report.format})\n")
    for note in report.notes:
        out.write(f"note: {note}\n")
    verdict = "ok" if report.ok else f"REFUSED ({len(report.violations)} violations)"
    out.write(f"{args.path}: {verdict} under policy {report.policy}\n")
    return EXIT_OK if report.ok else EXIT_REFUSED
