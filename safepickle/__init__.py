"""safepickle: load pickle data from people you do not trust.

``safepickle.loads(data, policy="numpy-only")`` runs the pickle in a
restricted VM that calls nothing the policy did not allow, and raises a
:class:`SafePickleError` subclass (a :class:`pickle.UnpicklingError`) for
everything it refuses.  The default policy is ``"data-only"``.
"""

from . import policies
from .errors import (
    CallFailed,
    ForbiddenGlobal,
    InternalError,
    LimitExceeded,
    MalformedPickle,
    SafePickleError,
)
from .policy import Limits, Policy, load_policy
from .scan import scan
from .vm import load, loads

__version__ = "0.1.0"

__all__ = [
    "CallFailed",
    "ForbiddenGlobal",
    "InternalError",
    "LimitExceeded",
    "Limits",
    "MalformedPickle",
    "Policy",
    "SafePickleError",
    "__version__",
    "load",
    "load_policy",
    "loads",
    "policies",
    "scan",
]
