"""``python -m fuzz`` / ``safepickle fuzz``: options, exit codes, artifacts."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from safepickle.fuzzing.case import FuzzCase
from safepickle.fuzzing.cli import main
from safepickle.fuzzing.findings import Finding, write_artifacts
from safepickle.fuzzing.policyspec import FUZZ_CAPS, spec_for

ROOT = Path(__file__).resolve().parent.parent
PLANT = "tests.test_fuzz_teeth:plant_internal_index_error"


@pytest.fixture
def small_corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for proto in range(6):
        (folder / f"list-p{proto}.pickle").write_bytes(pickle.dumps([1, 2, 3], proto))
    return folder


@pytest.mark.parametrize("argv", [
    ["--policy", "no-such-policy", "--examples", "1"],
    ["--seconds", "0"],
    ["--examples", "-3"],
    ["--examples", "3", "--seconds", "3"],
    ["--corpus", "/no/such/folder", "--examples", "1"],
    ["--generator", "nope"],
    ["--bogus"],
    ["replay", "/no/such/file.json"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "replay" in capsys.readouterr().out
    assert main(["run", "--help"]) == 0
    assert "--seconds" in capsys.readouterr().out


def test_clean_run_exits_0(tmp_path, small_corpus, capsys):
    code = main(["--examples", "40", "--seed", "3", "--policy", "data-only", "--generator", "bytes",
                 "--corpus", str(small_corpus), "--artifacts", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "[data-only/bytes] cases=40" in err and "execs/s=" in err and "findings=0" in err
    assert "exit 0 (no finding)" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_finding_exits_1_and_writes_a_reproducer(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--examples", "150", "--seed", "11", "--policy", "data-only", "--generator", "grammar",
                 "--artifacts", str(out), "--setup", PLANT, "--minimize-seconds", "5"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "FINDING" in err and "exit 1 (findings)" in err
    reports = sorted(out.glob("exceptions-internal-error-*.json"))
    assert reports
    report = json.loads(reports[0].read_text())
    assert report["oracle"] == "exceptions" and report["finding"]["offset"] is not None
    assert (out / report["reproducer"]).exists()
    # replay (in a child: --setup plants the defect for good in its process)
    proc = subprocess.run([sys.executable, "-m", "fuzz", "replay", str(reports[0]), "--setup", PLANT], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FINDING [exceptions/internal-error]" in proc.stdout
    assert main(["replay", str(reports[0])]) == 0  # and the real VM passes
    capsys.readouterr()


def test_replay_of_a_fixed_reproducer_exits_0(tmp_path, capsys):
    case = FuzzCase(data=pickle.dumps({"a": (1, 2)}, 4))
    path = write_artifacts(tmp_path, Finding("exceptions", "internal-error", "was a bug"), case,
                           spec_for("data-only", FUZZ_CAPS))
    assert main(["replay", str(path)]) == 0
    out = capsys.readouterr().out
    assert "no finding" in out and "recorded: [exceptions/internal-error]" in out
    assert main(["replay", str(tmp_path / json.loads(path.read_text())["reproducer"])]) == 0


def test_same_seed_same_cases(tmp_path, small_corpus, capsys):
    def once() -> str:
        main(["--examples", "25", "--seed", "9", "--policy", "data-only", "--generator", "bytes", "--corpus",
              str(small_corpus), "--artifacts", str(tmp_path / "o"), "--in-process", "--quiet"])
        return capsys.readouterr().err

    from safepickle.fuzzing.mutate import load_corpus
    from safepickle.fuzzing.policyspec import prepare
    from safepickle.fuzzing.sources import BytesSource

    put = prepare("data-only")
    a = [BytesSource(put, 9, load_corpus([small_corpus])).case(i) for i in range(25)]
    b = [BytesSource(put, 9, load_corpus([small_corpus])).case(i) for i in range(25)]
    assert a == b
    assert "data-only" in once()


def test_corpus_command(tmp_path, capsys):
    assert main(["corpus", "--out", str(tmp_path / "c"), "--no-hostile"]) == 0
    files = list((tmp_path / "c").glob("*.pickle"))
    assert files and all(p.name.startswith("sample-") for p in files)


def test_python_dash_m_fuzz_from_the_repository_root(tmp_path, small_corpus):
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz", "--examples", "10", "--policy", "data-only", "--generator", "bytes",
         "--corpus", str(small_corpus), "--artifacts", str(tmp_path / "a"), "--seed", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "== safepickle fuzz summary (seed 3) ==" in proc.stderr


def test_atheris_generator(tmp_path, small_corpus, capsys):
    pytest.importorskip("atheris")
    code = main(["--generator", "atheris", "--examples", "300", "--policy", "data-only", "--corpus",
                 str(small_corpus), "--artifacts", str(tmp_path / "a"), "--seed", "5"])
    err = capsys.readouterr().err
    assert code in (0, 1), err
    assert "data-only" in err and "atheris" in err
    line = next(ln for ln in err.splitlines() if ln.startswith("data-only") and " atheris " in ln)
    assert int(line.split()[2]) >= 300  # libFuzzer ran the requested units
