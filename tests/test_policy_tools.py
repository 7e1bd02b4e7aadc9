"""``policy show``, ``policy check`` and ``policy infer``."""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import os
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import safepickle
from safepickle import policies
from safepickle.policy import Policy, load_policy
from safepickle.policy_tools import check_policy, effective_toml, infer_policy

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "safepickle", *args], capture_output=True, timeout=180, env=env,
                          cwd=cwd or ROOT)


@pytest.mark.parametrize("name", policies.names())
def test_show_gives_the_effective_policy_back(name, tmp_path):
    text = effective_toml(load_policy(name))
    shown = Policy.model_validate(tomllib.loads(text))
    original = load_policy(name).effective()
    again = shown.effective()
    assert again.allow == original.allow
    assert again.deny == original.deny
    assert again.limits == original.limits
    assert again.persistent_ids == original.persistent_ids
    r = cli("policy", "show", name)
    assert r.returncode == 0 and r.stdout.decode() == text


def test_show_merges_extends(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\nextends = ["stdlib"]\nallow = ["mypkg.records:Row"]\ndeny = ["uuid:UUID"]\n'
                 "[limits]\nmax_depth = 50\n[extensions]\n7 = \"mypkg.records:Row\"\n")
    doc = tomllib.loads(cli("policy", "show", str(f)).stdout.decode())
    assert "extends" not in doc
    assert "mypkg.records:Row" in doc["allow"] and "collections:OrderedDict" in doc["allow"]
    assert doc["deny"] == ["uuid:UUID"]
    assert doc["limits"]["max_depth"] == 50
    assert doc["extensions"] == {"7": "mypkg.records:Row"}


def test_check_warns_on_risky_entries(tmp_path):
    f = tmp_path / "risky.toml"
    f.write_text('name = "risky"\nextends = ["data-only"]\n'
                 'allow = ["collections:*", "mymissing.mod:system", "pathlib:PurePosixPath", "math:factorial"]\n'
                 "persistent_ids = true\n")
    findings = check_policy(load_policy(f))
    text = "\n".join(x.line() for x in findings)
    assert "module wildcard" in text
    assert "collections:namedtuple" in text  # a deny-listed name in the wildcard's module
    assert "'system' reads like" in text
    assert "cannot import mymissing.mod" in text
    assert "__reduce__" in text  # PurePath defines its own
    assert "amplify" in text and "math:factorial" in text
    assert "persistent ids are enabled" in text
    r = cli("policy", "check", str(f))
    assert r.returncode == 0 and b"warning:" in r.stdout
    assert cli("policy", "check", str(f), "--strict").returncode == 1


def test_check_of_builtin_style_policy_is_quiet_and_invalid_policies_fail(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('name = "good"\nextends = ["stdlib"]\nallow = ["datetime:timezone"]\n')
    r = cli("policy", "check", str(good), "--strict")
    assert r.returncode == 0, r.stdout
    assert b"0 warnings" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nallow = ["not a name"]\n')
    r = cli("policy", "check", str(bad))
    assert r.returncode == 1
    assert b"allow.0" in r.stdout and b"invalid policy" in r.stdout
    r = cli("policy", "check", str(tmp_path / "absent.toml"))
    assert r.returncode == 2 and b"Traceback" not in r.stderr


def _write(path: Path, value, proto: int) -> Path:
    path.write_bytes(pickle.dumps(value, proto))
    return path


def test_infer_then_load_stdlib_samples(tmp_path):
    samples = [
        _write(tmp_path / "a.pkl", {"when": datetime.datetime(2020, 1, 2), "od": collections.OrderedDict(x=1)}, 2),
        _write(tmp_path / "b.pkl", [decimal.Decimal("1.25"), fractions.Fraction(2, 3)], 4),
        _write(tmp_path / "c.pkl", collections.Counter("hello"), 0),
    ]
    out = tmp_path / "inferred.toml"
    r = cli("policy", "infer", *map(str, samples), "-o", str(out))
    assert r.returncode == 0, r.stderr
    doc = tomllib.loads(out.read_text())
    assert doc["extends"] == ["stdlib"]
    policy = load_policy(out)
    for s in samples:
        assert safepickle.loads(s.read_bytes(), policy=policy) == pickle.loads(s.read_bytes())
    assert not safepickle.scan(pickle.dumps(__import__("uuid").UUID(int=1), 2), policy=policy).ok or \
        "uuid:UUID" in policy.effective().allow


def test_infer_then_load_numpy_samples(tmp_path):
    np = pytest.importorskip("numpy")
    samples = [_write(tmp_path / f"n{p}.pkl", {"x": np.arange(6).reshape(2, 3), "s": np.float64(2.5),
                                               "when": datetime.date(2020, 1, 1)}, p) for p in (2, 4, 5)]
    samples.append(_write(tmp_path / "extra.pkl", collections.deque([1, 2]), 4))
    result = infer_policy(list(map(str, samples)), name="np-inferred")
    assert not result.problems
    assert "numpy-only" in result.base
    policy = Policy.model_validate(tomllib.loads(result.text or ""))
    for s in samples:
        got = safepickle.loads(s.read_bytes(), policy=policy)
        want = pickle.loads(s.read_bytes())
        if isinstance(want, dict):
            assert (got["x"] == want["x"]).all() and got["s"] == want["s"] and got["when"] == want["when"]
        else:
            assert got == want
    for entry in result.allow:
        assert "needed by" in (result.text or "").split(entry, 1)[1].splitlines()[0]


def test_infer_needs_nothing_for_plain_data_and_refuses_what_no_policy_admits(tmp_path):
    plain = _write(tmp_path / "plain.pkl", {"a": [1, 2, b"x"]}, 5)
    result = infer_policy([str(plain)], name="p")
    assert result.base == ["data-only"] and result.allow == []
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.")
    out = tmp_path / "never.toml"
    r = cli("policy", "infer", str(plain), str(evil), "-o", str(out))
    assert r.returncode == 1
    assert b"os:system" in r.stderr and b"deny list" in r.stderr
    assert not out.exists()
