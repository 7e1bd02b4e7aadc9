"""``python -m fuzz replay FILE``: re-run every oracle on one reproducer.

Exit status 1 while the finding (or any other) still reproduces, 0 once the
stream passes every oracle (the bug is fixed).  A reproducer that crashes the
interpreter is first loaded in a forked child, so replaying it reports the
crash instead of dying of it.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from .findings import read_artifact
from .oracles import Checker
from .policyspec import FUZZ_CAPS, prepare, spec_for

__all__ = ["replay"]


def replay(path: str, policy: Any = None, out: TextIO | None = None, differential: bool = True) -> int:
    """Re-run every oracle on the reproducer at ``path`` (a ``.json`` report or
    its ``.pickle``); print what happens; return 1 if anything is found."""
    out = sys.stdout if out is None else out
    case, spec, report = read_artifact(path)
    if policy is not None:
        spec = spec_for(policy, FUZZ_CAPS)
    elif spec is None:
        spec = spec_for("data-only", FUZZ_CAPS)
    put = prepare(spec, caps=None)
    print(f"replaying {path} ({len(case.data)} bytes) under policy {put.label}", file=out)
    if report.get("summary"):
        print(f"  recorded: {report['summary']}", file=out)
    from .runner import _fork_outcome

    sig = _fork_outcome(put, case, cpython_too=False)
    if sig is not None:
        print(f"  FINDING [exceptions/crash]: the process dies with {sig} while loading this stream", file=out)
        return 1
    checker = Checker(put, differential=differential)
    try:
        findings = checker.check(case)
        try:
            from .. import vm

            value = vm.loads(case.data, policy=put.policy, **case.load_kwargs())
            print(f"  loads -> {type(value).__module__}.{type(value).__qualname__}", file=out)
        except BaseException as e:
            print(f"  loads -> {type(e).__name__}: {str(e)[:300]}", file=out)
    finally:
        checker.close()
    for f in findings:
        print(f"  FINDING {f.summary()}", file=out)
        tb = f.detail.get("traceback")
        if tb:
            print("    " + tb.strip().replace("\n", "\n    "), file=out)
    if not findings:
        print("  no finding: every oracle passes", file=out)
    return 1 if findings else 0
