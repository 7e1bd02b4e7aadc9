"""Load benchmark: safepickle.loads against pickle.loads and pure-Python unpicklers.

One run, interleaved (every round calls every loader once, in a rotating
order), medians of the rounds, ratios to ``pickle.loads`` (the C unpickler)
of the same run.  Two GC modes:

* ``gc on``: the cyclic GC enabled, as users run; ``safepickle.loads`` with
  its default ``pause_gc=True`` (and once more with ``pause_gc=False`` to
  show what the pause buys);
* ``gc off``: ``gc.disable()`` around every call of every loader: the cost of
  the VMs alone.

Loaders: ``pickle.loads``; ``safepickle.loads`` with the compiled VM; the same
with the interpreted VM (what ``SAFEPICKLE_PURE_PYTHON=1`` runs: the loop of
``safepickle/vm/engine.py`` swapped in for the duration of the call);
``pickle._loads`` (CPython's pure-Python unpickler); torch's weights-only
unpickler when torch is installed.

Then, each in a fresh subprocess: the peak memory a load adds (peak RSS
during the load minus the RSS before it, the data already read); and
the time per MB of records at a small and a large size.

Usage::

    python benchmarks/bench_loads.py            # full run (~200 MB NumPy, ~20 MB records)
    python benchmarks/bench_loads.py --quick    # a tenth of the sizes, fewer rounds
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import payloads as P  # noqa: E402

import safepickle  # noqa: E402
from safepickle.vm import _engine_select, engine, engine_kind  # noqa: E402

_load_module = sys.modules["safepickle.vm.load"]  # the module; ``safepickle.vm.load`` is the function

Loader = Callable[[P.Payload], Any]


# -- the loaders ------------------------------------------------------------------


@contextmanager
def interpreted_vm() -> Iterator[None]:
    """Run ``safepickle.loads`` on the interpreted loop of engine.py."""
    saved = _load_module.run
    _load_module.run = engine.run
    try:
        yield
    finally:
        _load_module.run = saved


def load_pickle(p: P.Payload) -> Any:
    return pickle.loads(p.data, buffers=p.buffers)


def load_safe(p: P.Payload) -> Any:
    return safepickle.loads(p.data, policy=p.policy, buffers=p.buffers)


def load_safe_nopause(p: P.Payload) -> Any:
    return safepickle.loads(p.data, policy=p.policy, buffers=p.buffers, pause_gc=False)


def load_safe_py(p: P.Payload) -> Any:
    with interpreted_vm():
        return safepickle.loads(p.data, policy=p.policy, buffers=p.buffers)


def load_pickle_py(p: P.Payload) -> Any:
    return pickle._loads(p.data, buffers=p.buffers)  # type: ignore[attr-defined]


def _torch_loader() -> Loader | None:
    try:
        from torch import _weights_only_unpickler as wo  # type: ignore[import-not-found]
    except Exception:
        return None

    def load_torch(p: P.Payload) -> Any:
        if p.buffers is not None:
            raise NotImplementedError("no out-of-band buffers")
        return wo.Unpickler(io.BytesIO(p.data)).load()

    return load_torch


def loaders(with_pure: bool = True) -> dict[str, Loader]:
    out: dict[str, Loader] = {
        "pickle.loads": load_pickle,
        f"safepickle ({engine_kind()})": load_safe,
    }
    if with_pure:
        out["safepickle (python)"] = load_safe_py
        out["pickle._loads (py)"] = load_pickle_py
    torch = _torch_loader()
    if torch is not None:
        out["torch weights_only"] = torch
    return out


SAFE = f"safepickle ({engine_kind()})"
NOPAUSE = "safepickle, pause_gc=False"


# -- timing -------------------------------------------------------------------------


CLOCK = time.perf_counter


def _time_once(fn: Loader, p: P.Payload, gc_off: bool) -> float:
    if gc_off:
        gc.disable()
    try:
        t0 = CLOCK()
        result = fn(p)
        # One GC-tracked allocation: a collection the load made due (with the
        # GC on) runs now and is charged to this loader, not to the next one.
        _ = []
        elapsed = CLOCK() - t0
    finally:
        if gc_off:
            gc.enable()
    del result
    return elapsed


def measure(p: P.Payload, fns: dict[str, Loader], rounds: int, slow_rounds: int, gc_off: bool) -> dict[str, Any]:
    """Median seconds per loader; loaders that raise are reported as refused."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    refused: dict[str, str] = {}
    names = list(fns)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if name in refused:
                continue
            slow = name in ("safepickle (python)", "pickle._loads (py)")
            if slow and r >= slow_rounds:
                continue
            try:
                times[name].append(_time_once(fns[name], p, gc_off))
            except Exception as e:
                refused[name] = f"{type(e).__name__}: {str(e)[:80]}"
        gc.collect()
    med = {name: statistics.median(v) for name, v in times.items() if v}
    return {"median": med, "refused": refused, "n": {k: len(v) for k, v in times.items()}}


def check_results(p: P.Payload) -> None:
    """The compiled and interpreted loads give what pickle.loads gives."""
    want = load_pickle(p)
    for fn in (load_safe, load_safe_py):
        got = fn(p)
        if isinstance(want, dict) and want and type(next(iter(want.values()))).__module__ == "numpy":
            import numpy as np

            assert got.keys() == want.keys()
            for k in want:
                assert type(got[k]) is type(want[k]) and got[k].dtype == want[k].dtype, k
                assert np.array_equal(got[k], want[k]), k
        else:
            assert got == want, f"{p.name}: result differs from pickle.loads"


# -- peak memory, in fresh processes -------------------------------------------------

MEMORY_LOADERS = {
    "pickle.loads": "load_pickle",
    SAFE: "load_safe",
    "safepickle (python)": "load_safe_py",
    "pickle._loads (py)": "load_pickle_py",
}


def _status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _child_memory(loader: str, folder: str, name: str) -> None:
    """Child process: read the payload, then report how far one load raised the
    peak RSS above the RSS before it.  Linux: VmHWM, reset just before the load
    (ru_maxrss would carry the parent's size over fork+exec); elsewhere:
    ru_maxrss."""
    import numpy  # noqa: F401  (imported before the baseline, for every loader alike)

    meta = json.loads((Path(folder) / f"{name}.json").read_text())
    data = (Path(folder) / f"{name}.pkl").read_bytes()
    buffers = None
    if meta["buffers"]:
        buffers = [bytearray((Path(folder) / f"{name}.{i}.bin").read_bytes()) for i in range(meta["buffers"])]
    p = P.Payload(name, data, policy=meta["policy"], buffers=buffers)
    fn = globals()[loader]
    fn(P.Payload("warm", pickle.dumps([1, "a", {"b": 2.0}], 5), policy=meta["policy"]))  # policy, imports
    gc.collect()
    if _reset_peak() and _status_kib("VmHWM") is not None:
        before = _status_kib("VmRSS") or 0
        result = fn(p)
        after = _status_kib("VmHWM") or 0
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = fn(p)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    print(json.dumps({"peak_kib": after - before}))


def measure_memory(pls: list[P.Payload], folder: str, with_pure: bool) -> dict[str, dict[str, float]]:
    for p in pls:
        (Path(folder) / f"{p.name}.pkl").write_bytes(p.data)
        for i, b in enumerate(p.buffers or []):
            (Path(folder) / f"{p.name}.{i}.bin").write_bytes(bytes(b))
        (Path(folder) / f"{p.name}.json").write_text(
            json.dumps({"policy": p.policy, "buffers": len(p.buffers or [])}))
    out: dict[str, dict[str, float]] = {}
    for p in pls:
        out[p.name] = {}
        for label, fn in MEMORY_LOADERS.items():
            if not with_pure and fn in ("load_safe_py", "load_pickle_py"):
                continue
            proc = subprocess.run(
                [sys.executable, __file__, "--child-memory", fn, folder, p.name],
                capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"},
            )
            if proc.returncode != 0:
                out[p.name][label] = float("nan")
                print(f"  memory {p.name} {label}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            out[p.name][label] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_kib"] / 1024
    return out


# -- per-MB at two sizes --------------------------------------------------------------


def per_mb(small: int, large: int, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per MB of records (GC on, as users call both) at two sizes."""
    out: dict[str, dict[str, float]] = {}
    fns = {"pickle.loads": load_pickle, SAFE: load_safe}
    for n in (small, large):
        p = P.Payload(f"records-{n}", pickle.dumps(P.records(n), protocol=5))
        med = measure(p, fns, rounds, rounds, gc_off=False)["median"]
        out[f"{p.mb:.0f} MB"] = {k: v / p.mb for k, v in med.items()}
        del p
        gc.collect()
    return out


# -- report ---------------------------------------------------------------------------


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def report_speed(results: dict[str, Any], names: list[str]) -> None:
    print()
    print("Median time per load and ratio to pickle.loads of the same run")
    header = f"{'payload':24} {'MB':>6} {'gc':>3}  " + "  ".join(f"{n:>24}" for n in names)
    print(header)
    print("-" * len(header))
    for (pname, mb, mode), res in results.items():
        base = res["median"].get("pickle.loads")
        cells = []
        for n in names:
            if n in res["refused"]:
                cells.append(f"{'refused':>24}")
            elif n in res["median"]:
                t = res["median"][n]
                cells.append(f"{t * 1e3:11.1f} ms {_fmt_ratio(t / base if base else None):>9}")
            else:
                cells.append(f"{'-':>24}")
        print(f"{pname:24} {mb:6.1f} {mode:>3}  " + "  ".join(cells))
    refusals = {(k[0], n): why for k, r in results.items() for n, why in r["refused"].items()}
    for (pname, n), why in sorted(refusals.items()):
        print(f"  refused: {n} on {pname}: {why}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the payload sizes, fewer rounds")
    ap.add_argument("--rounds", type=int, default=None, help="rounds for the fast loaders (default 7, quick 5)")
    ap.add_argument("--slow-rounds", type=int, default=3, help="rounds for the pure-Python loaders (default 3)")
    ap.add_argument("--no-pure", action="store_true", help="skip the pure-Python loaders")
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy payloads")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--no-per-mb", action="store_true", help="skip the per-MB scaling run")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter (default); cpu: time.process_time, less disturbed by other "
                         "processes on a busy machine")
    ap.add_argument("--child-memory", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_memory:
        _child_memory(*args.child_memory)
        return 0

    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    rounds = args.rounds or (5 if args.quick else 7)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.platform()}; clock: {args.clock}; load average {os.getloadavg()[0]:.1f}")
    print(f"safepickle {safepickle.__version__}, engine: {engine_kind()}"
          + (f" ({_engine_select.skipped_reason()})" if _engine_select.skipped_reason() else ""))
    if engine_kind() != "compiled":
        print("WARNING: the compiled VM is not in use; 'safepickle' below is the interpreted one")
    t_start = time.perf_counter()
    pls = P.make_payloads(quick=args.quick, with_numpy=not args.no_numpy)
    fns = loaders(with_pure=not args.no_pure)
    names = list(fns)
    results: dict[tuple[str, float, str], Any] = {}
    for p in pls:
        check_results(p)
        for mode in ("on", "off"):
            fns_mode = dict(fns)
            if mode == "on":
                fns_mode[NOPAUSE] = load_safe_nopause
            results[(p.name, p.mb, mode)] = measure(p, fns_mode, rounds, args.slow_rounds, gc_off=(mode == "off"))
        print(f"  measured {p.name} ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr)
    report_speed(results, [*names, NOPAUSE])

    mem = None
    if not args.no_memory:
        with tempfile.TemporaryDirectory() as folder:
            mem = measure_memory(pls, folder, with_pure=not args.no_pure)
        print()
        print("Peak memory added by one load (MiB, fresh process, peak RSS during the load - RSS before) "
              "and ratio to pickle.loads")
        for pname, row in mem.items():
            base = row.get("pickle.loads")
            cells = [f"{k}: {v:8.1f} ({_fmt_ratio(v / base if base else None)})" for k, v in row.items()]
            print(f"  {pname:22} " + "   ".join(cells))
    del pls
    gc.collect()

    scaling = None
    if not args.no_per_mb:
        small, large = (20_000, 200_000) if args.quick else (20_000, 2_000_000)
        scaling = per_mb(small, large, 3)
        print()
        print("Records, GC on: time per MB at two sizes")
        sizes = list(scaling)
        for name in scaling[sizes[0]]:
            a, b = scaling[sizes[0]][name], scaling[sizes[1]][name]
            print(f"  {name:22} {sizes[0]}: {a * 1e3:6.2f} ms/MB   {sizes[1]}: {b * 1e3:6.2f} ms/MB   "
                  f"ratio {b / a:.2f}")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "engine": engine_kind(),
            "speed": [{"payload": k[0], "mb": k[1], "gc": k[2], **v} for k, v in results.items()],
            "memory_mib": mem, "per_mb_seconds": scaling,
        }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
