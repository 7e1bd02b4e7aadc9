"""The ``safepickle`` command (also ``python -m safepickle``).

Subcommands: ``scan``, ``load``, ``disasm``, ``policy show|check|infer``,
``fuzz``.  Exit codes: 0 success / every input passes, 1 something was
refused (a global, a limit, a malformed stream, an invalid policy), 2 usage
errors and inputs that cannot be read.  Errors are one line on stderr,
``safepickle: <what went wrong>``, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from .common import EXIT_USAGE, CliError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit code 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise CliError(f"{message} (see '{self.prog} --help')")


def _version_text() -> str:
    from .. import __version__, vm
    from ..scan._scanner_select import scanner_kind

    engine_kind = getattr(vm, "engine_kind", None)
    engine = engine_kind() if callable(engine_kind) else "python"
    return f"safepickle {__version__}\nengine: {engine}\nscanner: {scanner_kind()}"


def _add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-fix-imports", action="store_true",
                   help="do not map Python 2 names (as pickle.loads(fix_imports=False))")
    p.add_argument("--encoding", default="ASCII", help="decoding of Python 2 str (as pickle.loads; default ASCII)")
    p.add_argument("--errors", default="strict", help="decoding errors of Python 2 str (default strict)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="safepickle", description="Load, scan and inspect pickle data from people you do not "
                     "trust, under allowlist policies.")
    parser.add_argument("--version", action="store_true", help="print the version and the VM engine in use")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("scan", help="scan files without loading them (exit 0 pass, 1 refused, 2 errors)",
                       description="Scan pickle files, model files (PyTorch, NumPy, joblib) and directories "
                       "without loading them: every global they name, judged by the policy.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, directory (recursive) or - for stdin")
    p.add_argument("--policy", "-p", default=None, help="built-in policy name or policy file (default data-only)")
    p.add_argument("--format", "-f", choices=("text", "json", "sarif"), default="text", help="output format")
    p.add_argument("--jobs", "-j", type=int, default=1, help="scan N files in parallel (processes)")
    p.add_argument("--verbose", "-v", action="store_true", help="text: list every global, pickle and note")
    p.add_argument("--no-progress", action="store_true", help="never show the progress bar")
    _add_load_options(p)

    p = sub.add_parser("load", help="load a file under a policy and summarise the result",
                       description="Load a pickle (or a .npy object array) under a policy and print a short "
                       "summary of the object, or the refusal with its offset.")
    p.add_argument("path", metavar="PATH", help="file, or - for stdin")
    p.add_argument("--policy", "-p", default=None, help="built-in policy name or policy file (default data-only)")
    p.add_argument("--all", action="store_true", help="load every pickle of a file that holds several")
    _add_load_options(p)

    p = sub.add_parser("disasm", help="list the opcodes of a file with offsets and verdicts",
                       description="Disassemble every pickle of a file: offsets, opcodes, arguments, stack "
                       "depth, and each global annotated with the policy's verdict.")
    p.add_argument("path", metavar="PATH", help="file, or - for stdin")
    p.add_argument("--policy", "-p", default=None, help="policy for the verdicts (default data-only)")
    p.add_argument("--width", type=int, default=60, help="characters of each argument shown")
    _add_load_options(p)

    pol = sub.add_parser("policy", help="show, check or infer policies")
    psub = pol.add_subparsers(dest="policy_command", parser_class=_Parser, metavar="ACTION")
    q = psub.add_parser("show", help="the effective policy after extends, as TOML")
    q.add_argument("policy", metavar="NAME|FILE")
    q = psub.add_parser("check", help="validate a policy file and warn about risky entries")
    q.add_argument("policy", metavar="FILE")
    q.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    q.add_argument("--no-import", action="store_true",
                   help="do not import the modules the policy names (skips the checks of their classes)")
    q = psub.add_parser("infer", help="the minimal policy that admits a set of trusted sample files")
    q.add_argument("samples", nargs="+", metavar="FILE", help="trusted sample files or directories")
    q.add_argument("-o", "--output", required=True, metavar="POLICY.toml", help="where to write the policy (- for "
                   "stdout)")
    q.add_argument("--name", default=None, help="name of the new policy (default: the output file's stem)")
    _add_load_options(q)

    sub.add_parser("fuzz", help="fuzz the VM under a policy (see 'safepickle fuzz --help')", add_help=False)
    return parser


def _fuzz(argv: list[str]) -> int:
    try:
        from ..fuzzing.cli import main as fuzz_main
    except ImportError as e:
        raise CliError(f"the fuzz harness is not available: {e}") from None
    return int(fuzz_main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    """Run the ``safepickle`` command with ``argv`` (default ``sys.argv[1:]``);
    returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "fuzz":
            return _fuzz(argv[1:])
        args = build_parser().parse_args(argv)
        if args.version:
            print(_version_text())
            return 0
        if args.command is None:
            raise CliError("a command is needed: scan, load, disasm, policy or fuzz (see 'safepickle --help')")
        return _dispatch(args)
    except CliError as e:
        print(f"safepickle: {e.message}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("safepickle: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away: point stdout at devnull so the flush at exit is silent.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_USAGE


def _dispatch(args: Any) -> int:
    if hasattr(args, "encoding"):
        from .common import check_decoding_options

        check_decoding_options(args.encoding, args.errors)
    if args.command == "scan":
        from .scan_cmd import run
    elif args.command == "load":
        from .load_cmd import run
    elif args.command == "disasm":
        from .disasm_cmd import run
    elif args.command == "policy":
        if args.policy_command is None:
            raise CliError("policy needs an action: show, check or infer")
        from .policy_cmd import run
    else:  # pragma: no cover - argparse only yields the commands above
        raise CliError(f"unknown command {args.command!r}")
    return run(args)
