"""Throughput of the upload service: safepickle endpoint vs a bare pickle.loads one.

Starts one uvicorn process serving the example app (``POST /arrays``, the
``numpy-only`` policy through ``safepickle.web.fastapi.PickleUpload``) plus one
extra route, ``POST /bare/arrays``, that is the same code path with
``pickle.loads`` in place of safepickle: the body is read by the same async
request, loaded in a worker thread of the same size of pool, and answered by
the same ``describe`` in the same sync endpoint.  So the ratio is the price of
the safe path (bounded body reading, the restricted VM and its policy checks),
not of a different server shape.  Never expose a route like the bare one.

A small asyncio HTTP/1.1 client (keep-alive, one connection per client) posts
benign NumPy pickles to each endpoint in alternating rounds of the same run,
and reports requests/s and the p50/p99 latency of each.

    python3 benchmarks/bench_web.py [--seconds 5] [--concurrency 8] [--rounds 2] [--json out.json]
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated
# dependency of the route defined inside build_app() as an object.
import argparse
import asyncio
import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


# ------------------------------------------------------- the server side --


def build_app() -> Any:
    """The example app plus the bare route (imported by uvicorn in the server)."""
    from concurrent.futures import ThreadPoolExecutor
    from typing import Annotated

    from fastapi import Depends, Request
    from fastapi.responses import JSONResponse, Response

    from examples.upload_service import app as service
    from safepickle.web import upload as web_upload

    bare_pool = ThreadPoolExecutor(web_upload.DEFAULT_WORKERS, thread_name_prefix="bare")

    async def bare_upload(request: Request) -> Any:
        body = await request.body()
        return await asyncio.get_running_loop().run_in_executor(bare_pool, pickle.loads, body)

    @service.app.post("/bare/arrays")
    def bare_arrays(obj: Annotated[Any, Depends(bare_upload)]) -> Response:
        return JSONResponse(service.describe(obj))

    return service.app


def __getattr__(name: str) -> Any:
    # uvicorn bench_web:bench_app builds the app only inside the server.
    if name == "bench_app":
        app = build_app()
        globals()["bench_app"] = app
        return app
    raise AttributeError(name)


# ------------------------------------------------------- the client side --


def payloads() -> dict[str, bytes]:
    import numpy as np

    rng = np.random.default_rng(0)
    return {
        "small 16x16 f8 (p4)": pickle.dumps(rng.standard_normal((16, 16)), protocol=4),
        "dict of 64 small arrays (p4)": pickle.dumps(
            {f"a{i}": rng.standard_normal(32) for i in range(64)}, protocol=4
        ),
        "medium 256x256 f8 (p5)": pickle.dumps(rng.standard_normal((256, 256)), protocol=5),
        "large 1024x1024 f8 (p5)": pickle.dumps(rng.standard_normal((1024, 1024)), protocol=5),
    }


def request_bytes(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-python-pickle\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def run_round(port: int, request: bytes, seconds: float, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                writer.write(request)
                await writer.drain()
                status, _ = await read_response(reader)
                latencies.append(time.perf_counter() - t0)
                failures += status != 200
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "failures": failures, "elapsed": elapsed}


async def check_answer(port: int, path: str, body: bytes) -> None:
    """Both endpoints must give the right answer before they are timed."""
    import numpy as np

    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(request_bytes(path, body))
    await writer.drain()
    status, answer = await read_response(reader)
    writer.close()
    if status != 200:
        raise SystemExit(f"{path}: HTTP {status}: {answer[:300]!r}")
    obj = pickle.loads(body)  # our own payload, built above
    arrays = obj.values() if isinstance(obj, dict) else [obj]
    want = [hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() for a in arrays]
    got = [a["sha256"] for a in json.loads(answer)["arrays"]]
    if got != want:
        raise SystemExit(f"{path}: wrong checksums")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server() -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "benchmarks")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench_web:bench_app", "--host", HOST, "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=REPO, env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("server exited") from None
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent keep-alive clients")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per endpoint and payload")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    bodies = payloads()
    proc, port = start_server()
    results: list[dict[str, Any]] = []
    try:
        for name, body in bodies.items():
            for path in ("/arrays", "/bare/arrays"):
                asyncio.run(check_answer(port, path, body))
            runs: dict[str, list[dict[str, Any]]] = {"/arrays": [], "/bare/arrays": []}
            for _ in range(args.rounds):  # alternate, so drift hits both alike
                for path in runs:
                    request = request_bytes(path, body)
                    runs[path].append(asyncio.run(run_round(port, request, args.seconds, args.concurrency)))
            row: dict[str, Any] = {"payload": name, "bytes": len(body)}
            for path, label in (("/arrays", "safe"), ("/bare/arrays", "bare")):
                lat = [x for r in runs[path] for x in r["latencies"]]
                elapsed = sum(r["elapsed"] for r in runs[path])
                row[label] = {
                    "requests": len(lat),
                    "failures": sum(r["failures"] for r in runs[path]),
                    "rps": len(lat) / elapsed,
                    "p50_ms": percentile(lat, 0.50) * 1000,
                    "p99_ms": percentile(lat, 0.99) * 1000,
                }
            row["throughput_ratio"] = row["safe"]["rps"] / row["bare"]["rps"]
            results.append(row)
        rss = peak_rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)

    print(f"\nconcurrency {args.concurrency}, {args.rounds} x {args.seconds:.0f}s rounds per endpoint, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(f"{'payload':30} {'bytes':>9} | {'safe rps':>9} {'p50ms':>7} {'p99ms':>7} | "
          f"{'bare rps':>9} {'p50ms':>7} {'p99ms':>7} | {'safe/bare':>9}")
    for row in results:
        s, b = row["safe"], row["bare"]
        print(f"{row['payload']:30} {row['bytes']:>9} | {s['rps']:>9.1f} {s['p50_ms']:>7.1f} {s['p99_ms']:>7.1f} | "
              f"{b['rps']:>9.1f} {b['p50_ms']:>7.1f} {b['p99_ms']:>7.1f} | {row['throughput_ratio']:>9.2f}")
        if s["failures"] or b["failures"]:
            print(f"  failures: safe {s['failures']}, bare {b['failures']}")
    print(f"server peak RSS {rss / 2**20:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "server_peak_rss": rss}, indent=2))
    return 1 if any(r["safe"]["failures"] or r["bare"]["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
