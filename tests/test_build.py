"""The two builds of the VM: which one runs, and a wheel that carries the compiled one.

* ``SAFEPICKLE_PURE_PYTHON=1`` gives the interpreted engine;
* when CI built the extension it says so with ``SAFEPICKLE_EXPECT_COMPILED=1``
  and the compiled engine must be the one in use;
* a compiled module built from another version of the source is never run;
* the interpreted engine also runs where Cython is not installed;
* both builds give the same outcome (value, or error class, offset, opcode,
  rule and message) on real pickles, the hostile corpus and mutated streams;
* ``python -m build`` gives a wheel with the compiled modules, which installs
  into a fresh venv and loads with them (slow: skipped without a C compiler
  or Cython).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import types
import zipfile
from pathlib import Path

import pytest

import safepickle
from safepickle.scan import _scanner_select, containers, static
from safepickle.scan._scanner_select import scanner_kind
from safepickle.vm import _engine_select, engine, engine_kind

ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent("""
    import pickle, safepickle
    from safepickle.vm import _engine_select
    from safepickle.scan import _scanner_select
    data = pickle.dumps({"a": [1, 2.5, "x", b"y", (None, True)], "b": 2**70}, 5)
    assert safepickle.loads(data) == pickle.loads(data)
    assert not safepickle.scan(data).violations
    print(safepickle.vm.engine_kind(), type(_engine_select.run).__name__, safepickle.__file__,
          _scanner_select.scanner_kind())
""")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEPICKLE_")}
    env.update(extra)
    return env


def _probe(cwd: Path, python: str = sys.executable, **env: str) -> list[str]:
    proc = subprocess.run([python, "-c", PROBE], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_pure_python_env_gives_the_interpreted_engine():
    kind, run_type, _, walker = _probe(ROOT, SAFEPICKLE_PURE_PYTHON="1")
    assert kind == walker == "python"
    assert run_type == "function"  # engine.run as written in engine.py, not an extension function


def test_the_engine_in_use_is_the_expected_one():
    """CI sets SAFEPICKLE_EXPECT_COMPILED=1 after building the extension: then
    the compiled VM must be the one that runs (unless the run is the
    SAFEPICKLE_PURE_PYTHON=1 pass)."""
    if os.environ.get("SAFEPICKLE_PURE_PYTHON") == "1":
        assert engine_kind() == scanner_kind() == "python"
        assert _engine_select.run is engine.run
        assert _scanner_select.analyze is static.analyze and _scanner_select.scan_buffer is containers.scan_buffer
        return
    if os.environ.get("SAFEPICKLE_EXPECT_COMPILED") != "1":
        pytest.skip("SAFEPICKLE_EXPECT_COMPILED is not set: this run does not promise a compiled build "
                    f"(engine in use: {engine_kind()}, {_engine_select.skipped_reason()})")
    assert engine_kind() == "compiled", _engine_select.skipped_reason()
    assert _engine_select.skipped_reason() is None
    assert not isinstance(_engine_select.run, types.FunctionType)  # an extension function
    assert scanner_kind() == "compiled", _scanner_select.skipped_reason()
    assert not isinstance(_scanner_select.analyze, types.FunctionType)
    from safepickle.scan import _containers_c, _static_c, _values_c
    from safepickle.vm import _actions_c, _engine_c

    assert _containers_c.analyze is _static_c.analyze and _static_c.Made is _values_c.Made  # one build throughout
    for mod in (_engine_c, _actions_c, _static_c, _values_c, _containers_c):
        assert Path(mod.__file__).suffix in (".so", ".pyd"), mod.__file__
    data = pickle.dumps([{"k": i, "v": str(i)} for i in range(100)], 5)
    assert safepickle.loads(data) == pickle.loads(data)


def _copy_package(dest: Path) -> Path:
    """A copy of the safepickle sources (no build products) and of the built-in
    policies beside them, as in the repository, under ``dest``."""
    target = dest / "safepickle"
    shutil.copytree(ROOT / "safepickle", target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.c"))
    shutil.copytree(ROOT / "policies", dest / "policies")
    return target


_COMPILED = {"_engine_c": "vm/engine", "_actions_c": "vm/actions", "_static_c": "scan/static",
             "_values_c": "scan/values", "_containers_c": "scan/containers"}


@pytest.mark.parametrize("stale", [None, *_COMPILED])
def test_a_compiled_module_from_other_sources_is_never_run(tmp_path, stale):
    """Stand-ins for the compiled modules (plain Python, so the test needs no
    compiler) carrying the SHA-256 of their sources, or a wrong one: only
    modules compiled from the sources beside them are run, and a stale one
    takes its whole build (VM or scanner) back to the interpreted modules."""
    import hashlib

    package = _copy_package(tmp_path)
    for name, source in _COMPILED.items():
        path = package / f"{source}.py"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if stale == name:
            digest = hashlib.sha256(b"an older " + digest.encode()).hexdigest()
        path.with_name(f"{name}.py").write_text(path.read_text() + f'\n_COMPILED_FROM_SHA256 = "{digest}"\n')
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    kind, _, where, scanner = proc.stdout.split()
    assert Path(where).is_relative_to(tmp_path)
    assert kind == ("python" if stale in ("_engine_c", "_actions_c") else "compiled")
    assert scanner == ("python" if stale in ("_static_c", "_values_c", "_containers_c") else "compiled")
    if stale:
        assert "RuntimeWarning" in proc.stderr and f"safepickle/{_COMPILED[stale]}.py" in proc.stderr
    else:
        assert proc.stderr == ""


_NO_NETWORK = (
    "Temporary failure in name resolution",
    "Failed to establish a new connection",
    "Network is unreachable",
    "No matching distribution found",
    "Could not find a version that satisfies",
)


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


@pytest.mark.skipif(_compiler() is None, reason="no C compiler: the wheel would carry the interpreted VM only")
def test_wheel_carries_the_compiled_vm_and_loads_in_a_fresh_venv(tmp_path):
    """Slow (a minute or two): build a wheel from a copy of the sources with
    ``python -m build`` (isolated: setuptools and Cython come from PyPI, as for
    a user), install it into a fresh venv and load with it there.  Skipped
    when PyPI cannot be reached.  The venv sees this interpreter's
    site-packages for pydantic; the wheel itself is installed from the file."""
    pytest.importorskip("build", reason="the 'build' package is not installed")
    src = tmp_path / "src"
    src.mkdir()
    _copy_package(src)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    dist = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)],
        env=_env(SAFEPICKLE_REQUIRE_COMPILED="1"), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 and any(sign in proc.stdout + proc.stderr for sign in _NO_NETWORK):
        pytest.skip("no network: the isolated build could not fetch setuptools/Cython from PyPI")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = dist.glob("safepickle-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("vm/_engine_c", "vm/_actions_c", "scan/_static_c", "scan/_values_c", "scan/_containers_c"):
        assert any(n.startswith(f"safepickle/{module}.") and n.endswith((".so", ".pyd")) for n in names), names
    assert "safepickle/vm/engine.py" in names  # the interpreted build ships beside it

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    proc = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    work = tmp_path / "elsewhere"  # not the source tree: the installed copy must be the one imported
    work.mkdir()
    kind, run_type, where, walker = _probe(work, python)
    assert kind == walker == "compiled" and run_type != "function"
    assert "site-packages" in where and Path(where).is_relative_to(venv)
    kind, _, _, walker = _probe(work, python, SAFEPICKLE_PURE_PYTHON="1")
    assert kind == walker == "python"
    proc = subprocess.run([python, "-m", "safepickle", "--version"], cwd=work, env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {"engine: compiled", "scanner: compiled"} <= set(proc.stdout.splitlines())


def test_the_interpreted_engine_runs_without_cython(tmp_path):
    """Cython is a build requirement only: engine.py falls back to its shim."""
    code = textwrap.dedent("""
        import sys
        sys.modules["cython"] = None  # as if Cython were not installed
        import pickle, safepickle
        from safepickle.vm import engine, _cython_shim
        assert engine.cython is _cython_shim.cython
        data = pickle.dumps([{"a": 1.5, "b": "x" * 300, "c": (1, (2,), b"z"), "d": {1, 2}, "e": 2**40}] * 3, 5)
        assert safepickle.loads(data) == pickle.loads(data)
        print(safepickle.vm.engine_kind())
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(SAFEPICKLE_PURE_PYTHON="1"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["python"]


# -- the two builds agree ---------------------------------------------------------

def _compiled_run():
    try:
        from safepickle.vm import _engine_c
    except ImportError:
        if os.environ.get("SAFEPICKLE_EXPECT_COMPILED") == "1":
            raise
        pytest.skip("the compiled engine is not built here (python setup.py build_ext --inplace)")
    if _engine_select.skipped_reason() not in (None, f"{_engine_select.PURE_ENV}=1"):
        pytest.skip(f"the compiled engine is not usable: {_engine_select.skipped_reason()}")
    return _engine_c.run


def _outcome(run, data: bytes, policy, kwargs: dict):
    from safepickle.codec.decode import as_buffer
    from safepickle.policy import Policy
    from safepickle.policy.files import coerce_policy
    from safepickle.vm.actions import LoadContext

    pol = Policy.model_validate(policy) if isinstance(policy, dict) else coerce_policy(policy)
    ctx = LoadContext(pol.runtime(), **kwargs)
    try:
        value, end = run(as_buffer(data), 0, ctx)
    except safepickle.SafePickleError as e:
        return ("error", type(e).__name__, e.offset, e.opcode, e.rule, str(e))
    return ("ok", value, end)


def _same(a, b) -> bool:
    from tests.structural import same_structure

    if a[0] != b[0]:
        return False
    if a[0] == "ok":
        return a[2] == b[2] and same_structure(a[1], b[1])
    return a == b


def _real_streams():
    from tests.test_codec import SAMPLES
    from tests.test_vm import shared_and_recursive

    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        for value in [*SAMPLES, *shared_and_recursive()]:
            yield pickle.dumps(value, proto)


def test_both_builds_agree_on_real_pickles_and_their_mutations():
    compiled = _compiled_run()
    import random

    rnd = random.Random(6)
    streams = list(_real_streams())
    checked = 0
    for data in streams:
        variants = [data, data[: len(data) // 2]]
        for _ in range(8):  # a few single-byte mutations of every stream
            i = rnd.randrange(len(data))
            variants.append(data[:i] + bytes([rnd.randrange(256)]) + data[i + 1:])
        for v in variants:
            a, b = _outcome(engine.run, v, "stdlib", {}), _outcome(compiled, v, "stdlib", {})
            assert _same(a, b), (v, a, b)
            checked += 1
    assert checked > 1000


def test_both_builds_agree_on_the_hostile_corpus():
    compiled = _compiled_run()
    from tests.hostile_corpus import CASES

    ctx_keys = {"fix_imports", "encoding", "errors", "buffers", "persistent_load"}
    compared = 0
    for case in CASES:
        if case.copyreg_extension or case.limit == "max_seconds" or set(case.kwargs) - ctx_keys:
            continue  # process-wide registrations, or timing-dependent offsets
        a = _outcome(engine.run, case.data, case.policy, dict(case.kwargs))
        b = _outcome(compiled, case.data, case.policy, dict(case.kwargs))
        assert _same(a, b), (case.name, a, b)
        compared += 1
    assert compared > 100


def test_both_builds_agree_on_numpy_in_band_and_out_of_band():
    compiled = _compiled_run()
    np = pytest.importorskip("numpy")

    arrays = {"f": np.arange(1000, dtype=np.float64), "b": np.ones((7, 3), dtype=bool, order="F"),
              "s": np.array(["ab", "c"]), "o": np.array([1, "x", None], dtype=object)}
    for proto in (2, 3, 4, 5):
        data = pickle.dumps(arrays, proto)
        a, b = _outcome(engine.run, data, "numpy-only", {}), _outcome(compiled, data, "numpy-only", {})
        assert a[0] == b[0] == "ok", (a, b)
        for k in arrays:
            assert a[1][k].dtype == b[1][k].dtype and np.array_equal(a[1][k], b[1][k]), k
    buffers: list = []
    data = pickle.dumps(arrays["f"], 5, buffer_callback=buffers.append)
    a = _outcome(engine.run, data, "numpy-only", {"buffers": buffers})
    b = _outcome(compiled, data, "numpy-only", {"buffers": buffers})
    assert a[0] == b[0] == "ok" and np.array_equal(a[1], b[1])


def test_every_integer_limit_the_model_accepts_fits_the_compiled_vm():
    """The compiled VM holds the limits in 64-bit C integers: every integer
    limit must be bounded by the model, and a policy at those bounds must load
    the same in both builds (no OverflowError)."""
    compiled = _compiled_run()
    from annotated_types import Le

    from safepickle.policy import Limits

    top = {}
    for name, info in Limits.model_fields.items():
        if info.annotation is not int:
            continue
        bounds = [m.le for m in info.metadata if isinstance(m, Le)]
        assert bounds and bounds[0] <= 2**62, f"limit {name} is not bounded below 2**62"
        top[name] = bounds[0]
    assert top
    policy = {"name": "top", "extends": ["data-only"], "limits": top}
    for data in (pickle.dumps([{"a": (1, 2.5)}, "x" * 300, b"y"], 5), b"\x80\x05\x95\xff\xff\xff\xff\xff\xff\xff\x7f"):
        a, b = _outcome(engine.run, data, policy, {}), _outcome(compiled, data, policy, {})
        assert _same(a, b), (a, b)


# -- the two builds of the scanner's walk agree ---------------------------------------


def _compiled_analyze():
    try:
        from safepickle.scan import _static_c
    except ImportError:
        if os.environ.get("SAFEPICKLE_EXPECT_COMPILED") == "1":
            raise
        pytest.skip("the compiled scanner is not built here (python setup.py build_ext --inplace)")
    if _scanner_select.skipped_reason() not in (None, f"{_engine_select.PURE_ENV}=1"):
        pytest.skip(f"the compiled scanner is not usable: {_scanner_select.skipped_reason()}")
    return _static_c


def _scan_outcome(build, data: bytes, judge) -> dict:
    a = build.analyze(data, 0, build.Judge(judge.runtime))
    return {"report": a.report.to_dict(), "result": a.result, "blobs": a.blobs, "joblib": a.joblib_wrappers,
            "nested": [n.report.to_dict() for n in a.nested]}


def test_both_builds_of_the_scanner_agree():
    """Real pickles, their truncations and mutations, and the hostile corpus:
    the same report from both builds, to the last offset and message."""
    compiled = _compiled_analyze()
    import random

    from safepickle.scan import _containers_c as compiled_containers
    from safepickle.scan import containers as written_containers
    from safepickle.scan import judge_for
    from tests.hostile_corpus import CASES

    judges = {name: judge_for(name) for name in ("data-only", "stdlib", "numpy-only")}
    rnd = random.Random(7)
    checked = 0
    for data in _real_streams():
        variants = [data, data[: len(data) // 2]]
        for _ in range(6):
            i = rnd.randrange(len(data))
            variants.append(data[:i] + bytes([rnd.randrange(256)]) + data[i + 1:])
        for v in variants:
            judge = judges["stdlib"]
            assert _scan_outcome(static, v, judge) == _scan_outcome(compiled, v, judge), v
            checked += 1
    for case in CASES:
        if not isinstance(case.policy, str):
            continue
        judge = judges[case.policy] if case.policy in judges else judge_for(case.policy)
        assert _scan_outcome(static, case.data, judge) == _scan_outcome(compiled, case.data, judge), case.name
        written = written_containers.scan_buffer(case.data, static.Judge(judge.runtime), source="x")
        built = compiled_containers.scan_buffer(case.data, compiled.Judge(judge.runtime), source="x")
        assert written.to_dict() == built.to_dict(), case.name
        checked += 1
    assert checked > 1000
