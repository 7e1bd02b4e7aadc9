"""One structured log record per refused upload, for operators to alert on.

Records go to the ``safepickle.web`` logger at WARNING.  The record's fields
are in ``LogRecord.safepickle`` (a dict, JSON-ready); the message repeats the
main ones for plain-text handlers.  Like the problem document, the record
carries no upload bytes: the body is identified by its size and SHA-256.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..errors import SafePickleError
from .problem import Problem, clean_text

__all__ = ["LOGGER_NAME", "JsonLineFormatter", "log_refusal", "refusal_record"]

LOGGER_NAME = "safepickle.web"

# The problem members that describe the refusal itself.
_FROM_PROBLEM = ("error", "rule", "offset", "opcode", "global", "policy", "limit", "maximum", "value")


def refusal_record(
    exc: SafePickleError,
    problem: Problem,
    *,
    client: str | None = None,
    method: str | None = None,
    route: str | None = None,
    body_bytes: int | None = None,
    body_complete: bool | None = None,
    sha256: str | None = None,
) -> dict[str, Any]:
    """The fields logged for one refusal.

    ``client`` is "host:port", ``route`` the route template (or path) that
    refused, ``body_bytes``/``sha256`` describe what was received (None when
    the body was refused before it was read).
    """
    record: dict[str, Any] = {
        "event": "safepickle.upload_refused",
        "status": problem.status,
        "client": clean_text(client, 80) if client is not None else None,
        "method": clean_text(method, 16) if method is not None else None,
        "route": clean_text(route, 200) if route is not None else None,
    }
    for key in _FROM_PROBLEM:
        if key in problem.extensions:
            record[key] = problem.extensions[key]
    record["body_bytes"] = body_bytes
    record["body_complete"] = body_complete
    record["sha256"] = sha256
    return record


def log_refusal(record: dict[str, Any], logger: logging.Logger | None = None) -> None:
    """Emit ``record`` as one WARNING on ``logger`` (default ``safepickle.web``)."""
    log = logger if logger is not None else logging.getLogger(LOGGER_NAME)
    log.warning(
        "pickle upload refused: status=%s route=%s client=%s error=%s rule=%s offset=%s sha256=%s",
        record.get("status"),
        record.get("route"),
        record.get("client"),
        record.get("error"),
        record.get("rule"),
        record.get("offset"),
        record.get("sha256"),
        extra={"safepickle": record},
    )


class JsonLineFormatter(logging.Formatter):
    """Formats a record as one JSON object per line: time, level, logger,
    message, and the ``safepickle`` fields when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "safepickle", None)
        if isinstance(fields, dict):
            doc.update(fields)
        else:
            doc["message"] = record.getMessage()
        return json.dumps(doc, ensure_ascii=True, default=str)
