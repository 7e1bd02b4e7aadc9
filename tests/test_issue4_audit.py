"""Gaps found by auditing issue 4 (scan, CLI, policy tooling) against its text.

Each test failed before the fix it comes with: SARIF URIs that are not URI
references, a joblib disassembly that stopped at the first array, a listing
that went on past where the VM stops, summaries without the size of dict
subclasses, decoding-option typos taken for refusals, unflagged amplifiers
behind a wildcard, named pipes refused.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import re
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from safepickle.cli import main
from safepickle.cli.load_cmd import summarize
from safepickle.policy import Policy
from safepickle.policy_tools import check_policy

ROOT = Path(__file__).resolve().parent.parent
EVIL = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."

# RFC 3986 URI-reference characters: unreserved, reserved, and %-escapes.
_URI_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*\Z")


def run(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "safepickle", *args], input=stdin, capture_output=True,
                          timeout=180, env=env, cwd=cwd or ROOT)


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# -- SARIF -----------------------------------------------------------------------


def test_sarif_uris_are_uri_references_that_decode_back_to_the_path(tmp_path):
    names = ["my model #1 (50%).pkl", "ünïcode.pkl", "a:b.pkl", "plain.pkl"]
    sub = tmp_path / "dir with space"
    sub.mkdir()
    for name in names:
        (sub / name).write_bytes(EVIL)
    raw = os.fsdecode(b"undecodable-\xff.pkl")
    try:
        (sub / raw).write_bytes(EVIL)
        names.append(raw)
    except (OSError, UnicodeEncodeError):  # a file system that only takes UTF-8 names
        pass
    outside = tmp_path / "outside"
    outside.mkdir()
    far = tmp_path / "far away.pkl"
    far.write_bytes(EVIL)
    r = run("scan", str(sub), str(far), "-f", "sarif", cwd=outside)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    run_ = doc["runs"][0]
    uris = [a["location"]["uri"] for a in run_["artifacts"]]
    for res in run_["results"]:
        assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] in uris
    assert len(uris) == len(names) + 1
    for uri in uris:
        assert _URI_CHARS.match(uri), uri
        assert "#" not in uri and " " not in uri
    # Under the working directory: relative references; elsewhere: file URIs.
    rel = run("scan", "dir with space", "-f", "sarif", cwd=tmp_path)
    rel_uris = {a["location"]["uri"] for a in json.loads(rel.stdout)["runs"][0]["artifacts"]}
    for name in names:
        want = "dir with space/" + name
        got = [u for u in rel_uris if os.fsdecode(urllib.parse.unquote_to_bytes(u)) == want]
        assert len(got) == 1, (name, rel_uris)
        assert ":" not in got[0].split("/")[0]  # no first segment that reads as a scheme
    far_uri = [u for u in uris if u.endswith("far%20away.pkl")]
    assert far_uri and far_uri[0].startswith("file:///")
    assert urllib.parse.unquote(urllib.parse.urlparse(far_uri[0]).path) == str(far)


# -- disasm -----------------------------------------------------------------------


def test_disasm_of_a_joblib_file_lists_what_follows_each_array(tmp_path, capsys):
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    path = tmp_path / "model.joblib"
    joblib.dump({"x": np.arange(12), "objs": np.array([collections.OrderedDict(a=1), None], dtype=object),
                 "after": collections.Counter("ab")}, path)
    code, out, _ = cli(capsys, "disasm", str(path), "-p", "stdlib")
    assert code == 1  # joblib's array wrapper is deny-listed
    sections = re.findall(r"^== (.*) \[(.*)\] from offset (\d+) ==$", out, re.M)
    views = [v for _, v, _ in sections]
    assert views == ["plain pickle, secondary", "joblib", "joblib object array"]
    joblib_part = out.split("[joblib] from offset 0 ==\n", 1)[1].split("\n== ", 1)[0]
    # Each array is one line, then the opcodes go on to the STOP.
    assert len(re.findall(r"\(array\) +\d+ bytes of array data, skipped as joblib reads them", joblib_part)) == 2
    assert "global collections:Counter: allowed" in joblib_part
    assert re.search(r"^ +\d+: STOP +depth 0$", joblib_part, re.M)
    assert "invalid load key" not in joblib_part
    nested = out.split("[joblib object array]", 1)[1]
    assert "global collections:OrderedDict: allowed" in nested
    # The plain reading is one line pointing at where pickle.load fails, not a second listing.
    plain = out.split("[plain pickle, secondary] from offset 0 ==\n", 1)[1].split("\n== ", 1)[0]
    assert plain.startswith("   (what pickle.load reads without joblib") and plain.count("\n") == 0


def test_disasm_stops_where_the_vm_stops(tmp_path, capsys):
    path = tmp_path / "py2.pkl"
    path.write_bytes(b"\x80\x02U\x03ab\xff.")  # a py2 str that ASCII cannot decode
    code, out, _ = cli(capsys, "disasm", str(path), "--encoding", "ascii")
    assert code == 1
    lines = out.splitlines()
    at = [i for i, line in enumerate(lines) if line.lstrip().startswith("2: SHORT_BINSTRING")]
    assert len(at) == 1
    assert "error:" in lines[at[0] + 1] and "ascii" in lines[at[0] + 1]
    assert "STOP" not in out  # the VM never reads the STOP at offset 7
    assert "REFUSED (1 violation) " in out
    # A limit and an error on the same opcode are both shown.
    big = tmp_path / "big.pkl"
    big.write_bytes(b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"abc")
    code, out, _ = cli(capsys, "disasm", str(big))
    assert code == 1
    assert "^ limit: declared length 1099511627776" in out and "^ error: declared length" in out


def test_disasm_width_must_be_positive(tmp_path, capsys):
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps([1]))
    code, _, err = cli(capsys, "disasm", str(path), "--width", "0")
    assert code == 2 and err.startswith("safepickle: --width")


# -- load -------------------------------------------------------------------------


class _Loud(dict):
    def __len__(self) -> int:
        raise AssertionError("the summary ran a Python override")

    def __iter__(self):  # type: ignore[override]
        raise AssertionError("the summary ran a Python override")


def test_summaries_of_container_subclasses_give_their_size_without_running_overrides():
    assert summarize(collections.OrderedDict(a=1, b=2))[1:] == ["length: 2", "keys: 'a', 'b'"]
    assert summarize(collections.Counter("aab"))[1:] == ["length: 2", "keys: 'a', 'b'"]
    assert summarize(collections.defaultdict(list, k=[1]))[1:] == ["length: 1", "keys: 'k'"]
    assert summarize(collections.deque(range(12)))[1:] == ["length: 12", "items: " + ", ".join(map(str, range(10)))
                                                           + ", ..."]
    loud = _Loud(q=1)
    assert summarize(loud)[1:] == ["length: 1", "keys: 'q'"]


def test_load_summary_of_an_ordered_dict_end_to_end(tmp_path):
    path = tmp_path / "od.pkl"
    path.write_bytes(pickle.dumps(collections.OrderedDict(alpha=1, beta=2), 2))
    r = run("load", str(path), "-p", "stdlib")
    assert r.returncode == 0, r.stderr
    assert b"length: 2" in r.stdout and b"keys: 'alpha', 'beta'" in r.stdout


def test_unknown_format_says_so_in_load_and_in_the_scan_line(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is no pickle\n")
    code, out, _ = cli(capsys, "load", str(path))
    assert code == 1 and "format is not recognised" in out
    code, out, _ = cli(capsys, "scan", str(path))
    assert code == 1 and out.startswith(f"{path}: REFUSED: format not recognised, scanned as a raw pickle")


# -- options ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["scan", "load", "disasm"])
@pytest.mark.parametrize("option", [("--encoding", "no-such-codec"), ("--errors", "no-such-handler")])
def test_decoding_option_typos_are_usage_errors(tmp_path, command, option):
    path = tmp_path / "py2.pkl"
    path.write_bytes(b"\x80\x02U\x03abc.")
    r = run(command, str(path), *option)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert "Traceback" not in err and err.count("\n") == 1 and option[1] in err
    assert r.stdout == b""


def test_pickles_encoding_bytes_is_accepted(tmp_path, capsys):
    path = tmp_path / "py2.pkl"
    path.write_bytes(b"\x80\x02U\x03ab\xff.")
    code, out, _ = cli(capsys, "load", str(path), "--encoding", "bytes")
    assert code == 0 and "type: bytes" in out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_on_the_command_line_is_read_like_stdin(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(EVIL)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    code, out, err = cli(capsys, "scan", str(fifo))
    writer.join(10)
    assert code == 1, err
    assert "os:system" in out
    # In a directory walk only regular files count (a pipe nobody writes to would block the run).
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps([1], 4))
    r = run("scan", str(tmp_path), "-f", "json")
    assert r.returncode == 0, r.stderr
    assert [Path(f["source"]).name for f in json.loads(r.stdout)["files"]] == ["ok.pkl"]


# -- policy check ---------------------------------------------------------------------


def test_check_flags_unguarded_amplifiers_behind_a_wildcard():
    policy = Policy.model_validate({"name": "w", "allow": ["math:*"], "deny": ["math:factorial"]})
    found = [f for f in check_policy(policy, import_modules=False) if "amplify" in f.message]
    assert len(found) == 1 and found[0].entry == "math:*"
    assert "math:comb" in found[0].message
    assert "math:factorial" not in found[0].message  # denied: the wildcard does not admit it
    quiet = Policy.model_validate({"name": "q", "allow": ["fractions:*"]})
    assert not [f for f in check_policy(quiet, import_modules=False) if "amplify" in f.message]


# -- policy infer ----------------------------------------------------------------------


def test_infer_says_why_each_built_in_is_extended(tmp_path):
    np = pytest.importorskip("numpy")
    from safepickle.policy_tools import infer_policy

    arr = tmp_path / "arr.pkl"
    arr.write_bytes(pickle.dumps(np.arange(3), 4))
    od = tmp_path / "od.pkl"
    od.write_bytes(pickle.dumps(collections.OrderedDict(a=1), 2))
    result = infer_policy([str(arr), str(od)], name="why")
    assert not result.problems and result.text
    comments = {line.split(":", 1)[0][2:]: line for line in result.text.splitlines()
                if line.startswith("# ") and ": for " in line}
    assert set(comments) == set(result.base)
    for base, line in comments.items():
        needs = result.base_needs[base]
        assert needs and all(q in line for q in needs[:6])
    if "stdlib" in comments:
        assert "collections:OrderedDict" in comments["stdlib"] and "od.pkl" in comments["stdlib"]
    assert "arr.pkl" in comments["numpy-only"]
    import safepickle

    policy = Policy.model_validate(__import__("tomllib").loads(result.text))
    assert list(safepickle.loads(od.read_bytes(), policy=policy).items()) == [("a", 1)]
    assert (safepickle.loads(arr.read_bytes(), policy=policy) == np.arange(3)).all()
