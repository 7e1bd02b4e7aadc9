"""The exceptions of safepickle.

Every failure of a load raises a subclass of :class:`SafePickleError`, which
subclasses :class:`pickle.UnpicklingError` so that existing
``except pickle.UnpicklingError`` code keeps working.  Each error carries the
byte ``offset`` of the opcode that failed, the ``opcode`` name and the
``rule`` that refused it, and its message names all three.
"""

from __future__ import annotations

import pickle

__all__ = [
    "SafePickleError",
    "MalformedPickle",
    "LimitExceeded",
    "ForbiddenGlobal",
    "CallFailed",
    "GuardViolation",
    "InternalError",
]


class SafePickleError(pickle.UnpicklingError):
    """Base class of every error a load raises."""

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        opcode: str | None = None,
        rule: str | None = None,
    ) -> None:
        self.detail = message
        self.offset = offset
        self.opcode = opcode
        self.rule = rule
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = []
        if self.offset is not None:
            where.append(f"at offset {self.offset}")
        if self.opcode is not None:
            where.append(f"opcode {self.opcode}")
        if self.rule is not None:
            where.append(f"rule {self.rule}")
        return f"{self.detail} ({', '.join(where)})" if where else self.detail

    def located(self, offset: int | None, opcode: str | None, policy: str | None = None) -> SafePickleError:
        """Fill in the position (and, for refusals, the policy) if the raiser
        did not know them; returns self."""
        if self.offset is None and offset is not None:
            self.offset = offset
        if self.opcode is None and opcode is not None:
            self.opcode = opcode
        if policy is not None and getattr(self, "policy", False) is None:
            self.policy = policy
        self.args = (self._compose(),)
        return self


class MalformedPickle(SafePickleError):
    """The bytes are not a valid pickle: unknown opcode, truncated data, bad
    stack or mark, bad memo key, bad argument."""


class CallFailed(MalformedPickle):
    """A callable the policy allowed raised while the VM called it (the
    stream gave it arguments it does not accept).  ``__cause__`` holds the
    original exception."""


class LimitExceeded(SafePickleError):
    """A resource limit of the policy was passed.  ``limit`` names it (the
    field of ``Policy.limits``), ``value`` is what the stream asked for."""

    def __init__(
        self,
        limit: str,
        value: object,
        maximum: object = None,
        *,
        message: str | None = None,
        offset: int | None = None,
        opcode: str | None = None,
    ) -> None:
        self.limit = limit
        self.value = value
        self.maximum = maximum
        if message is None:
            bound = f" > {maximum}" if maximum is not None else ""
            message = f"limit {limit} exceeded: {value}{bound}"
        super().__init__(message, offset=offset, opcode=opcode, rule=f"limits.{limit}")


class ForbiddenGlobal(SafePickleError):
    """The stream names a global, an extension code, a persistent id or a use
    of an object (call, BUILD, item assignment) that the policy does not allow.
    ``module`` and ``name`` name what was refused; ``policy`` the policy."""

    def __init__(
        self,
        module: str,
        name: str,
        message: str,
        *,
        policy: str | None = None,
        offset: int | None = None,
        opcode: str | None = None,
        rule: str | None = None,
    ) -> None:
        self.module = module
        self.name = name
        self.policy = policy
        super().__init__(message, offset=offset, opcode=opcode, rule=rule)

    def _compose(self) -> str:
        text = super()._compose()
        if self.policy is not None and repr(self.policy) not in text:
            text = f"{text} [policy {self.policy!r}]"
        return text


class GuardViolation(Exception):
    """Raised by an argument guard (see ``safepickle.policy.guards``) to refuse
    a call; the VM turns it into a :class:`ForbiddenGlobal` (rule ``guard``) or,
    when ``limit`` is set, a :class:`LimitExceeded`.  Never escapes a load."""

    def __init__(self, reason: str, *, limit: str | None = None, value: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.limit = limit
        self.value = value


class InternalError(SafePickleError):
    """The VM met a state it does not expect: a bug in safepickle, never the
    sender's fault alone.  Raised instead of letting a bare exception escape;
    the fuzz harness counts every one as a finding.  ``__cause__`` holds the
    original exception."""
