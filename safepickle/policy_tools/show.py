"""``policy show``: the effective policy (after ``extends``) as a TOML file
that loads back to the same effective policy."""

from __future__ import annotations

from typing import Any

from .toml import string, string_list, value

__all__ = ["effective_toml"]


def _chain(policy: Any) -> list[str]:
    names: list[str] = []
    todo = list(policy.parents)
    while todo:
        p = todo.pop(0)
        if p.name not in names:
            names.append(p.name)
        todo.extend(p.parents)
    return names


def effective_toml(policy: Any) -> str:
    """TOML text of ``policy`` merged with everything it extends."""
    eff = policy.effective()
    parents = _chain(policy)
    out = [f"# Effective policy {policy.name!r}"]
    if parents:
        out.append(f"# (merged with what it extends: {', '.join(parents)})")
    out.append(f"name = {string(eff.name)}")
    if policy.description:
        out.append(f"description = {string(policy.description)}")
    out.append("")
    text = "\n".join(out) + "\n"
    text += string_list("allow", sorted(eff.allow))
    text += string_list("deny", sorted(eff.deny))
    overrides = sorted(eff.overrides)
    if overrides:
        text += "# UNSAFE: built-in deny-list entries this policy admits anyway\n"
        text += string_list("unsafe_override_denylist", overrides)
    text += f"persistent_ids = {value(eff.persistent_ids)}\n"
    text += "\n[limits]\n"
    for field in type(eff.limits).model_fields:
        text += f"{field} = {value(getattr(eff.limits, field))}\n"
    if eff.extensions:
        text += "\n[extensions]\n"
        for code in sorted(eff.extensions):
            text += f"{code} = {string(eff.extensions[code])}\n"
    return text
