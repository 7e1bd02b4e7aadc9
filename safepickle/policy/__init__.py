"""Policies: which globals a load may use, and with what limits.

Public API (names are fixed; the VM, ``scan`` and the CLI use them)::

    from safepickle.policy import Policy, Limits, load_policy, coerce_policy, Runtime

    policy = load_policy("numpy-only")          # or a .toml/.json/.yaml path
    runtime = policy.runtime()                  # merged, immutable, cached
    runtime.check("numpy", "ndarray", 4, True)  # static verdict, no import
    runtime.resolve("numpy", "ndarray", 4, True)

Modules: :mod:`.model` (Policy, Limits), :mod:`.files` (loading, extends),
:mod:`.names` (name syntax, Python 2 mapping, aliases), :mod:`.denylist`
(the built-in deny list), :mod:`.resolver` (Runtime), :mod:`.guards`
(argument and BUILD guards).
"""

from .files import PolicyFileError, coerce_policy, format_validation_error, load_policy
from .model import Limits, Policy
from .resolver import Runtime, Verdict

__all__ = [
    "Limits",
    "Policy",
    "PolicyFileError",
    "Runtime",
    "Verdict",
    "coerce_policy",
    "format_validation_error",
    "load_policy",
]
