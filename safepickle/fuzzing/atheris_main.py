"""Coverage-guided fuzzing with atheris (``pip install safepickle[atheris]``).

libFuzzer mutates inputs towards new coverage of the (instrumented) VM,
codec, policy engine and scan; every input goes through the same oracles as
the other generators.  An input whose first byte is ``0xff`` is handed to the
grammar generator (``GrammarSource.from_bytes``: hypothesis draws the program
from the rest); any other input is the pickle stream itself, so the seed
corpus (plain pickles) is a corpus here as it is.

Run it as ``python -m fuzz --generator atheris ...`` (which calls this module
in a child process and collects its findings) or directly::

    python fuzz/atheris_entry.py --policy stdlib --artifacts out -- -max_total_time=60 -seed=1 fuzz/corpus

Findings are minimized and written to ``--artifacts`` like the other
generators' (the input is not raised back to libFuzzer, so fuzzing goes on);
an input that crashes the interpreter is libFuzzer's ``crash-*`` file in the
same folder.
"""

from __future__ import annotations

import argparse
import sys

from .case import FuzzCase
from .findings import write_artifacts
from .minimize import minimize
from .oracles import Checker
from .policyspec import FUZZ_CAPS, prepare
from .runner import call_setup
from .sources import GrammarSource

__all__ = ["case_from_input", "main"]

GRAMMAR_MARK = 0xFF


def case_from_input(data: bytes, grammar: GrammarSource) -> FuzzCase:
    """The fuzz case an atheris input stands for (see module docstring)."""
    if data[:1] == bytes((GRAMMAR_MARK,)):
        return grammar.from_bytes(data[1:], "atheris:grammar")
    return FuzzCase(data=data, origin="atheris:bytes")


#: Bootstrap for a fresh interpreter: instrument safepickle's modules as they
#: are imported (instrumenting everything already loaded, NumPy and
#: hypothesis included, takes minutes), then run :func:`main`.
BOOT = (
    "import sys, atheris\n"
    "with atheris.instrument_imports(include=['safepickle']):\n"
    "    from safepickle.fuzzing.atheris_main import import_all\n"
    "    import_all()\n"
    "from safepickle.fuzzing.atheris_main import main\n"
    "main(sys.argv[1:], instrumented=True)\n"
)


def import_all() -> None:
    """Import every safepickle module a load, a scan or the oracles use (under
    ``instrument_imports`` they get coverage counters)."""
    import importlib
    import pkgutil

    import safepickle

    for info in pkgutil.walk_packages(safepickle.__path__, "safepickle."):
        if info.name.endswith("__main__") or info.name.startswith(
                ("safepickle.web", "safepickle.cli", "safepickle._policies")):
            continue
        importlib.import_module(info.name)


def main(argv: list[str] | None = None, instrumented: bool = False) -> None:
    import atheris

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        cut = argv.index("--")
        ours, libfuzzer = argv[:cut], argv[cut + 1:]
    else:
        ours, libfuzzer = argv, []
    ap = argparse.ArgumentParser(prog="atheris_entry", description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="data-only")
    ap.add_argument("--artifacts", default="fuzz-artifacts")
    ap.add_argument("--no-differential", action="store_true")
    ap.add_argument("--no-minimize", action="store_true")
    ap.add_argument("--keep-limits", action="store_true")
    ap.add_argument("--setup", default=None)
    opts = ap.parse_args(ours)
    call_setup(opts.setup)

    put = prepare(opts.policy, None if opts.keep_limits else FUZZ_CAPS)
    grammar = GrammarSource(put, 0)
    checker = Checker(put, differential=not opts.no_differential)
    known: set = set()

    def one_input(data: bytes) -> None:
        case = case_from_input(data, grammar)
        for finding in checker.check(case):
            if finding.signature in known:
                continue
            known.add(finding.signature)
            small = case
            if not opts.no_minimize:
                small = minimize(case, lambda c, s=finding.signature: any(
                    f.signature == s for f in checker.check(c)), seconds=20)
            path = write_artifacts(opts.artifacts, finding, small, put.spec, original=case,
                                   extra={"generator": "atheris"})
            print(f"FINDING {put.label}: {finding.summary()}\n  -> {path}", file=sys.stderr, flush=True)

    if not instrumented:
        atheris.instrument_all()
    atheris.Setup([sys.argv[0], *libfuzzer], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
