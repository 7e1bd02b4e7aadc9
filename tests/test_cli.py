"""The ``safepickle`` command end to end, through subprocesses."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVIL = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."


def run(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "safepickle", *args], input=stdin, capture_output=True,
                          timeout=180, env=env, cwd=cwd or ROOT)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    ok = tmp_path / "ok.pkl"
    ok.write_bytes(pickle.dumps({"a": [1, 2]}, 4))
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(EVIL)
    sub = tmp_path / "tree" / "deeper"
    sub.mkdir(parents=True)
    (sub / "inner.bin").write_bytes(EVIL)
    (tmp_path / "tree" / "fine.pkl").write_bytes(pickle.dumps([1], 2))
    return {"ok": ok, "evil": evil, "tree": tmp_path / "tree", "dir": tmp_path}


def one_line_error(r: subprocess.CompletedProcess) -> str:
    err = r.stderr.decode()
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("safepickle: ")
    return lines[0]


def test_version_names_the_engine():
    r = run("--version")
    assert r.returncode == 0
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("safepickle ")
    assert lines[1] in ("engine: compiled", "engine: python")


def test_scan_exit_codes(files):
    assert run("scan", str(files["ok"])).returncode == 0
    r = run("scan", str(files["evil"]))
    assert r.returncode == 1
    assert b"os:system" in r.stdout and b"offset 2" in r.stdout
    assert run("scan", str(files["ok"]), str(files["evil"])).returncode == 1


def test_scan_directories_recursively_and_stdin(files):
    r = run("scan", str(files["tree"]), "-f", "json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    sources = sorted(Path(f["source"]).name for f in doc["files"])
    assert sources == ["fine.pkl", "inner.bin"]
    assert doc["summary"] == {"files": 2, "ok": 1, "refused": 1, "errors": 0}
    r = run("scan", "-", stdin=EVIL)
    assert r.returncode == 1 and b"os:system" in r.stdout
    r = run("scan", "-", stdin=pickle.dumps(1))
    assert r.returncode == 0


def test_scan_jobs_gives_the_same_reports(files):
    many = files["dir"] / "many"
    many.mkdir()
    for i in range(12):
        (many / f"f{i:02}.pkl").write_bytes(EVIL if i % 3 == 0 else pickle.dumps(list(range(i)), i % 6))
    one = json.loads(run("scan", str(many), "-f", "json").stdout)
    two = json.loads(run("scan", str(many), "-f", "json", "--jobs", "2").stdout)
    assert one == two
    assert one["summary"]["refused"] == 4


def test_errors_for_people(files):
    r = run("scan", str(files["dir"] / "missing.pkl"))
    assert r.returncode == 2
    assert "missing.pkl" in one_line_error(r)
    r = run("scan", str(files["ok"]), "--policy", "no-such-policy")
    assert r.returncode == 2
    assert "no-such-policy" in one_line_error(r)
    bad = files["dir"] / "bad.toml"
    bad.write_text('name = "b"\nbogus = 1\n')
    r = run("scan", str(files["ok"]), "--policy", str(bad))
    assert r.returncode == 2
    assert "bogus" in one_line_error(r)
    r = run("scan", str(files["ok"]), "--format", "xml")
    assert r.returncode == 2
    assert "xml" in one_line_error(r)
    r = run("frobnicate")
    assert r.returncode == 2
    one_line_error(r)
    # a missing file among good ones: the others are still reported, the exit code says the run was incomplete
    r = run("scan", str(files["ok"]), str(files["dir"] / "nope"))
    assert r.returncode == 2 and b"ok.pkl: ok" in r.stdout


def test_unknown_file_format_is_scanned_as_a_raw_pickle(files):
    text = files["dir"] / "notes.txt"
    text.write_text("just some text\n")
    r = run("scan", str(text), "-v")
    assert r.returncode == 1
    assert b"format not recognised" in r.stdout


def test_json_report(files):
    r = run("scan", str(files["evil"]), "-f", "json", "--policy", "stdlib")
    doc = json.loads(r.stdout)
    assert doc["policy"] == "stdlib" and doc["ok"] is False
    f = doc["files"][0]
    assert f["format"] == "pickle" and f["protocol"] == 2
    assert f["globals"][0]["global"] == "os:system"
    assert f["violations"][0]["offset"] == 2


def _check_sarif(doc: dict) -> None:
    """The parts of the SARIF 2.1.0 schema that code-scanning services check."""
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-2.1.0.json")
    assert isinstance(doc["runs"], list) and len(doc["runs"]) == 1
    run_ = doc["runs"][0]
    driver = run_["tool"]["driver"]
    assert isinstance(driver["name"], str) and driver["name"]
    ids = [rule["id"] for rule in driver["rules"]]
    assert len(ids) == len(set(ids))
    for rule in driver["rules"]:
        assert set(rule) <= {"id", "name", "shortDescription", "fullDescription", "defaultConfiguration", "helpUri",
                             "help", "properties"}
        assert isinstance(rule["shortDescription"]["text"], str)
    for art in run_["artifacts"]:
        assert isinstance(art["location"]["uri"], str)
    for res in run_["results"]:
        assert isinstance(res["message"]["text"], str) and res["message"]["text"]
        assert res["ruleId"] in ids
        assert ids[res["ruleIndex"]] == res["ruleId"]
        assert res["level"] in ("none", "note", "warning", "error")
        for loc in res["locations"]:
            phys = loc["physicalLocation"]
            uri = phys["artifactLocation"]["uri"]
            assert isinstance(uri, str) and uri and "\\" not in uri
            assert run_["artifacts"][phys["artifactLocation"]["index"]]["location"]["uri"] == uri
            region = phys.get("region")
            if region is not None:
                assert region["startLine"] >= 1
                if "byteOffset" in region:  # absent where the part's bytes are not the file's
                    assert region["byteOffset"] >= 0 and region["byteLength"] >= 0
        for key, value in res.get("partialFingerprints", {}).items():
            assert isinstance(key, str) and isinstance(value, str)


def test_sarif_output(files):
    zipped = files["dir"] / "model.pt"
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", EVIL)
    zipped.write_bytes(buf.getvalue())
    r = run("scan", "ok.pkl", "evil.pkl", "model.pt", "missing.pkl", "-f", "sarif", cwd=files["dir"])
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    _check_sarif(doc)
    results = doc["runs"][0]["results"]
    refused = [x for x in results if x["ruleId"] == "SP001"]
    assert [x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for x in refused] == \
        ["evil.pkl", "model.pt"]
    # the region is an offset in the file itself: there, the GLOBAL opcode of os:system
    for x in refused:
        where = x["locations"][0]["physicalLocation"]
        raw = (files["dir"] / where["artifactLocation"]["uri"]).read_bytes()
        assert raw[where["region"]["byteOffset"]:].startswith(b"cos\nsystem\n")
    assert refused[0]["locations"][0]["physicalLocation"]["region"]["byteOffset"] == 2
    assert refused[1]["locations"][0]["logicalLocations"][0]["name"] == "archive/data.pkl"
    assert "offset 2 in archive/data.pkl" in refused[1]["message"]["text"]
    assert [x["ruleId"] for x in results if "missing.pkl" in x["message"]["text"]] == ["SP009"]
    clean = json.loads(run("scan", "ok.pkl", "-f", "sarif", cwd=files["dir"]).stdout)
    _check_sarif(clean)
    assert clean["runs"][0]["results"] == []
    # a deflated member: no offset of the file holds its bytes, so the region is the whole file
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", EVIL)
    (files["dir"] / "deflated.pt").write_bytes(buf.getvalue())
    doc = json.loads(run("scan", "deflated.pt", "-f", "sarif", cwd=files["dir"]).stdout)
    _check_sarif(doc)
    (x,) = [x for x in doc["runs"][0]["results"] if x["ruleId"] == "SP001"]
    assert x["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}
    assert "offset 2 in archive/data.pkl" in x["message"]["text"]


def test_progress_bar_only_on_a_terminal(files):
    r = run("scan", str(files["tree"]))
    assert b"\r" not in r.stderr and b"\x1b[" not in r.stderr


def test_load_prints_a_summary_or_the_refusal(files):
    r = run("load", str(files["ok"]))
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "type: dict" in out and "keys: 'a'" in out
    r = run("load", str(files["evil"]), "--policy", "stdlib")
    assert r.returncode == 1
    assert b"REFUSED" in r.stdout and b"offset 2" in r.stdout and b"os:system" in r.stdout
    np = pytest.importorskip("numpy")
    arr = files["dir"] / "arr.pkl"
    arr.write_bytes(pickle.dumps(np.zeros((2, 3), dtype=np.float32), 5))
    r = run("load", str(arr), "-p", "numpy-only")
    assert r.returncode == 0
    assert b"shape: (2, 3)" in r.stdout and b"dtype: float32" in r.stdout
    r = run("load", str(files["dir"] / "missing.pkl"))
    assert r.returncode == 2
    one_line_error(r)


def test_disasm_lists_offsets_depth_and_verdicts(files):
    r = run("disasm", str(files["evil"]))
    assert r.returncode == 1
    out = r.stdout.decode()
    assert "       2: GLOBAL           os system" in out
    assert "global os:system: REFUSED (denylist:process)" in out
    assert "depth 1" in out
    data = b"\x80\x04\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93)R."
    od = files["dir"] / "od.pkl"
    od.write_bytes(data)
    r = run("disasm", str(od), "-p", "stdlib")
    assert r.returncode == 0
    assert "global collections:OrderedDict: allowed" in r.stdout.decode()
    trunc = files["dir"] / "trunc.pkl"
    trunc.write_bytes(b"\x80\x02X" + struct.pack("<I", 1000) + b"ab")
    r = run("disasm", str(trunc))
    assert r.returncode == 1 and b"error:" in r.stdout


def test_fuzz_subcommand_dispatches_or_says_why_not():
    r = run("fuzz", "--help")
    try:
        import safepickle.fuzzing.cli  # noqa: F401
    except ImportError:
        assert r.returncode == 2
        assert "fuzz" in one_line_error(r)
    else:
        assert r.returncode == 0, r.stderr[-300:]
