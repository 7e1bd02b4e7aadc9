"""Tools over policies (not the policy engine itself): show the effective
policy as TOML, check a policy file for risky entries, infer the minimal
policy that admits a set of trusted sample files.  Used by ``safepickle
policy show|check|infer``."""

from .check import Finding, check_policy
from .infer import InferResult, infer_policy
from .show import effective_toml

__all__ = ["Finding", "InferResult", "check_policy", "effective_toml", "infer_policy"]
