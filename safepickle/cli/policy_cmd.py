"""``safepickle policy show|check|infer``.

* ``show NAME|FILE``: the effective policy after ``extends``, as TOML (exit 0).
* ``check FILE``: validate (exit 1 with one line per error when invalid),
  then print warnings on risky entries (exit 0, or 1 with ``--strict``).
* ``infer FILE... -o POLICY.toml``: write the minimal policy that admits
  trusted samples (exit 1, writing nothing, when some sample needs what no
  policy can admit).
"""

from __future__ import annotations

import os
import sys
import tomllib
from typing import Any

from .common import EXIT_OK, EXIT_REFUSED, CliError, iter_inputs, load_policy_arg

__all__ = ["run"]


def run(args: Any) -> int:
    action = args.policy_command
    if action == "show":
        return _show(args)
    if action == "check":
        return _check(args)
    return _infer(args)


def _show(args: Any) -> int:
    from ..policy_tools import effective_toml

    sys.stdout.write(effective_toml(load_policy_arg(args.policy)))
    return EXIT_OK


def _check(args: Any) -> int:
    from pydantic import ValidationError

    from ..policy import PolicyFileError, format_validation_error, load_policy
    from ..policy_tools import check_policy

    path = args.policy
    try:
        policy = load_policy(path)
    except PolicyFileError as e:
        raise CliError(str(e)) from None
    except ValidationError as e:
        for line in format_validation_error(e).splitlines():
            print(f"{path}: error: {line}")
        print(f"{path}: invalid policy")
        return EXIT_REFUSED
    except (OSError, ValueError, TypeError) as e:
        raise CliError(f"cannot load policy {path!r}: {e}") from None
    findings = check_policy(policy, import_modules=not args.no_import)
    for f in findings:
        print(f"{path}: warning: {f.line()}")
    n = len(policy.effective().allow)
    print(f"{path}: valid policy {policy.name!r} ({n} allowed globals after extends, "
          f"{len(findings)} warning{'s' if len(findings) != 1 else ''})")
    return EXIT_REFUSED if findings and args.strict else EXIT_OK


def _infer(args: Any) -> int:
    from ..policy import Policy
    from ..policy_tools import infer_policy

    io_errors: list[tuple[str, str]] = []
    paths = [p for p in iter_inputs(args.samples, io_errors) if p != "-"]
    if io_errors:
        path, reason = io_errors[0]
        raise CliError(f"{path}: {reason}")
    if not paths:
        raise CliError("no sample file given")
    out = args.output
    name = args.name or (os.path.splitext(os.path.basename(out))[0] if out != "-" else "inferred")
    result = infer_policy(paths, name=name, fix_imports=not args.no_fix_imports, encoding=args.encoding,
                          errors=args.errors)
    if result.problems:
        for p in result.problems:
            print(f"safepickle: cannot infer: {p}", file=sys.stderr)
        print(f"safepickle: no policy written: {len(result.problems)} problem(s) in the samples", file=sys.stderr)
        return EXIT_REFUSED
    text = result.text or ""
    # The policy must load back as written (names the engine refuses would surface here).
    Policy.model_validate(tomllib.loads(text))
    if out == "-":
        sys.stdout.write(text)
    else:
        try:
            with open(out, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise CliError(f"{out}: {e.strerror or type(e).__name__}") from None
        print(f"wrote {out}: extends {', '.join(result.base)}, {len(result.allow)} more allowed "
              f"global{'s' if len(result.allow) != 1 else ''}, from {len(paths)} sample file(s)")
    return EXIT_OK
