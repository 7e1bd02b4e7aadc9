"""Scan throughput and verdicts: safepickle.scan against picklescan and fickling, in one run.

Three measurements, each tool in the same process on the same files:

1. **Many files**: ``--files`` small pickles (mixed protocols, plain data,
   stdlib and NumPy values, some hostile) written to a temporary folder,
   each tool scanning them one path at a time; time per file.
2. **One large pickle**: a list of many small records (many opcodes) and a
   large NumPy array (few opcodes, a big payload); seconds and MB/s.

Both are the best of ``--rounds`` rounds, the tools taking turns within each
round (so a busy machine slows them alike), and each is given twice: wall
time (what a user waits) and CPU time of this process (``time.process_time``,
steadier when other work shares the machine).  ``speedup`` is the other
tool's time over safepickle's: the issue's target is 3 or more against
picklescan.
3. **Verdicts on the hostile corpus** (``tests/hostile_corpus.py``): for each
   stream, safepickle's verdict under the case's policy, picklescan's and
   fickling's, side by side, and whether safepickle missed anything the
   policy refuses statically (the VM's refusal of a global, extension code
   or persistent id that ``Runtime.check`` also refuses).

picklescan and fickling are optional (``pip install picklescan fickling``, or
the ``bench`` extra): a tool that is not installed is skipped and says so.

    python3 benchmarks/bench_scan.py [--files 1000] [--rounds 3] [--records 1000000] [--array-mb 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import datetime
import decimal
import gc
import io
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import safepickle  # noqa: E402
from safepickle.errors import ForbiddenGlobal, SafePickleError  # noqa: E402
from safepickle.policy import Policy, coerce_policy  # noqa: E402
from safepickle.scan import judge_for, scan  # noqa: E402

EVIL = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."
# Refusals a load makes from the names in the stream alone (no run-time object needed).
_STATIC_RULES = ("not-allowed", "deny", "bad-name", "dotted-needs-proto-4", "extension", "persistent-id")


# -- the tools, each as path -> verdict ("refuse" / "pass" / "error") -----------------


def _tools() -> dict[str, Any]:
    tools: dict[str, Any] = {}
    try:
        import picklescan.scanner as ps

        def picklescan_path(path: str) -> str:
            try:
                r = ps.scan_file_path(path)
            except Exception:
                return "error"
            if r.scan_err:
                return "error"
            return "refuse" if r.issues_count or r.infected_files else "pass"

        def picklescan_bytes(data: bytes, name: str) -> str:
            try:
                r = ps.scan_pickle_bytes(io.BytesIO(data), name)
            except Exception:
                return "error"
            if r.scan_err:
                return "error"
            return "refuse" if r.issues_count or r.infected_files else "pass"

        tools["picklescan"] = (picklescan_path, picklescan_bytes)
    except ImportError as e:
        print(f"picklescan not installed ({e}): skipped", file=sys.stderr)
    try:
        import fickling

        def fickling_path(path: str) -> str:
            try:
                return "pass" if fickling.is_likely_safe(path) else "refuse"
            except Exception:
                return "error"

        def fickling_bytes(data: bytes, name: str) -> str:
            with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
                f.write(data)
            try:
                return fickling_path(f.name)
            finally:
                os.unlink(f.name)

        tools["fickling"] = (fickling_path, fickling_bytes)
    except ImportError as e:
        print(f"fickling not installed ({e}): skipped", file=sys.stderr)
    return tools


def _safepickle_tool(policy: Any) -> tuple[Any, Any]:
    judge = judge_for(policy)

    def by_path(path: str) -> str:
        return "pass" if scan(path, judge=judge).ok else "refuse"

    def by_bytes(data: bytes, name: str) -> str:
        return "pass" if scan(data, judge=judge).ok else "refuse"

    return by_path, by_bytes


# -- inputs ------------------------------------------------------------------------------


def _sample_values() -> list[Any]:
    values: list[Any] = [
        {"id": 7, "name": "x" * 20, "tags": ["a", "b"], "score": 0.5},
        [list(range(50)), {"k": (1, 2, 3)}, b"\x00" * 64],
        collections.OrderedDict(a=1, b=[1.5, None]),
        {"when": datetime.datetime(2024, 1, 2, 3, 4, 5), "amount": decimal.Decimal("12.50")},
    ]
    try:
        import numpy as np

        values += [np.arange(100, dtype=np.float64), {"w": np.ones((8, 8), dtype=np.float32), "b": np.int64(3)}]
    except ImportError:
        pass
    return values


def write_many(folder: Path, n: int) -> list[str]:
    values = _sample_values()
    paths = []
    for i in range(n):
        p = folder / f"f{i:05}.pkl"
        if i % 10 == 9:
            p.write_bytes(EVIL)
        else:
            p.write_bytes(pickle.dumps(values[i % len(values)], protocol=2 + i % 4))
        paths.append(str(p))
    return paths


def _time(fn: Any, items: list[Any]) -> tuple[float, float, list[str]]:
    """Wall and CPU seconds of ``fn`` over ``items``, and its results."""
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return time.perf_counter() - t0, time.process_time() - c0, out


def _best(all_tools: dict[str, Any], items: list[Any], rounds: int) -> dict[str, tuple[float, float, list[str]]]:
    """Per tool: the best wall time, the best CPU time, and the verdicts, over
    ``rounds`` rounds in which the tools take turns."""
    best: dict[str, tuple[float, float, list[str]]] = {}
    for _round in range(rounds):
        for name, (by_path, _b) in all_tools.items():
            by_path(items[0])  # warm up imports and caches
            wall, cpu, verdicts = _time(by_path, items)
            if name in best:
                wall, cpu = min(wall, best[name][0]), min(cpu, best[name][1])
            best[name] = (wall, cpu, verdicts)
    return best


def _speedups(rows: dict[str, Any], key_wall: str, key_cpu: str) -> None:
    """Add to each row how many times safepickle's time its time is."""
    base = rows["safepickle"]
    for r in rows.values():
        r["speedup_wall"] = round(r[key_wall] / base[key_wall], 2) if base[key_wall] else None
        r["speedup_cpu"] = round(r[key_cpu] / base[key_cpu], 2) if base[key_cpu] else None


# -- the measurements ---------------------------------------------------------------------------


def bench_many(tools: dict[str, Any], n: int, policy: str, rounds: int = 3) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        paths = write_many(Path(d), n)
        all_tools = {"safepickle": _safepickle_tool(policy), **tools}
        for name, (wall, cpu, verdicts) in _best(all_tools, paths, rounds).items():
            results[name] = {"files": n, "seconds": round(wall, 4), "ms_per_file": round(1000 * wall / n, 4),
                             "cpu_ms_per_file": round(1000 * cpu / n, 4),
                             "refused": sum(v == "refuse" for v in verdicts),
                             "errors": sum(v == "error" for v in verdicts)}
    _speedups(results, "ms_per_file", "cpu_ms_per_file")
    return results


def bench_large(tools: dict[str, Any], records: int, array_mb: int, rounds: int = 3) -> dict[str, Any]:
    cases: dict[str, bytes] = {
        f"{records} records": pickle.dumps([(i, f"name{i}", i * 0.5) for i in range(records)], protocol=4),
    }
    try:
        import numpy as np

        cases[f"{array_mb} MB array"] = pickle.dumps(np.zeros(array_mb << 17, dtype=np.float64), protocol=4)
    except ImportError:
        pass
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        for label, data in cases.items():
            path = Path(d) / "large.pkl"
            path.write_bytes(data)
            row: dict[str, Any] = {"bytes": len(data)}
            all_tools = {"safepickle": _safepickle_tool("numpy-only"), **tools}
            # fickling takes tens of seconds on the records: once is enough to rank it
            slow = {k: v for k, v in all_tools.items() if k == "fickling"}
            fast = {k: v for k, v in all_tools.items() if k != "fickling"}
            timed = {**_best(fast, [str(path)], rounds), **_best(slow, [str(path)], 1)}
            for name in all_tools:
                wall, cpu, (verdict,) = timed[name]
                row[name] = {"seconds": round(wall, 4), "cpu_seconds": round(cpu, 4),
                             "MB_per_s": round(len(data) / 1e6 / wall, 1), "verdict": verdict}
            _speedups({k: v for k, v in row.items() if k != "bytes"}, "seconds", "cpu_seconds")
            results[label] = row
    return results


def bench_hostile(tools: dict[str, Any]) -> dict[str, Any]:
    from tests.hostile_corpus import CASES

    rows = []
    missed = []
    static_refusals = 0
    for case in CASES:
        policy = case.policy if isinstance(case.policy, str) else Policy.model_validate(case.policy)
        report = scan(case.data, policy=policy)
        ours = "pass" if report.ok else "refuse"
        try:
            safepickle.loads(case.data, policy=policy, **case.kwargs)
            err: BaseException | None = None
        except SafePickleError as e:
            err = e
        static = False
        rule = err.rule or "" if isinstance(err, ForbiddenGlobal) else ""
        if rule in _STATIC_RULES or rule.startswith("denylist:"):
            if err.module in ("<extension>", "<persistent-id>"):
                static = True
            else:
                static = not coerce_policy(policy).runtime().check(err.module, err.name, 4, True).allowed
        if static:
            static_refusals += 1
            if report.ok:
                missed.append(case.name)
        row = {"case": case.name, "load": type(err).__name__ if err else "loaded", "safepickle": ours}
        for name, (_p, by_bytes) in tools.items():
            row[name] = by_bytes(case.data, case.name)
        rows.append(row)
    summary: dict[str, Any] = {"cases": len(rows), "static_refusals": static_refusals,
                               "safepickle_missed_static_refusals": missed}
    for name in ["safepickle", *tools]:
        summary[name] = dict(collections.Counter(r[name] for r in rows))
        summary[name + "_refuses_when_load_refuses"] = sum(1 for r in rows if r["load"] != "loaded"
                                                           and r[name] == "refuse")
    return {"summary": summary, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--array-mb", type=int, default=64)
    ap.add_argument("--policy", default="numpy-only")
    ap.add_argument("--json", default=None, help="write all figures to this file")
    ap.add_argument("--rounds", type=int, default=3, help="best of this many rounds per tool")
    ap.add_argument("--no-hostile", action="store_true")
    args = ap.parse_args(argv)

    tools = _tools()
    out: dict[str, Any] = {"python": sys.version.split()[0], "tools": ["safepickle", *tools]}
    print(f"== many files ({args.files}, policy {args.policy}; best of {args.rounds} rounds; "
          "speedup = its time / safepickle's) ==")
    out["many_files"] = many = bench_many(tools, args.files, args.policy, args.rounds)
    for name, r in many.items():
        print(f"  {name:<11} {r['ms_per_file']:>8.4f} ms/file wall  {r['cpu_ms_per_file']:>8.4f} ms/file CPU  "
              f"speedup {r['speedup_wall']:>6}x wall {r['speedup_cpu']:>6}x CPU  "
              f"refused {r['refused']}, errors {r['errors']}")
    print(f"== one large pickle (best of {args.rounds} rounds; fickling once) ==")
    out["large"] = large = bench_large(tools, args.records, args.array_mb, args.rounds)
    for label, row in large.items():
        print(f"  {label} ({row['bytes'] / 1e6:.1f} MB)")
        for name in out["tools"]:
            r = row[name]
            print(f"    {name:<11} {r['seconds']:>8.4f} s wall {r['cpu_seconds']:>8.4f} s CPU  "
                  f"{r['MB_per_s']:>8.1f} MB/s  speedup {r['speedup_wall']:>7}x wall {r['speedup_cpu']:>7}x CPU  "
                  f"{r['verdict']}")
    if not args.no_hostile:
        print("== verdicts on the hostile corpus ==")
        out["hostile"] = hostile = bench_hostile(tools)
        s = hostile["summary"]
        print(f"  {s['cases']} streams; the VM refuses {s['static_refusals']} of them statically "
              f"(global, extension code or persistent id the policy refuses)")
        print(f"  safepickle missed: {s['safepickle_missed_static_refusals'] or 'none'}")
        for name in out["tools"]:
            print(f"  {name:<11} verdicts {s[name]}; refuses {s[name + '_refuses_when_load_refuses']} of the "
                  f"{sum(1 for r in hostile['rows'] if r['load'] != 'loaded')} streams the VM refuses")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
