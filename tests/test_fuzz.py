"""The fuzz harness's parts: graph comparison, generators, CPython side,
oracles on known-good and known-bad streams, minimizer, artifacts, corpus."""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings

import safepickle
from safepickle.codec import decode
from safepickle.errors import ForbiddenGlobal, LimitExceeded, MalformedPickle
from safepickle.fuzzing.case import FuzzCase
from safepickle.fuzzing.cpython_side import (
    CPythonWorker,
    global_protocols,
    in_process_safe,
    load_in_process,
    restricted_load,
)
from safepickle.fuzzing.findings import Finding, read_artifact, write_artifacts
from safepickle.fuzzing.grammar import Grammar, RandomChooser, _Program, pickle_cases
from safepickle.fuzzing.graph import describe, first_difference
from safepickle.fuzzing.minimize import minimize
from safepickle.fuzzing.mutate import Seed, load_corpus, mutate_case
from safepickle.fuzzing.oracles import Checker, _documented_refusal
from safepickle.fuzzing.policyspec import FUZZ_CAPS, prepare, spec_for
from safepickle.fuzzing.samples import admitted, pickled_samples
from safepickle.fuzzing.sandbox import Blocked, blocking
from safepickle.fuzzing.sources import BytesSource, GrammarSource

BUILTIN = safepickle.policies.names()


@pytest.fixture(scope="module")
def data_only():
    return prepare("data-only")


@pytest.fixture(scope="module")
def checker(data_only):
    ch = Checker(data_only)
    yield ch
    ch.close()


# -- graph: structural equality ------------------------------------------------------


def test_equal_values_describe_equal():
    a = {"k": [1, 2.5, "x", b"y", None, (1,)], 2: frozenset({1, 2})}
    b = {"k": [1, 2.5, "x", b"y", None, (1,)], 2: frozenset({2, 1})}
    assert describe(a) == describe(b)


def test_types_matter():
    assert describe([1]) != describe((1,))
    assert describe(1) != describe(True)
    assert describe(b"a") != describe(bytearray(b"a"))
    assert describe(1.0) != describe(1)


def test_sharing_matters():
    inner = [1]
    shared = [inner, inner]
    copies = [[1], [1]]
    assert shared == copies
    assert describe(shared) != describe(copies)
    assert first_difference(describe(shared), describe(copies)) is not None


def test_recursion_matters_and_terminates():
    a: list = []
    a.append(a)
    b: list = [[]]
    assert describe(a) == [["list", 1], ["ref", 0]]
    assert describe(a) != describe(b)


def test_floats_are_exact():
    assert describe(float("nan")) == describe(float("nan"))
    assert describe(0.0) != describe(-0.0)


def test_sets_do_not_depend_on_hash_seed():
    value = {frozenset({"a", "b", "c"}), ("x", 1), "zz", 3}
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from safepickle.fuzzing.graph import describe; "
            "print(json.dumps(describe({frozenset({'a', 'b', 'c'}), ('x', 1), 'zz', 3})))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.add(subprocess.run([sys.executable, "-c", code, root], env=env, capture_output=True, text=True,
                                check=True).stdout)
    assert len(outs) == 1
    assert json.loads(outs.pop()) == describe(value)


def test_deep_and_huge_values_are_walked_without_recursion():
    deep: list = []
    for _ in range(200_000):
        deep = [deep]
    desc = describe(deep)
    assert desc[-1] == ["truncated"]
    assert describe(2**100_000)[0][0] == "int"


def test_instances_compare_by_reduce():
    import collections
    import datetime

    a = collections.OrderedDict(x=datetime.date(2024, 1, 2))
    b = collections.OrderedDict(x=datetime.date(2024, 1, 3))
    assert describe(a) == describe(collections.OrderedDict(x=datetime.date(2024, 1, 2)))
    assert describe(a) != describe(b)


# -- CPython side ---------------------------------------------------------------------


def test_restricted_unpickler_admits_only_the_policy(data_only):
    assert restricted_load(pickle.dumps({1, 2}, 2), data_only.runtime, {}) == {1, 2}
    with pytest.raises(pickle.UnpicklingError, match="os:system"):
        restricted_load(b"cos\nsystem\n(S'true'\ntR.", data_only.runtime, {})
    # py2 names are mapped with fix_imports, as CPython does
    assert restricted_load(b"c__builtin__\nset\n((ltR.", data_only.runtime, {}) == set()


def test_global_protocols_follow_proto_opcodes():
    data = pickle.dumps([set(), frozenset()], 2)
    assert global_protocols(data) == [2, 2]
    assert global_protocols(b"cbuiltins\nset\n)R.") == [0]


def test_in_process_only_for_safe_streams():
    assert in_process_safe(pickle.dumps([1, "a", (2,)], 4))
    assert not in_process_safe(pickle.dumps({1}, 2))  # a global
    assert not in_process_safe(b"\x80\x02K\x01r\xff\xff\xff\x7f.")  # CPython would allocate a 16 GiB memo
    assert not in_process_safe(b"I010\n.")  # our decoder refuses it; CPython might read further


def test_worker_loads_refuses_and_survives(data_only):
    worker = CPythonWorker(timeout=30, address_space=2 << 30)
    try:
        ok = worker.run(pickle.dumps({1, 2}, 2), data_only.spec, {})
        assert ok["status"] == "loaded" and ok["desc"] == json.loads(json.dumps(describe({1, 2})))
        bad = worker.run(b"cos\nsystem\n.", data_only.spec, {})
        assert bad["status"] == "refused" and bad["type"] == "UnpicklingError"
        # CPython allocates a bytearray of the declared 4 GiB: the capped worker cannot decide
        huge = b"\x80\x05\x96" + struct.pack("<Q", 4 << 30) + b"abc."
        assert worker.run(b"cbuiltins\nset\n0" + huge, data_only.spec, {})["status"] == "inconclusive"
        assert worker.run(pickle.dumps([1], 2), data_only.spec, {})["status"] == "loaded"
    finally:
        worker.close()


def test_in_process_side_reports_refusals(data_only):
    out = load_in_process(b"\x80\x02(.", data_only.runtime, {})
    assert out["status"] == "refused"


# -- generators -------------------------------------------------------------------------


def test_grammar_cases_are_deterministic(data_only):
    a, b = GrammarSource(data_only, 5), GrammarSource(data_only, 5)
    assert [a.case(i) for i in range(20)] == [b.case(i) for i in range(20)]
    assert [a.case(i) for i in range(20)] != [GrammarSource(data_only, 6).case(i) for i in range(20)]
    assert a.case(7) == a.case(7)


# CPython's complaints about the shape of a program (not about a policy, an
# argument or a state): an unmutated grammar program never earns one.
_STRUCTURAL = ("truncated", "could not find MARK", "stack underflow", "invalid load key", "Memo value not found",
               "odd number of items", "unsupported pickle protocol", "frame", "STACK_GLOBAL requires")


def test_unmutated_programs_are_valid_for_every_protocol(data_only):
    """Before mutation the grammar writes well-formed programs: the codec
    decodes them to STOP and CPython's restricted unpickler refuses them only
    for policy reasons (a global, an argument an allowed callable rejects)."""
    grammar = Grammar.for_policy(data_only)
    rng = random.Random(3)
    seen = collections.Counter()
    for _ in range(600):
        ch = RandomChooser(rng)
        proto = rng.randint(0, 5)
        prog = _Program(proto, loose=False, budget=40)
        if proto >= 2:
            prog.emit("PROTO", proto)
        grammar.value(ch, prog, 0)
        prog.emit("STOP")
        data = grammar.assemble(ch, prog)
        ops = [op.opcode for op in decode(data)]
        assert ops[-1].name == "STOP"
        assert all(op.proto <= max(proto, 1) or prog.loose for op in ops), data
        bufs = [bytearray(b) for b in prog.buffers]
        try:
            restricted_load(data, data_only.runtime, {"buffers": bufs})
            seen[proto, "loaded"] += 1
        except pickle.UnpicklingError as e:
            if "truncated" in str(e) and b"\n\n" in data:
                continue  # a hostile global with an empty name line: CPython calls that truncation
            assert not any(m in str(e) for m in _STRUCTURAL), (data, e)
        except (TypeError, ValueError, OverflowError, AttributeError, UnicodeError, KeyError, IndexError):
            pass  # an allowed callable refusing a hostile argument or state
    assert {p for p, kind in seen if kind == "loaded"} == set(range(6))


def test_grammar_covers_the_opcode_table(data_only):
    from safepickle.codec import OPCODES

    src = GrammarSource(data_only, 1)
    used = set()
    for i in range(400):
        data = src.case(i).data
        pos = 0
        try:
            for op in decode(data):
                used.add(op.opcode.name)
        except MalformedPickle:
            pass
        pos += 1
    missing = {op.name for op in OPCODES} - used
    assert not missing, missing


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(pickle_cases("data-only"))
def test_pickle_cases_is_a_hypothesis_strategy(case):
    assert isinstance(case, FuzzCase) and isinstance(case.data, bytes)
    assert case.encoding in ("ASCII", "latin1", "bytes", "utf-8", "koi8_r")


def test_byte_mutations_are_deterministic_and_bounded():
    seeds = [Seed("a", pickle.dumps({"a": [1, 2]}, p)) for p in range(6)]
    one = [mutate_case(RandomChooser(random.Random(i)), seeds) for i in range(200)]
    two = [mutate_case(RandomChooser(random.Random(i)), seeds) for i in range(200)]
    assert one == two
    assert len({c.data for c in one}) > 150
    assert all(len(c.data) <= 1 << 20 for c in one)


def test_corpus_folder(tmp_path):
    (tmp_path / "a.pickle").write_bytes(pickle.dumps([1]))
    (tmp_path / "notes.md").write_text("ignored")
    seeds = load_corpus([tmp_path])
    assert [s.name for s in seeds] == ["a.pickle"]
    assert seeds[0].starts[0] == 0 and len(seeds[0].starts) > 1
    with pytest.raises(FileNotFoundError):
        load_corpus([tmp_path / "missing"])


def test_samples_are_admitted_by_their_policies():
    rts = {name: prepare(name).runtime for name in BUILTIN}
    by_policy = collections.defaultdict(set)
    for s in pickled_samples():
        for name, rt in rts.items():
            if admitted(s, rt):
                by_policy[name].add(s.name)
    assert {"dict", "sets", "recursive_list", "complex"} <= by_policy["data-only"]
    if "stdlib" in rts:
        assert {"datetime", "decimal", "ordereddict"} <= by_policy["stdlib"]
        assert "datetime" not in by_policy["data-only"]
    if "numpy-only" in rts:
        pytest.importorskip("numpy")
        assert {"np_int", "np_object", "np_masked", "np_int_oob"} <= by_policy["numpy-only"]


# -- oracles ------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", BUILTIN)
def test_no_finding_on_the_policies_own_data(policy):
    """No false alarms: every sample value a policy admits, at every protocol,
    passes all five oracles."""
    put = prepare(policy)
    ch = Checker(put)
    try:
        n = 0
        for s in pickled_samples():
            if not admitted(s, put.runtime):
                continue
            case = FuzzCase(data=s.data, buffers=s.buffers)
            assert ch.check(case) == [], (s.name, s.proto)
            n += 1
        assert n >= 30
    finally:
        ch.close()


def test_hostile_classics_are_refused_without_findings(checker):
    for data in (b"cos\nsystem\n(S'true'\ntR.", b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93)R.",
                 b"(cposix\nsystem\nS'true'\no.", b"\x80\x02(.", b"\x80\x05\x97.", b"P0\n."):
        assert checker.check(FuzzCase(data=data)) == [], data


def test_exceptions_oracle_judges_what_escapes(checker, monkeypatch):
    import safepickle.vm as vm

    monkeypatch.setattr(vm, "loads", lambda data, **kw: (_ for _ in ()).throw(KeyError("boom")))
    found = checker.check(FuzzCase(data=b"K\x01."))
    assert ("exceptions", "escaped", "KeyError") in {f.signature for f in found}


def test_error_without_offset_is_a_finding(checker, monkeypatch):
    import safepickle.vm as vm

    def no_offset(data, **kw):
        raise MalformedPickle("somewhere", rule="x")

    monkeypatch.setattr(vm, "loads", no_offset)
    found = checker.check(FuzzCase(data=b"K\x01."))
    assert ("exceptions", "no-offset", "MalformedPickle") in {f.signature for f in found}


def test_audit_oracle_sees_dangerous_events_and_the_sandbox_blocks_them(checker, monkeypatch, tmp_path):
    import safepickle.vm as vm

    target = tmp_path / "written"

    def writes(data, **kw):
        with open(target, "w") as f:
            f.write("x")
        return 1

    monkeypatch.setattr(vm, "loads", writes)
    found = checker.check(FuzzCase(data=b"K\x01."))
    kinds = {f.signature[:2] for f in found}
    assert ("audit", "event-file") in kinds
    assert ("exceptions", "escaped") in kinds  # Blocked escaped the load
    assert not target.exists()


def test_sandbox_blocks_process_creation():
    with pytest.raises(Blocked), blocking():
        os.system("true")
    assert os.system("true") == 0  # outside the block: untouched


def test_result_holding_a_forbidden_object_is_a_finding(checker, monkeypatch):
    import safepickle.vm as vm

    monkeypatch.setattr(vm, "loads", lambda data, **kw: [{"f": os.system}])
    found = checker.check(FuzzCase(data=b"K\x01."))
    assert any(f.signature[:2] == ("audit", "forbidden-object") and "system" in f.message for f in found)


def test_differential_oracle_compares_values(checker, monkeypatch):
    import safepickle.vm as vm

    real = vm.loads
    monkeypatch.setattr(vm, "loads", lambda data, **kw: [*real(data, **kw), 0])
    found = checker.check(FuzzCase(data=pickle.dumps([1, 2], 2)))
    assert ("differential", "value-mismatch", "") in {f.signature for f in found}


def test_differential_oracle_flags_loading_what_cpython_refuses(checker, monkeypatch):
    import safepickle.vm as vm

    monkeypatch.setattr(vm, "loads", lambda data, **kw: None)
    found = checker.check(FuzzCase(data=b"\x80\x02(."))
    assert ("differential", "loaded-what-cpython-refuses", "UnpicklingError") in {f.signature for f in found}


def test_documented_refusals():
    assert _documented_refusal(LimitExceeded("max_depth", 5, 4))
    assert _documented_refusal(MalformedPickle("x", opcode="INT", rule="bad-argument"))
    assert _documented_refusal(MalformedPickle("x", opcode="GET", rule="frame-straddle"))
    assert not _documented_refusal(MalformedPickle("x", opcode="BINUNICODE", rule="bad-argument"))
    assert not _documented_refusal(MalformedPickle("x", opcode="APPEND", rule="stack-underflow"))
    assert _documented_refusal(ForbiddenGlobal("m", "n", "x", rule="call-target"))
    assert not _documented_refusal(ForbiddenGlobal("m", "n", "x", rule="not-allowed"))


def test_resources_oracle_flags_an_unforeseen_memory_error(checker, monkeypatch):
    import safepickle.vm as vm

    def oom(data, **kw):
        raise LimitExceeded("max_alloc_bytes", "MemoryError", offset=0, opcode="BINBYTES")

    monkeypatch.setattr(vm, "loads", oom)
    assert ("resources", "memory-error", "LimitExceeded") in {f.signature for f in
                                                               checker.check(FuzzCase(data=b"K\x01."))}


def test_resources_oracle_measures_memory(checker, monkeypatch):
    import safepickle.vm as vm

    def hog(data, **kw):
        block = bytearray(200 << 20)
        block[::4096] = b"x" * len(block[::4096])
        return 1

    monkeypatch.setattr(vm, "loads", hog)
    assert ("resources", "memory", "") in {f.signature for f in checker.check(FuzzCase(data=b"K\x01."))}


def test_scan_oracle_flags_a_global_scan_did_not_see(checker, monkeypatch):
    import safepickle.vm as vm

    def phantom(data, *, trace=None, **kw):
        trace.append((1, "builtins", "set"))
        return 1

    monkeypatch.setattr(vm, "loads", phantom)
    found = checker.check(FuzzCase(data=b"K\x01."))
    assert ("scan", "unseen-global", "") in {f.signature for f in found}


def test_file_loads_must_agree_with_loads(checker, monkeypatch):
    import safepickle.vm as vm

    monkeypatch.setattr(vm, "load", lambda f, **kw: 2)
    found = checker.check(FuzzCase(data=pickle.dumps(1, 2)))
    assert ("differential", "load-vs-loads-value", "") in {f.signature for f in found}


# -- minimizer and artifacts -----------------------------------------------------------------


def test_minimize_keeps_the_failure_and_shrinks():
    case = FuzzCase(data=bytes(range(200)) + b"NEEDLE" + bytes(300), buffers=(b"x",), encoding="latin1")
    small = minimize(case, lambda c: b"NEEDLE" in c.data)
    assert small.data == b"NEEDLE"
    assert small.buffers is None and small.encoding == "ASCII"


def test_artifacts_round_trip(tmp_path):
    finding = Finding("exceptions", "internal-error", "boom", exception="InternalError: x", offset=3, opcode="DUP")
    case = FuzzCase(data=b"\x80\x022.", buffers=(b"ab",), encoding="latin1")
    path = write_artifacts(tmp_path, finding, case, spec_for("data-only", FUZZ_CAPS), original=case)
    again, spec, report = read_artifact(path)
    assert again == case and spec["builtin"] == "data-only"
    assert report["finding"]["offset"] == 3
    assert (tmp_path / report["reproducer"]).read_bytes() == case.data
    from_pickle, _, _ = read_artifact(tmp_path / report["reproducer"])
    assert from_pickle == case


def test_corpus_writer(tmp_path):
    from safepickle.fuzzing.corpus import write_corpus

    written = write_corpus(tmp_path)
    names = {p.name for p in written}
    assert "sample-dict-p0.pickle" in names and "sample-dict-p5.pickle" in names
    assert any(n.startswith("hostile-") for n in names)
    assert all(p.stat().st_size <= 64 << 10 for p in written)


def test_bytes_source_uses_the_corpus(data_only, tmp_path):
    (tmp_path / "one.pickle").write_bytes(pickle.dumps([1, 2, 3], 2))
    src = BytesSource(data_only, 0, load_corpus([tmp_path]))
    assert all(c.origin.startswith("bytes#") for c in [src.case(i) for i in range(5)])
    with pytest.raises(ValueError):
        BytesSource(data_only, 0, [])


def test_unseekable_reader_is_pipe_like():
    from safepickle.fuzzing.oracles import _Unseekable

    r = _Unseekable(b"x" * 10_000)
    assert not hasattr(r, "seek") and len(r.read(9_000)) < 9_000
    assert safepickle.load(_Unseekable(pickle.dumps([1] * 5000, 4))) == [1] * 5000
    assert io.BytesIO  # (seekable loads are checked with io.BytesIO)
