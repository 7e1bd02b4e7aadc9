"""End to end: the example upload service under uvicorn, over real HTTP.

One uvicorn subprocess (``python -m uvicorn examples.upload_service.app:app``
on 127.0.0.1 and a free port, loopback only) serves the whole module.  A
test-only ``sitecustomize`` on the server's PYTHONPATH installs an audit hook
that appends security-relevant events to a file this module reads: after
every hostile upload the server must have recorded nothing dangerous, and
``/healthz`` must answer.  The server's stderr carries one JSON line per
refusal (the ``safepickle.web`` logger), checked against what was sent.

The load test runs 8 clients (half benign, half hostile) for
``SAFEPICKLE_WEB_LOAD_SECONDS`` seconds (default 20) and prints the benign
p50/p99 latency; it asserts outcomes and the server's peak RSS, never times.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import pickle
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

import safepickle
import safepickle.web

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PICKLE = "application/x-python-pickle"
HTTP_TIMEOUT = 120.0  # a hang guard, not a timing assertion
LOAD_SECONDS = float(os.environ.get("SAFEPICKLE_WEB_LOAD_SECONDS", "20"))
LOAD_CLIENTS = 8
BODY_TIMEOUT = 5.0
# A ceiling on the memory one opcode can make the VM build outside the
# allocations it charges to max_alloc_bytes (an empty set, 216 bytes, is the
# largest object one byte of opcode makes; plus its stack or memo slot).
BYTES_PER_OP = 256
ALLOCATOR_SLACK = 64 * 1024 * 1024


def rss_bound(warm_rss: int, health: dict) -> int:
    """The stated bound on the server's peak RSS under the load test: the
    warmed-up process, one body buffer per client, and for each load worker
    what the endpoint's limits let one load build."""
    per_load = health["max_alloc_bytes"] + health["max_ops"] * BYTES_PER_OP
    return (warm_rss + LOAD_CLIENTS * health["max_bytes"] + health["load_workers"] * per_load
            + ALLOCATOR_SLACK)

# ---------------------------------------------------------------- the hook --

# Written as sitecustomize.py into a directory put first on the server's
# PYTHONPATH, so it runs before uvicorn imports anything.  It keeps the events
# that safepickle.audit.classify calls dangerous, with a detail built without
# calling any method of the arguments (they may be objects a stream built),
# and the modules whose import was running (their own imports are not
# findings when the module is one the policy allows).
STARTUP_HOOK = textwrap.dedent(
    '''
    import json, os, sys, threading, types

    _path = os.environ.get("SAFEPICKLE_TEST_AUDIT_LOG")
    if _path:
        from safepickle.audit import classify

        _fd = os.open(_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _busy = threading.local()
        _MACHINERY = {"<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>"}

        def _describe(value):
            if value is None or type(value) in (bool, int, float, str, bytes):
                return repr(value)[:300]
            if type(value) is types.CodeType:
                return f"<code {value.co_name} in {value.co_filename}>"
            return "<" + type.__dict__["__qualname__"].__get__(type(value)) + ">"

        def _hook(event, args):
            if event == "socket.__new__" or classify(event, args) is None:
                return
            if getattr(_busy, "on", False):
                return
            _busy.on = True
            try:
                frame = sys._getframe(1)
                if event in ("compile", "marshal.loads") and frame.f_code.co_filename in _MACHINERY:
                    return  # the import system reading a module; its exec is recorded
                importing = []
                while frame is not None:
                    if frame.f_code.co_name == "<module>":
                        importing.append(str(frame.f_globals.get("__name__")))
                    frame = frame.f_back
                line = json.dumps({"event": event, "args": [_describe(a) for a in args],
                                   "importing": importing, "thread": threading.current_thread().name})
                os.write(_fd, line.encode() + b"\\n")
            except Exception:
                pass
            finally:
                _busy.on = False

        sys.addaudithook(_hook)
    '''
)

# Modules whose import is an expected consequence of what numpy-only allows.
SAFE_ROOTS = {"safepickle", "numpy"}
SAFE_DIRS = tuple(
    {str(d) + os.sep for d in (Path(np.__file__).parent, Path(np.__file__).resolve().parent, REPO / "safepickle")}
)


def dangerous(event: dict) -> bool:
    """Whether an audit event seen while handling uploads is a finding.

    In a load worker thread everything the hook keeps counts, except imports
    of the allowed packages.  Elsewhere (the event loop, FastAPI's thread
    pool) frame and function introspection (``object.__getattr__`` on
    ``f_code``/``__code__``: logging and FastAPI do it on every request) is
    the server's own business; everything else counts.
    """
    name, args = event["event"], event["args"]
    if any(m.split(".")[0] in SAFE_ROOTS for m in event["importing"]):
        return False  # raised while an allowed module's body was being imported
    if name == "import":
        return args[0].strip("'\"").split(".")[0] not in SAFE_ROOTS
    if name == "exec" and args and args[0].startswith("<code <module> in "):
        path = args[0][len("<code <module> in ") : -1]
        return not path.startswith(SAFE_DIRS)
    in_load = event["thread"].startswith("safepickle-web")
    return in_load or name != "object.__getattr__"


# -------------------------------------------------------------- the server --


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    audit_path: Path
    log_path: Path
    warm_mark: int = 0
    warm_rss: int = 0

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def audit_events(self) -> list[dict]:
        text = self.audit_path.read_text() if self.audit_path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def findings_since(self, mark: int) -> list[dict]:
        return [e for e in self.audit_events()[mark:] if dangerous(e)]

    def refusal_records(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                doc = json.loads(line)
                if doc.get("event") == "safepickle.upload_refused":
                    out.append(doc)
        return out

    def memory(self) -> dict[str, int]:
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
        return fields

    def alive(self) -> bool:
        return self.proc.poll() is None


def _start(tmp: Path) -> Server:
    hook_dir = tmp / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(STARTUP_HOOK)
    audit_path, log_path = tmp / "audit.jsonl", tmp / "server.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hook_dir), str(REPO)])
    env["SAFEPICKLE_TEST_AUDIT_LOG"] = str(audit_path)
    env.pop("UPLOAD_MAX_BYTES", None)
    env.pop("UPLOAD_MAX_SECONDS", None)
    env["UPLOAD_BODY_TIMEOUT"] = str(BODY_TIMEOUT)  # the default 60 s, shortened for the test
    for _attempt in range(3):
        port = free_port()
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the subprocess
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.upload_service.app:app",
             "--host", HOST, "--port", str(port), "--log-level", "warning"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        server = Server(proc, port, audit_path, log_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.alive():
            try:
                if httpx.get(server.base + "/healthz", timeout=2).status_code == 200:
                    return server
            except httpx.TransportError:
                time.sleep(0.2)
        proc.kill()
        proc.wait()
    raise RuntimeError("uvicorn did not start:\n" + log_path.read_text()[-4000:])


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    srv = _start(tmp_path_factory.mktemp("upload_service"))
    try:
        with httpx.Client(base_url=srv.base, timeout=HTTP_TIMEOUT) as client:
            # Warm-up: first requests import what serving needs; the audit
            # checks below look only at events after this point.
            for protocol in range(2, 6):
                r = post(client, pickle.dumps(benign_arrays()[0], protocol=protocol))
                assert r.status_code == 200, r.text
            assert post(client, b"not a pickle").status_code == 422
            assert post(client, b"", content_type="text/plain").status_code == 415
        srv.warm_mark = len(srv.audit_events())
        srv.warm_rss = srv.memory()["VmRSS"]
        yield srv
    finally:
        srv.proc.terminate()
        try:
            srv.proc.wait(10)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            srv.proc.wait()


@pytest.fixture(scope="module")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=HTTP_TIMEOUT) as c:
        yield c


@pytest.fixture(scope="module")
def oracle(client) -> safepickle.web.UploadLoader:
    """The endpoint's loader rebuilt here from the limits the server reports."""
    h = client.get("/healthz").json()
    return safepickle.web.UploadLoader(
        h["policy"], max_bytes=h["max_bytes"], max_seconds=h["max_seconds"],
        limits={"max_alloc_bytes": h["max_alloc_bytes"], "max_ops": h["max_ops"]},
    )


def post(client: httpx.Client, body, content_type: str = PICKLE, **kw) -> httpx.Response:
    return client.post("/arrays", content=body, headers={"Content-Type": content_type}, **kw)


# ------------------------------------------------------------- the uploads --


def benign_arrays() -> list:
    rng = np.random.default_rng(7)
    return [
        rng.standard_normal((3, 4)),
        {
            "int32": np.arange(1000, dtype=np.int32),
            "bool": rng.random(17) > 0.5,
            "complex": (rng.standard_normal(5) + 1j).astype(np.complex128),
            "fortran": np.asfortranarray(rng.standard_normal((6, 5))),
            "big_endian": np.arange(12, dtype=">i4").reshape(3, 4),
            "structured": np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
            "datetime": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
            "empty": np.zeros((0, 3), dtype=np.float32),
            "image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            "unicode": np.array(["a", "bc", "déf"]),
        },
        [np.float32(1.5), np.linspace(0, 1, 9), np.eye(3, dtype=np.int8)],
        np.int64(-42),
    ]


def expected(obj) -> list[dict]:
    if isinstance(obj, dict):
        items = list(obj.items())
    elif isinstance(obj, list | tuple):
        items = [(str(i), v) for i, v in enumerate(obj)]
    else:
        items = [(None, obj)]
    out = []
    for key, value in items:
        a = np.asarray(value)
        out.append({
            "key": key,
            "shape": list(a.shape),
            "dtype": str(a.dtype),
            "nbytes": int(a.nbytes),
            "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(),
        })
    return out


def colliding_ints(n: int) -> list[int]:
    # hash(k * (2**61 - 1)) == 0 for every k: all keys land in one bucket.
    return [k * (2**61 - 1) for k in range(n)]


def long1(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def hash_flood_dict(n: int, per_opcode: bool) -> bytes:
    keys = b"".join(long1(k) + b"N" + (b"s" if per_opcode else b"") for k in colliding_ints(n))
    return b"\x80\x02}" + (keys if per_opcode else b"(" + keys + b"u") + b"."


def hash_flood_set(n: int) -> bytes:
    return b"\x80\x04\x8f(" + b"".join(long1(k) for k in colliding_ints(n)) + b"\x90."


def deep_lists(depth: int) -> bytes:
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def deep_tuples(depth: int) -> bytes:
    return b"\x80\x02" + b"(" * depth + b"t" * depth + b"."


def deep_dicts(depth: int) -> bytes:
    # {0: {0: {...}}} built inside out: EMPTY_DICT, key, ... SETITEM.
    return b"\x80\x02" + b"}K\x00" * depth + b"}" + b"s" * depth + b"."


class _BadArray:
    """Reduces to numpy's own reconstructor with a state that claims far
    more elements than it carries (a length-amplification attempt)."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        state = (1, (1 << 40,), np.dtype("f8"), False, b"\x00" * 8)
        return (_reconstruct, (np.ndarray, (0,), b"b"), state)


def sglobal(module: str, name: str) -> bytes:
    m, n = module.encode(), name.encode()
    return b"\x8c" + bytes([len(m)]) + m + b"\x8c" + bytes([len(n)]) + n + b"\x93"


NOT_ARRAYS = "not-arrays"  # loads as pickle.loads would, but is no array: the app's 422


@dataclass(frozen=True)
class Hostile:
    """A hostile upload and the answer it must get from the numpy-only
    endpoint: ``error`` (a SafePickleError class name), ``NOT_ARRAYS``, or
    None when only "413/422 with a problem document" is fixed (corpus cases
    written for another policy, limits or load arguments)."""

    name: str
    data: bytes
    error: str | None
    limit: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What the endpoint's own loader says about a body, in this process."""

    error: str | None  # None: it loads
    limit: str | None = None
    rule: str | None = None
    where: tuple | None = None  # (offset, opcode), unless time decided


def verdict(loader: safepickle.web.UploadLoader, data: bytes) -> Verdict:
    try:
        loader.loads(data)
    except safepickle.SafePickleError as exc:
        limit = getattr(exc, "limit", None)
        where = None if limit == "max_seconds" else (exc.offset, exc.opcode)
        return Verdict(type(exc).__name__, limit, exc.rule, where)
    return Verdict(None)


def own_hostile() -> list[Hostile]:
    array = pickle.dumps(np.arange(1000.0), protocol=5)
    H, FG, MP, LE = Hostile, "ForbiddenGlobal", "MalformedPickle", "LimitExceeded"
    return [
        H("reduce-os-system-p0", b"cos\nsystem\n(S'echo pwned > /tmp/pwned'\ntR.", FG),
        H("stack-global-builtins-eval", b"\x80\x04" + sglobal("builtins", "eval") + b"\x8c\x031+1\x85R.", FG),
        H("global-subprocess-popen", b"\x80\x02csubprocess\nPopen\n(X\x02\x00\x00\x00idtR.", FG),
        H("global-posix-system", b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R.", FG),
        H("global-unimported-antigravity", b"\x80\x02cantigravity\nfly\n.", FG),
        H("global-attribute-walk", b"\x80\x04" + sglobal("numpy", "os.system") + b".", FG),
        H("numpy-length-amplification", pickle.dumps(_BadArray(), protocol=2), LE, "max_alloc_bytes"),
        H("empty-body", b"", MP),
        H("garbage", b"\xff" * 64, MP),
        H("truncated-array", array[: len(array) // 2], MP),
        H("no-stop", array[:-1], MP),
        H("stop-on-empty-stack", b"\x80\x02.", MP),
        H("bad-memo-get", b"\x80\x02h\x05.", MP),
        H("memo-put-huge-index", b"\x80\x04K\x01r\xff\xff\xff\x7f.", LE, "max_memo"),
        H("binbytes8-claims-4-eib", b"\x80\x04\x8e" + (1 << 62).to_bytes(8, "little") + b"x" * 16, MP),
        H("mark-flood", b"\x80\x02" + b"(" * 1_000_000 + b"N.", LE, "max_depth"),
        H("deep-tuples", deep_tuples(200_000), LE, "max_depth"),
        # Nesting without MARKs is not what max_depth counts; the endpoint's
        # max_ops is what stops 200k levels.
        H("deep-lists", deep_lists(200_000), LE, "max_ops"),
        H("deep-dicts", deep_dicts(100_000), LE, "max_ops"),
        H("deep-lists-under-op-limit", deep_lists(50_000), NOT_ARRAYS),
        # 32 MiB of EMPTY_DICT would be 33 million dicts (2.6 GB): the
        # endpoint's max_ops stops it after 200k.
        H("empty-dict-bomb", b"\x80\x02(" + b"}" * (32 * 1024 * 1024 - 5) + b"l.", LE, "max_ops"),
        H("empty-set-bomb", b"\x80\x04(" + b"\x8f" * (8 * 1024 * 1024) + b"l.", LE, "max_ops"),
        H("hash-flood-dict-setitems", hash_flood_dict(60_000, per_opcode=False), LE, "max_seconds"),
        H("hash-flood-dict-setitem", hash_flood_dict(200_000, per_opcode=True), LE, "max_seconds"),
        H("hash-flood-set", hash_flood_set(60_000), LE, "max_seconds"),
    ]


def corpus_hostile() -> list[Hostile]:
    from tests.hostile_corpus import CASES

    # Written for other policies, limits and load() arguments: what this
    # endpoint must answer comes from the oracle (see test_hostile_upload).
    return [Hostile(f"corpus-{case.name}", bytes(case.data), None) for case in CASES]


# ----------------------------------------------------------- raw HTTP/1.1 --


def raw_exchange(
    port: int, head: bytes, body_parts=(), *, half_close: bool = False, timeout: float = HTTP_TIMEOUT
) -> tuple[int, dict[str, str], bytes, int] | None:
    """Send a hand-made request and read one response.

    Stops sending as soon as the server answers (as curl does), so an early
    413 is read instead of lost.  Returns (status, headers, body, bytes of
    body sent) or None when the server closed without answering.
    """
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.sendall(head)
        sent = 0
        for part in body_parts:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(part)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            body = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead):
            return None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body, sent
    finally:
        sock.close()


def request_head(length: int | str | None, *, extra: str = "") -> bytes:
    lines = ["POST /arrays HTTP/1.1", f"Host: {HOST}", f"Content-Type: {PICKLE}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


# ------------------------------------------------------------------ checks --


def check_problem(response_body: bytes, content_type: str, status: int, sent: bytes) -> dict:
    assert content_type.split(";")[0] == "application/problem+json"
    doc = json.loads(response_body)
    for member in ("type", "title", "status", "detail"):
        assert member in doc, doc
    assert doc["status"] == status
    text = response_body.decode()
    assert "Traceback" not in text and 'File "' not in text
    assert len(response_body) < 2048
    # No run of 16 upload bytes comes back, except the global it names.
    scrubbed = text.replace(doc.get("global", "\x00"), "")
    if 16 <= len(sent) <= 1 << 20:
        latin = sent.decode("latin-1")
        assert not any(scrubbed[i : i + 16] in latin for i in range(len(scrubbed) - 15))
    return doc


def check_after(server: Server, client: httpx.Client, mark: int) -> None:
    assert server.alive()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert server.findings_since(max(mark, server.warm_mark)) == []


# ------------------------------------------------------------------- tests --


def test_healthz(server, client):
    doc = client.get("/healthz").json()
    assert doc["status"] == "ok" and doc["policy"] == "numpy-only"
    assert doc["max_bytes"] == 32 * 1024 * 1024 and doc["max_seconds"] == 2.0
    assert doc["max_alloc_bytes"] == 4 * doc["max_bytes"] and doc["max_ops"] == 200_000
    assert doc["body_timeout"] == BODY_TIMEOUT


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("index", range(4))
def test_benign_upload(server, client, protocol, index):
    data = pickle.dumps(benign_arrays()[index], protocol=protocol)
    r = post(client, data)
    assert r.status_code == 200, r.text
    doc = r.json()
    # The oracle is pickle.loads of our own bytes (e.g. NumPy keeps a
    # non-native byte order only at protocol 5).
    assert doc["arrays"] == expected(pickle.loads(data))
    assert doc["count"] == len(doc["arrays"])


def test_benign_upload_chunked(server, client):
    big = np.random.default_rng(1).standard_normal((512, 512))
    data = pickle.dumps(big, protocol=5)
    parts = (data[i : i + 50_000] for i in range(0, len(data), 50_000))
    r = post(client, parts)  # a generator body goes out chunked, no Content-Length
    assert r.status_code == 200, r.text
    assert r.json()["arrays"] == expected(big)


def test_wrong_content_type_is_415(server, client):
    mark = len(server.audit_events())
    r = post(client, pickle.dumps(np.arange(3)), content_type="application/json")
    assert r.status_code == 415
    doc = check_problem(r.content, r.headers["content-type"], 415, b"")
    assert PICKLE in doc["accepted"]
    check_after(server, client, mark)


def test_not_arrays_is_422(server, client):
    r = post(client, pickle.dumps({"a": [1, 2, 3]}, protocol=4))
    assert r.status_code == 422
    assert check_problem(r.content, r.headers["content-type"], 422, b"")["title"] == "Not arrays"


HOSTILE = own_hostile() + corpus_hostile()


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_hostile_upload(server, client, oracle, case):
    mark = len(server.audit_events())
    records_before = len(server.refusal_records())
    r = post(client, case.data)
    assert r.status_code in (413, 422), (r.status_code, r.text[:500])
    doc = check_problem(r.content, r.headers["content-type"], r.status_code, case.data)
    check_after(server, client, mark)
    # The answer is exactly what the endpoint's loader says in this process.
    want = verdict(oracle, case.data)
    if want.error is None:
        assert doc["type"] == "urn:example:upload-service:not-arrays", doc
    else:
        assert doc["type"].startswith("urn:safepickle:problem:"), doc
        assert (doc["error"], doc.get("limit"), doc.get("rule")) == (want.error, want.limit, want.rule), doc
        if want.where is not None:
            assert (doc.get("offset"), doc.get("opcode")) == want.where, doc
    # And, for our own cases, what we decided the endpoint must answer.
    if case.error == NOT_ARRAYS:
        assert want.error is None
    elif case.error is not None:
        assert doc["error"] == case.error and doc.get("limit") == case.limit, doc
    if doc["type"].startswith("urn:safepickle:problem:"):
        # A refusal by safepickle: one structured log record, naming the body.
        new = server.refusal_records()[records_before:]
        assert len(new) == 1, new
        [rec] = new
        assert rec["status"] == r.status_code and rec["route"] == "/arrays"
        assert rec["client"].startswith(HOST + ":")
        assert rec["error"] == doc["error"] and rec.get("offset") == doc.get("offset")
        assert rec["body_bytes"] == len(case.data) and rec["body_complete"] is True
        assert rec["sha256"] == hashlib.sha256(case.data).hexdigest()


def test_hash_flood_does_not_stall_other_requests(server, client):
    data = hash_flood_dict(200_000, per_opcode=True)
    mark = len(server.audit_events())
    result: dict = {}

    def send():
        with httpx.Client(base_url=server.base, timeout=HTTP_TIMEOUT) as c:
            result["response"] = post(c, data)

    flood = threading.Thread(target=send)
    flood.start()
    answered_during_flood = 0
    while flood.is_alive():
        r = client.get("/healthz")
        assert r.status_code == 200
        if flood.is_alive():
            answered_during_flood += 1
    flood.join()
    r = result["response"]
    assert r.status_code == 422
    doc = check_problem(r.content, r.headers["content-type"], 422, data)
    assert doc["error"] == "LimitExceeded", doc
    assert answered_during_flood > 0
    check_after(server, client, mark)


def test_oversized_declared_length_refused_before_reading(server, client):
    mark = len(server.audit_events())
    limit = client.get("/healthz").json()["max_bytes"]
    head = request_head(limit + 1, extra="Expect: 100-continue\r\n")
    got = raw_exchange(server.port, head)  # sends no body: the answer comes first
    assert got is not None
    status, headers, response, _ = got
    assert status == 413
    doc = check_problem(response, headers["content-type"], 413, b"")
    assert (doc["limit"], doc["value"], doc["maximum"]) == ("max_input_bytes", limit + 1, limit)
    rec = server.refusal_records()[-1]
    assert rec["status"] == 413 and rec["body_bytes"] == 0 and rec["sha256"] is None
    check_after(server, client, mark)


def test_oversized_body_sent_anyway(server, client):
    mark = len(server.audit_events())
    limit = client.get("/healthz").json()["max_bytes"]
    parts = [b"\x00" * 65536] * (limit // 65536 + 8)
    got = raw_exchange(server.port, request_head(65536 * len(parts)), parts)
    if got is not None:  # the server may reset a connection it will not read
        status, headers, response, sent = got
        assert status == 413
        check_problem(response, headers["content-type"], 413, b"")
        assert sent < 65536 * len(parts)
    check_after(server, client, mark)


def test_oversized_chunked_body_refused_mid_stream(server, client):
    mark = len(server.audit_events())
    records_before = len(server.refusal_records())
    limit = client.get("/healthz").json()["max_bytes"]
    chunk = b"\x00" * 65536
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    parts = [framed] * (limit // 65536 + 32) + [b"0\r\n\r\n"]
    got = raw_exchange(server.port, request_head(None, extra="Transfer-Encoding: chunked\r\n"), parts)
    if got is not None:
        status, headers, response, _ = got
        assert status == 413
        doc = check_problem(response, headers["content-type"], 413, b"")
        assert doc["maximum"] == limit and doc["value"] > limit
    # Whether or not the answer reached us, the server refused and logged it
    # having buffered no more than the limit.
    [rec] = server.refusal_records()[records_before:]
    assert rec["status"] == 413 and rec["body_complete"] is False
    # The server hands over what it has read in pieces of up to a few 100 KiB.
    assert limit - (1 << 20) < rec["body_bytes"] <= limit
    check_after(server, client, mark)


def test_lying_content_length_larger_than_limit(server, client):
    mark = len(server.audit_events())
    got = raw_exchange(server.port, request_head(10**15), [b"\x80\x04K\x01."])
    assert got is not None
    status, headers, response, _ = got
    assert status == 413
    check_problem(response, headers["content-type"], 413, b"")
    check_after(server, client, mark)


def test_lying_content_length_smaller_than_body(server, client):
    mark = len(server.audit_events())
    data = pickle.dumps(np.arange(10_000.0), protocol=5)
    got = raw_exchange(server.port, request_head(40), [data])
    # The server frames the body by Content-Length: 40 bytes of an array
    # pickle are a truncated pickle; the rest is not a valid next request.
    assert got is not None
    status, headers, response, _ = got
    assert status == 422
    doc = check_problem(response, headers["content-type"], 422, data)
    assert doc["error"] == "MalformedPickle"
    check_after(server, client, mark)


def test_body_stops_mid_stream(server, client):
    mark = len(server.audit_events())
    records_before = len(server.refusal_records())
    data = pickle.dumps(np.arange(10_000.0), protocol=5)
    got = raw_exchange(server.port, request_head(len(data)), [data[:5000]], half_close=True)
    assert got is None or got[0] in (400, 422)
    check_after(server, client, mark)
    deadline = time.monotonic() + 30  # the disconnect is logged asynchronously
    while len(server.refusal_records()) == records_before and time.monotonic() < deadline:
        time.sleep(0.05)
    [rec] = server.refusal_records()[records_before:]
    assert rec["error"] == "IncompleteBody" and rec["body_complete"] is False
    assert rec["body_bytes"] == 5000
    assert rec["sha256"] == hashlib.sha256(data[:5000]).hexdigest()


def test_stalled_body_is_408_and_does_not_block_others(server, client):
    mark = len(server.audit_events())
    records_before = len(server.refusal_records())
    data = pickle.dumps(np.arange(10_000.0), protocol=5)
    result: dict = {}

    def stall():
        # Half the body, then nothing: the connection stays open.
        result["got"] = raw_exchange(server.port, request_head(len(data)), [data[:5000]])

    staller = threading.Thread(target=stall)
    staller.start()
    answered_during_stall = 0
    while staller.is_alive():
        r = post(client, pickle.dumps(np.arange(3), protocol=5))
        assert r.status_code == 200
        answered_during_stall += staller.is_alive()
    staller.join()
    assert answered_during_stall > 0
    status, headers, response, _ = result["got"]
    assert status == 408
    doc = check_problem(response, headers["content-type"], 408, data)
    assert (doc["error"], doc["received"], doc["timeout"]) == ("BodyTimeout", 5000, BODY_TIMEOUT)
    [rec] = server.refusal_records()[records_before:]
    assert rec["status"] == 408 and rec["body_bytes"] == 5000 and rec["body_complete"] is False
    check_after(server, client, mark)


# --------------------------------------------------------------- the load --


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(server: Server, seconds: float, benign_clients: int = 4, hostile_clients: int = 4) -> dict:
    rng = np.random.default_rng(11)
    benign = []
    for i, shape in enumerate([(8, 8), (128, 128), (64, 1024), (360, 360)]):
        obj = {"x": rng.standard_normal(shape), "y": rng.integers(0, 9, shape[0])}
        benign.append((pickle.dumps(obj, protocol=2 + i % 4), expected(obj)))
    hostile = [case.data for case in own_hostile()]
    stats = {"benign_ok": 0, "benign_bad": [], "hostile_refused": 0, "hostile_reset": 0,
             "hostile_accepted": [], "latency": []}
    stop = time.monotonic() + seconds

    async def benign_client(n: int) -> None:
        async with httpx.AsyncClient(base_url=server.base, timeout=HTTP_TIMEOUT) as c:
            i = n
            while time.monotonic() < stop:
                data, want = benign[i % len(benign)]
                i += 1
                t0 = time.perf_counter()
                r = await c.post("/arrays", content=data, headers={"Content-Type": PICKLE})
                stats["latency"].append(time.perf_counter() - t0)
                if r.status_code == 200 and r.json()["arrays"] == want:
                    stats["benign_ok"] += 1
                else:
                    stats["benign_bad"].append((r.status_code, r.text[:200]))

    async def hostile_client(n: int) -> None:
        i = n * 7
        while time.monotonic() < stop:
            data = hostile[i % len(hostile)]
            i += 1
            # A fresh connection each time: the server may close it after a refusal.
            async with httpx.AsyncClient(base_url=server.base, timeout=HTTP_TIMEOUT) as c:
                try:
                    r = await c.post("/arrays", content=data, headers={"Content-Type": PICKLE})
                except httpx.TransportError:
                    stats["hostile_reset"] += 1
                    continue
            if r.status_code in (408, 413, 422) and r.headers["content-type"].startswith(
                "application/problem+json"
            ):
                stats["hostile_refused"] += 1
            else:
                stats["hostile_accepted"].append((r.status_code, r.text[:200]))

    await asyncio.gather(
        *(benign_client(n) for n in range(benign_clients)), *(hostile_client(n) for n in range(hostile_clients))
    )
    return stats


def test_bounded_load_half_hostile(server, client):
    mark = len(server.audit_events())
    bound = rss_bound(server.warm_rss, client.get("/healthz").json())
    stats = asyncio.run(_load(server, LOAD_SECONDS, LOAD_CLIENTS // 2, LOAD_CLIENTS // 2))
    memory = server.memory()
    latency = stats["latency"]
    print(
        f"\nload {LOAD_SECONDS:.0f}s, 4 benign + 4 hostile clients: "
        f"benign ok={stats['benign_ok']} bad={len(stats['benign_bad'])} "
        f"p50={_percentile(latency, 0.50) * 1000:.1f}ms p99={_percentile(latency, 0.99) * 1000:.1f}ms; "
        f"hostile refused={stats['hostile_refused']} reset={stats['hostile_reset']} "
        f"accepted={len(stats['hostile_accepted'])}; "
        f"server VmHWM={memory['VmHWM'] / 2**20:.0f}MiB VmRSS={memory['VmRSS'] / 2**20:.0f}MiB "
        f"(bound {bound / 2**20:.0f}MiB, warm {server.warm_rss / 2**20:.0f}MiB)"
    )
    assert stats["benign_bad"] == []
    assert stats["benign_ok"] > 0 and stats["hostile_refused"] > 0
    assert stats["hostile_accepted"] == []
    assert memory["VmHWM"] < bound
    check_after(server, client, mark)
