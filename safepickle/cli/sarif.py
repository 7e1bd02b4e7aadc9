"""SARIF 2.1.0 output of ``safepickle scan``: one result per violation.

Each result names its rule (one per violation kind), the file as an
``artifactLocation`` relative to the working directory when possible, and a
``region`` with the byte offset in the file (and ``startLine`` 1, which
code-scanning services require even for binary files).  The part inside a
container (a zip member, a pickle after the first) is the result's logical
location; where its bytes are not the file's (a deflated member, a gzip
stream) the region is the whole file and the message gives the offset
within the part.
``partialFingerprints`` make results stable across runs.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import urllib.parse
from typing import Any

from ..scan.report import KINDS

__all__ = ["sarif_log", "RULES"]

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://pypi.org/project/safepickle/"

# ruleId -> (violation kind, short name)
RULES: dict[str, tuple[str, str]] = {
    "SP001": ("global", "forbidden-global"),
    "SP002": ("dynamic-global", "dynamic-global"),
    "SP003": ("extension", "forbidden-extension-code"),
    "SP004": ("persistent-id", "forbidden-persistent-id"),
    "SP005": ("use", "forbidden-use"),
    "SP006": ("limit", "limit-exceeded"),
    "SP007": ("malformed", "malformed-pickle"),
    "SP008": ("container", "unreadable-container"),
    "SP009": ("io", "unreadable-input"),
}
_BY_KIND = {kind: rule_id for rule_id, (kind, _name) in RULES.items()}
_KIND_TEXT = {**KINDS, "io": "an input that could not be read"}


def _uri(path: str) -> str:
    """The path as a SARIF ``uri``: an RFC 3986 URI reference.  Relative to the
    working directory when the file is under it (what code-scanning services
    resolve against the checkout), a ``file://`` URI otherwise; spaces, ``#``,
    ``%``, non-ASCII and undecodable bytes of the name are percent-encoded."""
    if path == "-":
        return "stdin"
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        rel = ".."
    if rel == ".." or rel.startswith(".." + os.sep):
        return pathlib.Path(os.path.abspath(path)).as_uri()
    # ":" stays encoded: in a first segment it would read as a URI scheme.
    return urllib.parse.quote(os.fsencode(rel.replace(os.sep, "/")), safe="/!$&'()*+,;=@")


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def sarif_log(reports: list[dict[str, Any]], errors: list[tuple[str, str]], *, version: str,
              policy: str) -> dict[str, Any]:
    """The SARIF log (a JSON-ready dict) for scan report dicts and I/O errors."""
    rule_ids = list(RULES)
    rules = [
        {
            "id": rid,
            "name": name,
            "shortDescription": {"text": _KIND_TEXT[kind][0].upper() + _KIND_TEXT[kind][1:]},
            "fullDescription": {"text": f"safepickle scan under a policy refuses {_KIND_TEXT[kind]}."},
            "defaultConfiguration": {"level": "error"},
            "helpUri": INFO_URI,
        }
        for rid, (kind, name) in RULES.items()
    ]
    artifacts: list[dict[str, Any]] = []
    index: dict[str, int] = {}

    def artifact(path: str) -> int:
        uri = _uri(path)
        if uri not in index:
            index[uri] = len(artifacts)
            artifacts.append({"location": {"uri": uri}})
        return index[uri]

    results = []
    for rep in reports:
        source = rep["source"]
        i = artifact(source)
        # where each part's offsets start in the file (None: decompressed bytes)
        bases: dict[str, int | None] = {"": 0}
        for p in rep.get("pickles", ()):
            bases.setdefault(p["part"], p.get("base", 0))
        for v in rep["violations"]:
            rid = _BY_KIND.get(v["kind"], "SP008")
            offset = v["offset"] if isinstance(v["offset"], int) and v["offset"] >= 0 else None
            base = bases.get(v["part"])
            text = v["message"]
            if v.get("global"):
                text = f"{v['global']}: {text}"
            where = f" in {v['part']}" if v["part"] else ""
            at = f"offset {offset}{where}" if offset is not None else (v["part"] or "the file")
            # A region points into the file only where the part's bytes are the file's
            # (not inside a deflated member or a gzip stream): else the whole file.
            region: dict[str, Any] = {"startLine": 1}
            if offset is not None and base is not None:
                region.update(byteOffset=base + offset, byteLength=1)
            result: dict[str, Any] = {
                "ruleId": rid,
                "ruleIndex": rule_ids.index(rid),
                "level": "error",
                "message": {"text": f"{text} ({at}, policy {rep['policy']})"},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": _uri(source), "index": i},
                        "region": region,
                    },
                }],
                "partialFingerprints": {
                    "safepickle/v1": _fingerprint(_uri(source), v["part"], offset, v["kind"], v.get("global"),
                                                  v["rule"]),
                },
                "properties": {"kind": v["kind"], "rule": v["rule"], "opcode": v["opcode"]},
            }
            if v["part"]:
                result["locations"][0]["logicalLocations"] = [
                    {"name": v["part"], "fullyQualifiedName": f"{_uri(source)}!{v['part']}", "kind": "member"}]
            results.append(result)
    for path, reason in errors:
        i = artifact(path)
        results.append({
            "ruleId": "SP009",
            "ruleIndex": rule_ids.index("SP009"),
            "level": "error",
            "message": {"text": f"cannot scan {path}: {reason}"},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(path), "index": i}}}],
            "partialFingerprints": {"safepickle/v1": _fingerprint(_uri(path), "io", reason)},
        })
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "safepickle", "version": version, "semanticVersion": version,
                                "informationUri": INFO_URI, "rules": rules}},
            "artifacts": artifacts,
            "results": results,
            "properties": {"policy": policy},
            "columnKind": "unicodeCodePoints",
        }],
    }
