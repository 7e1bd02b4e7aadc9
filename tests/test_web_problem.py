"""Refusal -> HTTP status, RFC 9457 problem document, structured log record."""

from __future__ import annotations

import json
import logging

import pytest

from safepickle import CallFailed, ForbiddenGlobal, LimitExceeded, MalformedPickle, SafePickleError
from safepickle.web import (
    BadContentLength,
    BodyTimeout,
    IncompleteBody,
    JsonLineFormatter,
    UnsupportedMediaType,
    clean_text,
    log_refusal,
    problem_for,
    refusal_record,
    status_for,
)

SECRET = "SECRET-UPLOAD-BYTES-7f3a"


def forbidden(module="os", name="system"):
    return ForbiddenGlobal(
        module, name, f"refused {module}:{name} {SECRET}", policy="numpy-only",
        offset=17, opcode="STACK_GLOBAL", rule="deny.builtin",
    )


@pytest.mark.parametrize(
    ("exc", "status", "kind"),
    [
        (LimitExceeded("max_input_bytes", 2000, 1000), 413, "upload-too-large"),
        (LimitExceeded("max_depth", 1001, 1000, offset=5, opcode="APPEND"), 422, "limit-exceeded"),
        (LimitExceeded("max_seconds", 2.5, 2.0), 422, "limit-exceeded"),
        (forbidden(), 422, "forbidden-global"),
        (MalformedPickle(f"bad {SECRET}", offset=3, opcode="BININT", rule="truncated"), 422,
         "malformed-pickle"),
        (CallFailed(f"call failed {SECRET}", offset=9, opcode="REDUCE", rule="call"), 422,
         "malformed-pickle"),
        (SafePickleError(f"other {SECRET}", rule="x"), 422, "refused"),
        (UnsupportedMediaType("text/plain", ("application/x-python-pickle",)), 415,
         "unsupported-media-type"),
        (BadContentLength("Content-Length is not a decimal number"), 400, "bad-content-length"),
        (IncompleteBody(10, 100), 400, "incomplete-body"),
        (BodyTimeout(10, 2.5), 408, "body-timeout"),
    ],
)
def test_status_and_document(exc, status, kind):
    assert status_for(exc) == status
    problem = problem_for(exc)
    doc = json.loads(problem.to_json())
    assert list(doc)[:4] == ["type", "title", "status", "detail"]
    assert doc["status"] == status
    assert doc["type"] == "urn:safepickle:problem:" + kind
    assert doc["error"] == type(exc).__name__
    assert doc["title"] and doc["detail"]
    # The free-text message (which may quote upload bytes) never goes out.
    assert SECRET not in problem.to_json().decode()
    assert "Traceback" not in doc["detail"]


def test_forbidden_global_is_named_with_location():
    doc = problem_for(forbidden()).to_dict()
    assert doc["global"] == "os:system"
    assert doc["policy"] == "numpy-only"
    assert (doc["offset"], doc["opcode"], doc["rule"]) == (17, "STACK_GLOBAL", "deny.builtin")
    assert "os:system" in doc["detail"] and "offset 17" in doc["detail"]
    assert "STACK_GLOBAL" in doc["detail"]


def test_limit_members():
    doc = problem_for(LimitExceeded("max_input_bytes", 2000, 1000)).to_dict()
    assert (doc["limit"], doc["value"], doc["maximum"]) == ("max_input_bytes", 2000, 1000)
    assert "1000 bytes" in doc["detail"]
    odd = LimitExceeded("max_depth", object(), "lots")
    doc = problem_for(odd).to_dict()
    assert "value" not in doc and "maximum" not in doc


def test_upload_controlled_global_is_escaped_and_bounded():
    exc = forbidden("os\r\nX-Injected: 1\x00" + "m" * 5000, "sys\u2028tem" + "n" * 5000)
    doc = problem_for(exc).to_dict()
    text = json.dumps(doc)
    assert "\r" not in doc["global"] and "\n" not in doc["global"] and "\x00" not in doc["global"]
    assert "\u2028" not in doc["global"]
    assert "\\r\\n" in doc["global"]
    assert len(doc["global"]) < 220
    assert len(text) < 1500


def test_clean_text():
    assert clean_text("plain") == "plain"
    assert clean_text("a\nb\tc\x7f") == "a\\nb\\tc\\x7f"
    assert clean_text("x" * 50, 10) == "x" * 10 + "..."
    assert len(clean_text("\x00" * 50, 10)) == 13


def test_type_base_is_configurable():
    doc = problem_for(forbidden(), type_base="https://example.test/problems/").to_dict()
    assert doc["type"] == "https://example.test/problems/forbidden-global"


def test_refusal_record_and_log(caplog):
    exc = forbidden()
    problem = problem_for(exc)
    record = refusal_record(
        exc, problem, client="10.0.0.1:4242", method="POST", route="/arrays\n",
        body_bytes=123, body_complete=True, sha256="ab" * 32,
    )
    assert record["event"] == "safepickle.upload_refused"
    assert record["status"] == 422
    assert record["global"] == "os:system"
    assert record["route"] == "/arrays\\n"
    assert (record["offset"], record["rule"], record["sha256"]) == (17, "deny.builtin", "ab" * 32)
    assert SECRET not in json.dumps(record)
    with caplog.at_level(logging.WARNING, logger="safepickle.web"):
        log_refusal(record)
    [logged] = caplog.records
    assert logged.name == "safepickle.web" and logged.levelno == logging.WARNING
    assert logged.safepickle is record
    line = JsonLineFormatter().format(logged)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["sha256"] == "ab" * 32 and parsed["client"] == "10.0.0.1:4242"
    assert parsed["level"] == "WARNING"


def test_json_formatter_plain_record():
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    assert json.loads(JsonLineFormatter().format(rec))["message"] == "hello you"
