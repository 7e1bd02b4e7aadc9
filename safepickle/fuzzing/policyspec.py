"""The policy under test: how a run names it, and what the generators and
oracles need to know about it.

A policy is named by a *spec*, a small JSON-able dict that a reproducer
stores and the CPython worker receives: ``{"builtin": "stdlib"}``,
``{"path": "/abs/policy.toml"}`` or ``{"inline": {...}}`` (a policy given as
an object, dumped).  ``"caps"`` (optional) lowers limits for the run.

Fuzzing caps the limits (:data:`FUZZ_CAPS`, each limit lowered to the cap
when the policy's own is higher): the resource oracle then checks that the
VM keeps to limits that a fuzz case can actually reach, and a case stays
fast.  ``--keep-limits`` fuzzes with the policy's own limits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FUZZ_CAPS", "TIGHT_CAPS", "PolicyUnderTest", "policy_from_spec", "spec_for", "prepare"]

MiB = 1 << 20

#: Limits of a fuzz run (each only lowers the policy's own).
FUZZ_CAPS: dict[str, Any] = {
    "max_input_bytes": 64 * MiB,
    "max_alloc_bytes": 64 * MiB,
    "max_container": 1_000_000,
    "max_memo": 1_000_000,
    "max_ops": 2_000_000,
    "max_seconds": 2.0,
}


#: Limits small enough for fuzz cases to reach every limit check (one case
#: in ``FuzzConfig.tight_every`` runs under them): the refusals of limits
#: are code paths too, and must report where they happened like any other.
TIGHT_CAPS: dict[str, Any] = {
    "max_input_bytes": 4096,
    "max_alloc_bytes": 2048,
    "max_container": 16,
    "max_memo": 16,
    "max_depth": 16,
    "max_ops": 300,
    "max_seconds": 2.0,
}


def spec_for(policy: Any, caps: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spec of a policy given as a built-in name, a file path or a Policy."""
    from ..policy import Policy
    from ..policy.files import is_builtin_name

    if isinstance(policy, Policy):
        spec: dict[str, Any] = {"inline": policy.model_dump(mode="json")}
    elif isinstance(policy, dict):
        spec = {"inline": policy}
    else:
        text = os.fspath(policy)
        if is_builtin_name(text):
            spec = {"builtin": text}
        else:
            spec = {"path": str(Path(text).expanduser().resolve())}
    if caps:
        spec["caps"] = dict(caps)
    return spec


def label_of(spec: dict[str, Any]) -> str:
    if "builtin" in spec:
        return spec["builtin"]
    if "path" in spec:
        return spec["path"]
    return f"<inline {spec['inline'].get('name', 'custom')}>"


def policy_from_spec(spec: dict[str, Any]) -> Any:
    """The Policy a spec names, with its caps applied."""
    from ..policy import Limits, Policy, load_policy

    if "builtin" in spec:
        policy = load_policy(spec["builtin"])
    elif "path" in spec:
        policy = load_policy(spec["path"])
    else:
        policy = Policy.model_validate(spec["inline"])
    caps = spec.get("caps")
    if not caps:
        return policy
    own = policy.effective().limits
    merged = {name: getattr(own, name) for name in Limits.model_fields}
    for name, cap in caps.items():
        merged[name] = min(merged[name], cap)
    data = policy.model_dump(mode="json")
    data["limits"] = merged
    return Policy.model_validate(data)


@dataclass
class PolicyUnderTest:
    """A policy prepared for fuzzing."""

    spec: dict[str, Any]
    label: str
    policy: Any
    runtime: Any
    allowed: list[tuple[str, str]] = field(default_factory=list)  # exact names, wildcards expanded
    allowed_modules: frozenset[str] = frozenset()
    allowed_ids: frozenset[int] = frozenset()  # objects resolve() hands over for them
    keep: list = field(default_factory=list)  # keeps those objects (and their ids) alive
    extensions: dict[int, tuple[str, str]] = field(default_factory=dict)


def _wildcard_names(module: str) -> list[str]:
    import importlib

    try:
        mod = importlib.import_module(module)
    except Exception:
        return []
    out = []
    for name, obj in sorted(vars(mod).items()):
        if not name.startswith("_") and getattr(obj, "__module__", None) == module:
            out.append(name)
    return out


def prepare(policy: Any, caps: dict[str, Any] | None = FUZZ_CAPS) -> PolicyUnderTest:
    """Load, cap and pre-resolve a policy (imports its allowed modules now,
    before any fuzz case runs, so that a load never imports for the first time
    under the audit oracle by accident of ordering)."""
    spec = policy if isinstance(policy, dict) and set(policy) & {"builtin", "path", "inline"} else spec_for(policy)
    if caps and "caps" not in spec:
        spec = {**spec, "caps": dict(caps)}
    pol = policy_from_spec(spec)
    rt = pol.runtime()
    eff = pol.effective()
    names: list[tuple[str, str]] = []
    for entry in sorted(eff.allow):
        module, _, qualname = entry.partition(":")
        if qualname == "*":
            names.extend((module, n) for n in _wildcard_names(module))
        else:
            names.append((module, qualname))
    keep = []
    allowed = []
    for module, qualname in names:
        try:
            obj = rt.resolve(module, qualname, 4, False)
        except Exception:  # listed but refused or absent here (e.g. NumPy missing)
            continue
        allowed.append((module, qualname))
        keep.append(obj)
    exts = {}
    for code, entry in dict(eff.extensions).items():
        module, _, qualname = str(entry).partition(":")
        exts[int(code)] = (module, qualname)
    return PolicyUnderTest(
        spec=spec,
        label=label_of(spec),
        policy=pol,
        runtime=rt,
        allowed=allowed,
        allowed_modules=frozenset(m for m, _ in allowed),
        allowed_ids=frozenset(id(o) for o in keep),
        keep=keep,
        extensions=exts,
    )
