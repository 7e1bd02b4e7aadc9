"""The FastAPI integration in-process: the dependency, the handler, the log.

Requests go straight to the ASGI app so that the tests see every
``receive()`` the app makes: a refused body must not be read further.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated
# dependency of the route defined inside make_app() as an object.
import asyncio
import hashlib
import json
import logging
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI

from safepickle.web import UploadLoader
from safepickle.web.fastapi import PickleUpload, install

LIMIT = 1000


class RecordingExecutor(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(2, thread_name_prefix="recording")
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def make_app(executor=None, body_timeout=None, **kw: Any) -> FastAPI:
    app = FastAPI()
    install(app)
    loader = UploadLoader("data-only", max_bytes=LIMIT, executor=executor, body_timeout=body_timeout)
    dep = PickleUpload(loader=loader, **kw)

    @app.post("/load/{name}")
    async def load(name: str, obj: Annotated[Any, Depends(dep)]) -> dict:
        return {"repr": repr(obj), "type": type(obj).__name__}

    return app


def scope(headers: dict[str, str]) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/load/x", "raw_path": b"/load/x", "query_string": b"",
        "root_path": "", "client": ("10.1.2.3", 5555), "server": ("test", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }


def call(
    app, headers: dict[str, str], messages: list[dict], *, then_stall: bool = False
) -> tuple[int, dict, dict, int]:
    """Run one request; returns (status, headers, JSON body, receive calls).
    After ``messages`` the client disconnects, or with ``then_stall`` sends
    nothing more and stays connected."""
    pending = list(messages)
    calls = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal calls
        calls += 1
        if pending:
            return pending.pop(0)
        if then_stall:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope(headers), receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    hdrs = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], hdrs, json.loads(body), calls


def body_messages(data: bytes, size: int = 100) -> list[dict]:
    parts = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    return [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]


PICKLE_HEADERS = {"content-type": "application/x-python-pickle"}

VALUES = [
    None, True, -(2**70), 3.25, "héllo", b"\x00bytes", [1, [2, 3]], (1, "a"), {"k": {1, 2}},
    frozenset({1}), bytearray(b"ba"), {"shared": [[0]] * 2},
]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_benign_every_protocol(protocol):
    app = make_app()
    for value in VALUES:
        data = pickle.dumps(value, protocol=protocol)
        status, _, doc, _ = call(app, {**PICKLE_HEADERS, "content-length": str(len(data))},
                                    body_messages(data))
        assert status == 200, (value, doc)
        assert doc == {"repr": repr(value), "type": type(value).__name__}


def test_declared_length_over_limit_is_413_without_reading(caplog):
    app = make_app()
    with caplog.at_level(logging.WARNING, logger="safepickle.web"):
        status, hdrs, doc, calls = call(
            app, {**PICKLE_HEADERS, "content-length": str(LIMIT + 1)}, body_messages(b"x" * 2000)
        )
    assert status == 413 and calls == 0
    assert hdrs["content-type"] == "application/problem+json"
    assert (doc["limit"], doc["maximum"], doc["value"]) == ("max_input_bytes", LIMIT, LIMIT + 1)
    [rec] = [r.safepickle for r in caplog.records]
    assert rec["status"] == 413 and rec["body_bytes"] == 0 and rec["sha256"] is None
    assert rec["client"] == "10.1.2.3:5555" and rec["route"] == "/load/{name}"


def test_streamed_body_over_limit_stops_reading(caplog):
    app = make_app()
    messages = body_messages(b"y" * 5000, size=400)
    with caplog.at_level(logging.WARNING, logger="safepickle.web"):
        status, _, doc, calls = call(app, PICKLE_HEADERS, messages)
    assert status == 413
    assert calls == 3  # 400 + 400 stored, the third chunk passes 1000: stop
    assert doc["value"] == 1200
    [rec] = [r.safepickle for r in caplog.records]
    assert rec["body_bytes"] == 800 and rec["body_complete"] is False
    assert rec["sha256"] == hashlib.sha256(b"y" * 800).hexdigest()


def test_forbidden_global_is_422_with_record(caplog):
    app = make_app()
    data = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."
    with caplog.at_level(logging.WARNING, logger="safepickle.web"):
        status, hdrs, doc, _ = call(app, PICKLE_HEADERS, body_messages(data))
    assert status == 422 and hdrs["content-type"] == "application/problem+json"
    assert doc["error"] == "ForbiddenGlobal" and doc["global"] == "os:system"
    assert doc["offset"] == 2
    [rec] = [r.safepickle for r in caplog.records]
    assert rec["global"] == "os:system" and rec["offset"] == 2 and rec["method"] == "POST"
    assert rec["body_bytes"] == len(data) and rec["body_complete"] is True
    assert rec["sha256"] == hashlib.sha256(data).hexdigest()


def test_malformed_is_422():
    status, _, doc, _ = call(make_app(), PICKLE_HEADERS, body_messages(b"\x80\x02]q\x00(K\x01"))
    assert status == 422 and doc["error"] == "MalformedPickle"
    assert "Traceback" not in json.dumps(doc)


def test_client_disconnect_mid_body(caplog):
    app = make_app()
    messages = body_messages(b"z" * 300, size=100)[:2]  # then http.disconnect
    with caplog.at_level(logging.WARNING, logger="safepickle.web"):
        status, _, doc, _ = call(app, {**PICKLE_HEADERS, "content-length": "300"}, messages)
    assert status == 400 and doc["error"] == "IncompleteBody"
    assert (doc["received"], doc["declared"]) == (200, 300)
    [rec] = [r.safepickle for r in caplog.records]
    assert rec["body_bytes"] == 200 and rec["body_complete"] is False


def test_stalled_body_is_408(caplog):
    app = make_app(body_timeout=0.1)
    messages = body_messages(b"s" * 300, size=100)[:1]
    with caplog.at_level(logging.WARNING, logger="safepickle.web"):
        status, hdrs, doc, _ = call(app, {**PICKLE_HEADERS, "content-length": "300"}, messages, then_stall=True)
    assert status == 408 and hdrs["content-type"] == "application/problem+json"
    assert (doc["error"], doc["received"], doc["timeout"]) == ("BodyTimeout", 100, 0.1)
    [rec] = [r.safepickle for r in caplog.records]
    assert rec["status"] == 408 and rec["body_bytes"] == 100 and rec["body_complete"] is False


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({"content-type": "application/x-python-pickle"}, True),
        ({"content-type": "Application/Octet-Stream; charset=binary"}, True),
        ({"content-type": "application/json"}, False),
        ({}, False),
    ],
)
def test_content_type(headers, ok):
    status, _, doc, calls = call(make_app(), headers, body_messages(pickle.dumps(1)))
    if ok:
        assert status == 200
    else:
        assert status == 415 and calls == 0
        assert "application/x-python-pickle" in doc["accepted"]


def test_any_content_type_when_disabled():
    status, _, _, _ = call(make_app(content_types=None), {}, body_messages(pickle.dumps(1)))
    assert status == 200


def test_bad_content_length_is_400():
    status, _, doc, calls = call(make_app(), {**PICKLE_HEADERS, "content-length": "12, 12"}, [])
    assert status == 400 and doc["error"] == "BadContentLength" and calls == 0


def test_load_runs_in_the_executor():
    executor = RecordingExecutor()
    app = make_app(executor=executor)
    for _ in range(3):
        status, *_ = call(app, PICKLE_HEADERS, body_messages(pickle.dumps([1, 2])))
        assert status == 200
    assert executor.submitted == 3
    executor.shutdown()


def test_loader_and_arguments_are_exclusive():
    with pytest.raises(TypeError):
        PickleUpload(loader=UploadLoader("data-only"), max_bytes=10)


def test_web_package_imports_no_framework():
    code = (
        "import sys, safepickle.web; "
        "bad = [m for m in ('fastapi', 'starlette', 'uvicorn', 'httpx') if m in sys.modules]; "
        "assert not bad, bad"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
