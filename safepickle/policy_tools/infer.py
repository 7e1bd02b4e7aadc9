"""``policy infer``: the minimal policy that admits a set of trusted sample files.

Every sample is scanned (never loaded); the globals its pickles name, after
py2 and alias mapping, are what the policy needs.  The new policy extends
the built-in policy (or pair of built-ins) that leaves the fewest entries
to add, the tightest one on a tie, and lists the rest in ``allow``, each
with a comment naming the files that needed it.  What no policy can admit
(deny-listed globals, dynamic globals, extension codes, forbidden uses,
broken files) is reported as a problem instead, and no policy is made.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from .toml import string, string_list

__all__ = ["InferResult", "infer_policy"]

_UNFIXABLE_RULES = ("denylist:", "bad-name", "dotted-needs-proto-4")


@dataclass
class InferResult:
    """``text`` is the policy file (None when ``problems`` is not empty)."""

    samples: list[str]
    needed: dict[str, list[str]] = field(default_factory=dict)  # module:qualname -> where
    base: list[str] = field(default_factory=list)
    base_needs: dict[str, list[str]] = field(default_factory=dict)  # base -> needed globals only it brings
    allow: list[str] = field(default_factory=list)
    persistent_ids: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    text: str | None = None


def _where(path: str, part: str, offset: int) -> str:
    name = os.path.basename(path) or path
    return f"{name}{'!' + part if part else ''}@{offset}"


def _collect(result: InferResult, path: str, report: Any) -> None:
    name = os.path.basename(path) or path
    for v in report.violations:
        if v.kind == "global":
            continue  # judged per site below
        if v.kind == "persistent-id":
            if name not in result.persistent_ids:
                result.persistent_ids.append(name)
            continue
        result.problems.append(f"{path}: {v.kind} at offset {v.offset}{' in ' + v.part if v.part else ''}: "
                               f"{v.message}")
    for site in report.sites():
        if site.module is None:
            continue  # reported as a dynamic-global violation above
        if site.rule.startswith(_UNFIXABLE_RULES):
            result.problems.append(f"{path}: needs {site.qualified} (offset {site.offset}), which no policy can "
                                   f"admit: {site.message}")
            continue
        where = result.needed.setdefault(site.qualified, [])
        w = _where(path, site.part, site.offset)
        if len(where) < 4 and not any(x.split("@")[0] == w.split("@")[0] for x in where):
            where.append(w)


def _allowed_sets(needed: list[str]) -> dict[str, set[str]]:
    from .. import policies
    from ..policy import load_policy

    out: dict[str, set[str]] = {}
    for name in policies.names():
        rt = load_policy(name).runtime()
        out[name] = {q for q in needed if rt.check(*q.split(":", 1), 4, True).allowed}
    return out


def _choose_base(needed: list[str]) -> list[str]:
    from ..policy import load_policy

    allowed = _allowed_sets(needed)
    size = {n: len(load_policy(n).effective().allow) for n in allowed}
    best: tuple[Any, ...] | None = None
    for k in (1, 2):
        for combo in itertools.combinations(sorted(allowed), k):
            covered = set().union(*(allowed[n] for n in combo))
            key = (len(needed) - len(covered), k, sum(size[n] for n in combo), combo)
            if best is None or key < best:
                best = key
    return list(best[3]) if best else ["data-only"]


def infer_policy(paths: list[str], *, name: str, fix_imports: bool = True, encoding: str = "ASCII",
                 errors: str = "strict") -> InferResult:
    """Scan ``paths`` (files) and build the policy text; never loads them."""
    from ..scan import judge_for, scan

    judge = judge_for("data-only", fix_imports=fix_imports, encoding=encoding, errors=errors)
    result = InferResult(samples=list(paths))
    for path in paths:
        try:
            report = scan(path, judge=judge)
        except OSError as e:
            result.problems.append(f"{path}: {e.strerror or type(e).__name__}")
            continue
        _collect(result, path, report)
    if result.problems:
        return result
    needed = sorted(result.needed)
    result.base = _choose_base(needed)
    from ..policy import load_policy

    base_rts = [load_policy(n).runtime() for n in result.base]
    result.allow = [q for q in needed if not any(rt.check(*q.split(":", 1), 4, True).allowed for rt in base_rts)]
    floor = load_policy("data-only").runtime()
    for base, rt in zip(result.base, base_rts, strict=True):
        result.base_needs[base] = [q for q in needed if rt.check(*q.split(":", 1), 4, True).allowed
                                   and not floor.check(*q.split(":", 1), 4, True).allowed]
    result.text = _render(result, name)
    return result


def _base_comments(result: InferResult) -> list[str]:
    """One comment per extended built-in: what the samples need from it, and which files."""
    out = []
    for base, globs in result.base_needs.items():
        if not globs:
            continue
        files = list(dict.fromkeys(w.split("@")[0] for q in globs for w in result.needed[q]))
        names = ", ".join(globs[:6]) + (f" and {len(globs) - 6} more" if len(globs) > 6 else "")
        shown = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
        out.append(" ".join(f"# {base}: for {names} (needed by {shown})".split()))
    return out


def _render(result: InferResult, name: str) -> str:
    samples = [os.path.basename(p) or p for p in result.samples]
    shown = ", ".join(samples[:8]) + (f" and {len(samples) - 8} more" if len(samples) > 8 else "")
    lines = [
        f"# Inferred by 'safepickle policy infer' from {len(samples)} trusted sample file(s): {shown}",
        "# Each allow entry names the files (and offsets) that needed it.  Review before use.",
        f"name = {string(name)}",
        f"description = {string('Admits what the sample files ' + shown + ' need')}",
        *_base_comments(result),
        "extends = [" + ", ".join(string(b) for b in result.base) + "]",
        "",
    ]
    text = "\n".join(lines) + "\n"
    comments = {q: "needed by " + ", ".join(result.needed[q]) for q in result.allow}
    text += string_list("allow", result.allow, comments)
    if result.persistent_ids:
        text += f"persistent_ids = true  # needed by {', '.join(result.persistent_ids[:8])}\n"
    return text
