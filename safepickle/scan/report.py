"""The types of a scan report.

A :class:`ScanReport` covers one input (bytes, a file, or stdin).  It holds a
:class:`PickleReport` for every pickle stream found in it (several pickles in
a row, the pickle members of a zip, the pickle inside a NumPy file...), the
globals those streams name (:class:`GlobalRef`, one per ``module:qualname``
after py2 name mapping, each with the :class:`Site` of every reference), and
the :class:`Violation` list: everything a load under the policy would refuse.

``report.ok`` is true only when the violation list is empty.  Every value here
is plain data (str, int, lists): a report holds no object built from the
stream and no view of its bytes, and ``to_dict()`` gives a JSON-ready form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "USES",
    "KINDS",
    "Site",
    "GlobalRef",
    "Extension",
    "PersistentId",
    "Violation",
    "PickleReport",
    "ScanReport",
]

# How a global's object is used by the stream: only pushed, called by REDUCE,
# constructed by NEWOBJ/NEWOBJ_EX/INST/OBJ (or REDUCE of copyreg's
# _reconstructor/__newobj__ with it), given BUILD state, or filled by
# APPEND(S)/SETITEM(S)/ADDITEMS on an instance that calling it produced.
USES = ("pushed", "called", "constructed", "built", "filled")

# Kinds of violation, each one a reason a load would be refused.
KINDS = {
    "global": "a global the policy refuses",
    "dynamic-global": "a STACK_GLOBAL whose module or name is computed at load time",
    "extension": "an extension code the policy does not map",
    "persistent-id": "a persistent id, which the policy does not enable",
    "use": "a call, BUILD or item assignment on an object the load never hands over for it",
    "limit": "a resource limit of the policy that the stream passes",
    "malformed": "bytes that are not a valid pickle",
    "container": "a container that cannot be read completely within the policy's limits",
}


@dataclass(slots=True)
class Site:
    """One reference to a global: the opcode at ``offset`` (GLOBAL, INST,
    STACK_GLOBAL, EXT1/2/4) in pickle ``part``.  ``module``/``name`` are what
    the policy judges (after py2 and alias mapping); ``raw_module``/
    ``raw_name`` are what the stream wrote (for EXT: the policy's mapping).
    ``module``/``name`` are None for a dynamic STACK_GLOBAL (the raw ones
    hold whichever operand was a known string).  ``uses`` lists ``(use,
    offset)`` for every use of the object this opcode pushed; ``allowed``,
    ``rule`` and ``message`` are the policy's verdict."""

    part: str
    offset: int
    opcode: str
    module: str | None
    name: str | None
    raw_module: str | None
    raw_name: str | None
    uses: list[tuple[str, int]] = field(default_factory=list)
    allowed: bool = False
    rule: str = ""
    message: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.module}:{self.name}" if self.module is not None else "<dynamic>"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"part": self.part, "offset": self.offset, "opcode": self.opcode,
                             "allowed": self.allowed}
        if self.raw_module is not None and (self.raw_module, self.raw_name) != (self.module, self.name):
            d["as_written"] = f"{self.raw_module}:{self.raw_name}"
        d["uses"] = [{"use": u, "offset": o} for u, o in self.uses]
        return d


@dataclass(slots=True)
class GlobalRef:
    """Every reference to one ``module:qualname``, with the policy's verdict."""

    module: str
    name: str
    allowed: bool
    rule: str
    message: str
    sites: list[Site] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return f"{self.module}:{self.name}"

    @property
    def offsets(self) -> list[int]:
        return [s.offset for s in self.sites]

    @property
    def uses(self) -> dict[str, list[int]]:
        """Use name -> offsets of the opcodes that used it (``pushed`` lists
        the sites whose object was never used otherwise)."""
        out: dict[str, list[int]] = {}
        for s in self.sites:
            if not s.uses:
                out.setdefault("pushed", []).append(s.offset)
            for use, off in s.uses:
                out.setdefault(use, []).append(off)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "global": self.qualified,
            "allowed": self.allowed,
            "rule": self.rule,
            "message": self.message,
            "uses": self.uses,
            "sites": [s.to_dict() for s in self.sites],
        }


@dataclass(slots=True)
class Extension:
    """An EXT1/EXT2/EXT4 opcode: its code and what the policy maps it to."""

    part: str
    offset: int
    code: int
    name: str | None  # "module:qualname", or None when the policy has no mapping

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "offset": self.offset, "code": self.code, "global": self.name}


@dataclass(slots=True)
class PersistentId:
    """A PERSID/BINPERSID opcode and its id (``repr``, shortened) when known."""

    part: str
    offset: int
    opcode: str
    pid: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "offset": self.offset, "opcode": self.opcode, "pid": self.pid}


@dataclass(slots=True)
class Violation:
    """One reason a load under the policy would be refused (see :data:`KINDS`)."""

    kind: str
    part: str
    offset: int | None
    opcode: str | None
    rule: str
    message: str
    name: str | None = None  # "module:qualname" for global-related kinds

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "part": self.part, "offset": self.offset, "opcode": self.opcode,
                "rule": self.rule, "global": self.name, "message": self.message}

    def where(self) -> str:
        at = f"offset {self.offset}" if self.offset is not None else ""
        if self.part:
            return f"{self.part} {at}".strip()
        return at


@dataclass(slots=True)
class PickleReport:
    """What the static decoder found in one pickle stream.

    ``part`` names it within its input ("" for the only pickle of a plain
    file, "pickle 2", "archive/data.pkl", ...); offsets are relative to the
    start of the enclosing buffer of that part (the file for pickles in a
    row, the member's bytes for a zip member).  ``end`` is the offset after
    STOP (None when the stream never reached a STOP).  ``primary`` is false for
    readings made only in case a consumer reads the bytes that way (the raw
    pickle reading of a zip, the plain reading of a joblib stream): their
    globals count, but their failing to decode is only a note.  ``base`` is
    where that enclosing buffer starts in the input, so ``base + offset`` is
    an offset in the file; None when the buffer was decompressed (a deflated
    zip member, a gzip stream) and no offset of the file holds its bytes.
    """

    part: str
    start: int
    end: int | None = None
    protocol: int | None = None
    opcodes: int = 0
    primary: bool = True
    view: str = "pickle"
    sites: list[Site] = field(default_factory=list)
    extensions: list[Extension] = field(default_factory=list)
    persistent_ids: list[PersistentId] = field(default_factory=list)
    buffers: list[int] = field(default_factory=list)  # offsets of NEXT_BUFFER
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    malformed: Violation | None = None
    base: int | None = 0

    @property
    def complete(self) -> bool:
        return self.end is not None and self.malformed is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "view": self.view,
            "primary": self.primary,
            "start": self.start,
            "end": self.end,
            "base": self.base,
            "protocol": self.protocol,
            "opcodes": self.opcodes,
            "globals": [s.qualified for s in self.sites],
            "extensions": [e.to_dict() for e in self.extensions],
            "persistent_ids": [p.to_dict() for p in self.persistent_ids],
            "out_of_band_buffers": list(self.buffers),
            "malformed": self.malformed.to_dict() if self.malformed else None,
            "notes": list(self.notes),
        }


@dataclass(slots=True)
class ScanReport:
    """The report of one scanned input.  ``ok`` is true when a load under
    ``policy`` would refuse nothing the scan can see: no refused or dynamic
    global, extension code, persistent id or use, no limit passed, nothing
    malformed, no container left unread."""

    source: str
    policy: str
    size: int
    format: str
    formats: list[str] = field(default_factory=list)
    pickles: list[PickleReport] = field(default_factory=list)
    globals: list[GlobalRef] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def protocol(self) -> int | None:
        """The protocol of the first pickle found (None when there is none)."""
        for p in self.pickles:
            if p.protocol is not None:
                return p.protocol
        return None

    @property
    def refused(self) -> list[GlobalRef]:
        return [g for g in self.globals if not g.allowed]

    @property
    def extensions(self) -> list[Extension]:
        return [e for p in self.pickles for e in p.extensions]

    @property
    def persistent_ids(self) -> list[PersistentId]:
        return [x for p in self.pickles for x in p.persistent_ids]

    @property
    def buffers(self) -> list[tuple[str, int]]:
        return [(p.part, off) for p in self.pickles for off in p.buffers]

    def sites(self) -> list[Site]:
        """Every global reference of every pickle, in stream order."""
        return [s for p in self.pickles for s in p.sites]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "policy": self.policy,
            "ok": self.ok,
            "size": self.size,
            "format": self.format,
            "formats": list(self.formats),
            "protocol": self.protocol,
            "globals": [g.to_dict() for g in self.globals],
            "violations": [v.to_dict() for v in self.violations],
            "pickles": [p.to_dict() for p in self.pickles],
            "notes": list(self.notes),
        }
