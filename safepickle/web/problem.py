"""Map a refusal to an HTTP status and an RFC 9457 problem document.

The document is built only from the structured fields of the error (class,
rule, offset, opcode, limit, the refused ``module:qualname``), never from its
free-text message: a message may quote an argument read from the upload, and
the answer must not echo upload bytes.  The one upload-controlled string that
is named on purpose, the refused global, is escaped to printable characters
and cut to a bounded length.  No traceback is ever included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ForbiddenGlobal, LimitExceeded, MalformedPickle, SafePickleError
from .errors import BadContentLength, BodyTimeout, IncompleteBody, UnsupportedMediaType, UploadRefused

__all__ = [
    "DEFAULT_TYPE_BASE",
    "MEDIA_TYPE",
    "Problem",
    "clean_text",
    "global_name",
    "problem_for",
    "status_for",
]

MEDIA_TYPE = "application/problem+json"

# Problem types are identifiers, not pages: RFC 9457 allows non-resolvable URIs.
DEFAULT_TYPE_BASE = "urn:safepickle:problem:"

_MAX_TEXT = 200


def clean_text(value: object, limit: int = _MAX_TEXT) -> str:
    """``value`` as printable text: control and other unprintable characters
    become backslash escapes (so a log line cannot be split or forged), and
    the result is cut to about ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    head = text[:limit]
    if not head.isprintable():
        head = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in head)
    if len(text) > limit or len(head) > limit:
        return head[:limit] + "..."
    return head


def global_name(exc: ForbiddenGlobal) -> str:
    """The refused ``module:qualname``, cleaned for display."""
    return f"{clean_text(exc.module, _MAX_TEXT // 2)}:{clean_text(exc.name, _MAX_TEXT // 2)}"


@dataclass(frozen=True)
class Problem:
    """One RFC 9457 problem document; ``extensions`` are extra members."""

    status: int
    type: str
    title: str
    detail: str
    extensions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The document as a JSON-ready dict (standard members first)."""
        doc: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        for key, value in self.extensions.items():
            doc.setdefault(key, value)
        return doc

    def to_json(self) -> bytes:
        """The document serialised as UTF-8 JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=True, separators=(",", ":")).encode()


def status_for(exc: SafePickleError) -> int:
    """413 for input size; the framing status for an HTTP-level refusal
    (400 bad or short body, 408 body too slow, 415 media type);
    422 for a forbidden global, a malformed stream and every other refusal."""
    if isinstance(exc, LimitExceeded) and exc.limit == "max_input_bytes":
        return 413
    if isinstance(exc, UploadRefused):
        return exc.status
    return 422


def _number(value: object) -> int | float | None:
    # Only plain numbers go out: a limit's value is never upload text.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _where(exc: SafePickleError) -> str:
    """Where it failed, as ``" (opcode X at offset N, rule R)"``; ``""`` if unknown."""
    at = " ".join(
        part
        for part in (
            f"opcode {clean_text(exc.opcode, 40)}" if exc.opcode is not None else "",
            f"at offset {exc.offset}" if exc.offset is not None else "",
        )
        if part
    )
    rule = f"rule {clean_text(exc.rule, 80)}" if exc.rule is not None else ""
    parts = [part for part in (at, rule) if part]
    return f" ({', '.join(parts)})" if parts else ""


def problem_for(exc: SafePickleError, *, type_base: str = DEFAULT_TYPE_BASE) -> Problem:
    """The problem document that answers a refused upload.

    Members beyond the standard four: ``error`` (the exception class),
    ``rule``, ``offset``, ``opcode``, and where they apply ``global`` and
    ``policy`` (forbidden global) or ``limit``, ``maximum``, ``value``
    (limit exceeded; ``value`` is the declared or received size for input).
    """
    ext: dict[str, Any] = {"error": type(exc).__name__}
    if exc.rule is not None:
        ext["rule"] = clean_text(exc.rule, 80)
    if exc.offset is not None:
        ext["offset"] = exc.offset
    if exc.opcode is not None:
        ext["opcode"] = clean_text(exc.opcode, 40)
    where = _where(exc)
    status = status_for(exc)

    if isinstance(exc, LimitExceeded):
        ext["limit"] = clean_text(exc.limit, 80)
        for key in ("maximum", "value"):
            number = _number(getattr(exc, key))
            if number is not None:
                ext[key] = number
        if status == 413:
            bound = f"{exc.maximum} bytes" if _number(exc.maximum) is not None else "the size"
            kind, title = "upload-too-large", "Upload too large"
            detail = f"The upload is larger than the {bound} this endpoint accepts."
        else:
            bound = f" ({exc.maximum})" if _number(exc.maximum) is not None else ""
            kind, title = "limit-exceeded", "Upload passed a resource limit"
            detail = f"Loading the upload passed the limit {ext['limit']}{bound}{where}."
    elif isinstance(exc, ForbiddenGlobal):
        ext["global"] = global_name(exc)
        policy = f"policy {clean_text(exc.policy, 80)!r}" if exc.policy else "the policy"
        if exc.policy:
            ext["policy"] = clean_text(exc.policy, 80)
        kind, title = "forbidden-global", "Forbidden global in upload"
        detail = f"The upload uses {ext['global']}, which {policy} does not allow{where}."
    elif isinstance(exc, UnsupportedMediaType):
        ext["accepted"] = list(exc.accepted)
        kind, title = "unsupported-media-type", "Unsupported media type"
        detail = f"Send the upload with Content-Type {' or '.join(exc.accepted)}."
    elif isinstance(exc, IncompleteBody):
        ext["received"] = exc.received
        if exc.declared is not None:
            ext["declared"] = exc.declared
        kind, title = "incomplete-body", "Incomplete request body"
        detail = "The request body ended before the length it declared."
    elif isinstance(exc, BodyTimeout):
        ext["received"] = exc.received
        ext["timeout"] = exc.timeout
        kind, title = "body-timeout", "Request body too slow"
        detail = f"The request body was not complete within {exc.timeout} seconds."
    elif isinstance(exc, BadContentLength):
        kind, title = "bad-content-length", "Bad Content-Length"
        detail = "The Content-Length header is invalid or disagrees with the body."
    elif isinstance(exc, UploadRefused):
        kind, title = "upload-refused", "Upload refused"
        detail = f"The request was refused{where}."
    elif isinstance(exc, MalformedPickle):
        kind, title = "malformed-pickle", "Malformed pickle"
        detail = f"The upload is not a valid pickle{where}."
    else:
        kind, title = "refused", "Upload refused"
        detail = f"The upload was refused{where}."
    return Problem(status, type_base + kind, title, detail, ext)
