"""Findings and their artifacts: a minimized reproducer plus a short report.

For each finding the artifacts folder gets ``<id>.pickle`` (the minimized
stream, loadable as is by ``safepickle load``) and ``<id>.json`` (the report:
which oracle failed, the exception or event, the offset and opcode, the
policy, the load's keyword arguments with any out-of-band buffers, where the
case came from, and the original stream).  ``python -m fuzz replay <id>.json``
re-runs every oracle on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .case import FuzzCase

__all__ = ["Finding", "ORACLES", "write_artifacts", "read_artifact"]

#: The oracles, numbered as in the issue.
ORACLES = {
    "exceptions": "1: only SafePickleError subclasses escape loads/load",
    "audit": "2: nothing dangerous runs and nothing forbidden is handed out",
    "differential": "3: same result as CPython's restricted unpickler, or a documented refusal",
    "resources": "4: each load stays within the policy's time and memory limits",
    "scan": "5: every global the load resolves was reported statically at the same offset",
}


@dataclass
class Finding:
    """One oracle failure.  ``kind`` names the failure within the oracle;
    ``exception`` is ``"Type: message"`` when an exception is involved."""

    oracle: str
    kind: str
    message: str
    exception: str | None = None
    offset: int | None = None
    opcode: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def signature(self) -> tuple[str, str, str]:
        """What makes two findings the same bug (for de-duplication and for
        the minimizer, which keeps a candidate only if it has the same one)."""
        exc_type = (self.exception or "").split(":", 1)[0]
        return self.oracle, self.kind, exc_type

    def summary(self) -> str:
        where = f" at offset {self.offset}" if self.offset is not None else ""
        op = f" ({self.opcode})" if self.opcode else ""
        return f"[{self.oracle}/{self.kind}]{where}{op}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _short_id(finding: Finding, case: FuzzCase) -> str:
    h = hashlib.sha256(repr(finding.signature).encode())
    h.update(case.sha.encode())
    return h.hexdigest()[:10]


def write_artifacts(folder: str | Path, finding: Finding, case: FuzzCase, policy_spec: dict[str, Any],
                    original: FuzzCase | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``<id>.pickle`` and ``<id>.json``; return the JSON report's path."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{finding.oracle}-{finding.kind}-{_short_id(finding, case)}"
    (root / f"{stem}.pickle").write_bytes(case.data)
    report = {
        "oracle": finding.oracle,
        "oracle_text": ORACLES.get(finding.oracle, finding.oracle),
        "finding": finding.to_json(),
        "summary": finding.summary(),
        "policy": policy_spec,
        "case": case.to_json(),
        "reproducer": f"{stem}.pickle",
        "original_size": len(original.data) if original is not None else len(case.data),
        "minimized_size": len(case.data),
        "original_case": original.to_json() if original is not None and original != case else None,
        "replay": f"python -m fuzz replay {root / (stem + '.json')}",
    }
    if extra:
        report.update(extra)
    path = root / f"{stem}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=True, default=repr) + "\n")
    return path


def read_artifact(path: str | Path) -> tuple[FuzzCase, dict[str, Any] | None, dict[str, Any]]:
    """The case, the policy spec (None when unknown) and the report of an
    artifact: a ``.json`` report, or a bare stream (its ``.json`` sibling is
    read when it exists)."""
    p = Path(path)
    report_path = p if p.suffix == ".json" else p.with_suffix(".json")
    if report_path.exists():
        report = json.loads(report_path.read_text())
        case_json = report["case"]
        data = None
        if p.suffix != ".json":
            data = p.read_bytes()
        return FuzzCase.from_json(case_json, data), report.get("policy"), report
    return FuzzCase(data=p.read_bytes(), origin=str(p)), None, {}
