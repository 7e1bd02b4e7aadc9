"""The policy model: :class:`Limits` and :class:`Policy` (pydantic v2).

A policy is immutable: every field is a tuple, a frozen model or a read-only
mapping, and the effective (merged) form a load uses is computed once into a
:class:`~safepickle.policy.resolver.Runtime` that holds only frozen sets.
There is no process-wide allowlist; a policy is passed to each load.

``extends`` is resolved while the policy is validated: each parent (a
built-in name or a file path; relative paths are resolved against the file
that names them) is loaded, and a cycle is refused with the chain in the
message.  A parent that fails to load makes this policy fail to validate.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import denylist
from .names import canonical_module, entry_problem, split_entry

if TYPE_CHECKING:
    from .resolver import Runtime

__all__ = ["Limits", "Policy", "Effective"]

GiB = 1 << 30
#: Upper bound of every integer limit: the VM keeps counters in 64-bit ints.
MAX_LIMIT = 1 << 62


class Limits(BaseModel):
    """Resource limits of a load.  Every limit is a positive number; the
    defaults are sized for real uploads (a few GiB of arrays, deep but not
    absurd nesting) while stopping bombs long before they hurt a server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_input_bytes: int = Field(
        GiB, gt=0, le=MAX_LIMIT, strict=True, description="bytes of pickle data accepted (default 1 GiB)"
    )
    max_depth: int = Field(
        1000, gt=0, le=MAX_LIMIT, strict=True, description="MARKs open at the same time (nesting depth, default 1000)"
    )
    max_memo: int = Field(
        1 << 24,
        gt=0,
        le=MAX_LIMIT,
        strict=True,
        description="memo entries, and the highest memo index accepted (default 2**24)",
    )
    max_container: int = Field(
        100_000_000, gt=0, le=MAX_LIMIT, strict=True, description="items in one container (default 100 million)"
    )
    max_alloc_bytes: int = Field(
        2 * GiB,
        gt=0,
        le=MAX_LIMIT,
        strict=True,
        description="total bytes allocated for str/bytes/bytearray payloads and by guarded calls "
        "(default 2 GiB)",
    )
    max_ops: int = Field(1 << 31, gt=0, le=MAX_LIMIT, strict=True, description="opcodes executed (default 2**31)")
    max_seconds: float = Field(
        60.0, gt=0, strict=True, allow_inf_nan=False, description="wall-clock seconds (default 60)"
    )


def _check_entry(entry: str) -> str:
    problem = entry_problem(entry)
    if problem:
        raise ValueError(problem)
    return entry


def _check_exact_entry(entry: str) -> str:
    problem = entry_problem(entry, wildcard=False)
    if problem:
        raise ValueError(problem)
    return entry


def _check_extends(entry: str) -> str:
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError("empty entry: give a built-in policy name or a path")
    return entry


def _freeze_extensions(table: Mapping[int, str]) -> Mapping[int, str]:
    for code, target in table.items():
        if not 1 <= code <= 0x7FFFFFFF:
            raise ValueError(f"extension code {code} is outside 1..2147483647")
        problem = entry_problem(target, wildcard=False)
        if problem:
            raise ValueError(f"extension {code}: {problem}")
    return MappingProxyType(dict(table))


Entry = Annotated[str, AfterValidator(_check_entry)]
ExactEntry = Annotated[str, AfterValidator(_check_exact_entry)]
ExtendsEntry = Annotated[str, AfterValidator(_check_extends)]
Extensions = Annotated[
    Mapping[int, str],
    AfterValidator(_freeze_extensions),
    PlainSerializer(lambda table: dict(table), return_type=dict[int, str]),
]


@dataclass(frozen=True)
class Effective:
    """A policy merged with everything it extends (what a Runtime enforces)."""

    name: str
    allow: frozenset[str]
    deny: frozenset[str]
    overrides: frozenset[str]
    limits: Limits
    limits_set: Mapping[str, Any]
    extensions: Mapping[int, str]
    persistent_ids: bool
    persistent_ids_set: bool


_runtime_lock = threading.Lock()


class Policy(BaseModel):
    """An allowlist policy for loads.  See CONTRACT.md, section Policies.

    ``allow``/``deny`` entries are ``module:qualname`` (exact) or
    ``module:*`` (every public class or function *defined* in that module).
    ``deny`` always wins over ``allow``; the built-in deny list
    (:mod:`safepickle.policy.denylist`) wins over both, except for entries
    named exactly in both ``unsafe_override_denylist`` and ``allow``.
    ``extensions`` maps EXT1/EXT2/EXT4 codes to globals (the codes come from
    here on every load, never from :mod:`copyreg`); ``persistent_ids``
    admits PERSID/BINPERSID (the caller's ``persistent_load`` decides).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("custom", min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    description: str = ""
    extends: tuple[ExtendsEntry, ...] = ()
    allow: tuple[Entry, ...] = ()
    deny: tuple[Entry, ...] = ()
    limits: Limits = Field(default_factory=Limits)
    extensions: Extensions = Field(default_factory=lambda: MappingProxyType({}))
    persistent_ids: bool = Field(False, strict=True)
    unsafe_override_denylist: tuple[ExactEntry, ...] = Field(
        (),
        description="UNSAFE: deny-list entries admitted anyway, only where also listed exactly in allow",
    )

    _parents: tuple[Policy, ...] = PrivateAttr(default=())
    _effective: Effective | None = PrivateAttr(default=None)
    _runtime: Runtime | None = PrivateAttr(default=None)

    @field_validator("extends", mode="after")
    @classmethod
    def _absolute_extends(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # Relative paths are resolved against the file that names them (the
        # loader passes its folder as context), else the working directory.
        from .files import is_builtin_name

        base = (info.context or {}).get("base_dir")
        out = []
        for entry in value:
            if is_builtin_name(entry):
                out.append(entry)
                continue
            path = Path(entry).expanduser()
            if not path.is_absolute():
                path = Path(base or ".") / path
            out.append(str(path.resolve()))
        return tuple(out)

    @model_validator(mode="after")
    def _check_lists(self) -> Policy:
        overrides = set(self.unsafe_override_denylist)
        for i, entry in enumerate(self.unsafe_override_denylist):
            module, qualname = split_entry(entry)
            if denylist.match(canonical_module(module), qualname) is None:
                raise ValueError(
                    f"unsafe_override_denylist.{i}: {entry!r} is not on the built-in deny list; remove it"
                )
            if entry not in self.allow:
                raise ValueError(
                    f"unsafe_override_denylist.{i}: {entry!r} must also be listed exactly in allow"
                )
        for i, entry in enumerate(self.allow):
            module, qualname = split_entry(entry)
            category = denylist.match_entry(canonical_module(module), qualname)
            if category is not None and entry not in overrides:
                raise ValueError(
                    f"allow.{i}: {entry!r} is on safepickle's built-in deny list "
                    f"({category}: {denylist.describe(category)}) and cannot be allowed"
                )
        return self

    @model_validator(mode="after")
    def _load_parents(self, info: ValidationInfo) -> Policy:
        from .files import load_parent

        context = info.context or {}
        chain = tuple(context.get("chain", ()))
        parents = []
        for i, entry in enumerate(self.extends):
            try:
                parents.append(load_parent(entry, chain))
            except RecursionError:
                raise
            except ValidationError as exc:
                detail = "; ".join(err["msg"] for err in exc.errors())
                raise ValueError(f"extends.{i}: cannot extend {entry!r}: {detail}") from exc
            except Exception as exc:
                raise ValueError(f"extends.{i}: cannot extend {entry!r}: {exc}") from exc
        self._parents = tuple(parents)
        return self

    def __hash__(self) -> int:
        # Frozen and compared by value; the mapping field needs help hashing.
        return hash(self.model_dump_json())

    # -- merged view -------------------------------------------------------

    @property
    def parents(self) -> tuple[Policy, ...]:
        """The loaded policies of ``extends``, in order."""
        return self._parents

    def effective(self) -> Effective:
        """This policy merged with its parents (computed once)."""
        if self._effective is None:
            self._effective = self._merge()
        return self._effective

    def _merge(self) -> Effective:
        allow: set[str] = set()
        deny: set[str] = set()
        overrides: set[str] = set()
        limits_set: dict[str, Any] = {}
        extensions: dict[int, str] = {}
        persistent_ids = False
        for parent in self._parents:
            eff = parent.effective()
            allow |= eff.allow
            deny |= eff.deny
            overrides |= eff.overrides
            limits_set.update(eff.limits_set)
            extensions.update(eff.extensions)
            persistent_ids = persistent_ids or eff.persistent_ids
        allow |= {_canonical_entry(e) for e in self.allow}
        deny |= {_canonical_entry(e) for e in self.deny}
        overrides |= {_canonical_entry(e) for e in self.unsafe_override_denylist}
        for field in self.limits.model_fields_set:
            limits_set[field] = getattr(self.limits, field)
        extensions.update(self.extensions)
        if "persistent_ids" in self.model_fields_set:
            persistent_ids = self.persistent_ids
        return Effective(
            name=self.name,
            allow=frozenset(allow),
            deny=frozenset(deny),
            overrides=frozenset(overrides),
            limits=Limits(**limits_set),
            limits_set=MappingProxyType(limits_set),
            extensions=MappingProxyType(extensions),
            persistent_ids=persistent_ids,
            persistent_ids_set="persistent_ids" in self.model_fields_set,
        )

    def runtime(self) -> Runtime:
        """The effective policy as a :class:`Runtime`, built once per Policy
        object and shared by every load (it is immutable and thread-safe)."""
        runtime = self._runtime
        if runtime is None:
            from .resolver import Runtime

            with _runtime_lock:
                runtime = self._runtime
                if runtime is None:
                    runtime = Runtime(self.effective())
                    self._runtime = runtime
        return runtime


def _canonical_entry(entry: str) -> str:
    module, qualname = split_entry(entry)
    return f"{canonical_module(module)}:{qualname}"
