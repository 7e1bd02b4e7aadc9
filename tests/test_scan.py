"""The static decoder: globals, uses, verdicts, limits, malformed streams, and
its agreement with what the VM asks the policy for."""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import pickle
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import safepickle
from safepickle import vm
from safepickle.errors import ForbiddenGlobal, SafePickleError
from safepickle.policy import Policy, coerce_policy
from safepickle.scan import scan
from tests.hostile_corpus import CASES

PROTOCOLS = range(0, 6)

PLAIN = {"a": [1, 2.5, None, True, "x" * 3, b"\x00\xff", (1, 2)], "s": {1, 2}, "f": frozenset({3}),
         "ba": bytearray(b"ab"), "c": 1 + 2j, "big": 2**100, "neg": -(2**70), "u": "\u20ac\ud800"}
STDLIB = [collections.OrderedDict(a=1), collections.deque([1, 2]), collections.Counter("abca"),
          datetime.datetime(2020, 1, 2, 3, 4, 5), datetime.date(2021, 3, 4), decimal.Decimal("1.5"),
          fractions.Fraction(1, 3), uuid.UUID(int=5)]


def gbl(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def suni(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def trace_of(data: bytes, policy, **kw) -> tuple[list, BaseException | None]:
    trace: list = []
    try:
        vm.loads(data, policy=policy, trace=trace, **kw)
    except SafePickleError as e:
        return trace, e
    return trace, None


def assert_scan_covers_trace(data: bytes, policy, **kw) -> safepickle.scan.ScanReport:
    """Every global the VM asks the policy for is a site of the scan, at the
    same offset (a dynamic site covers whatever its offset resolves)."""
    trace, _ = trace_of(data, policy, **kw)
    opts = {k: kw[k] for k in ("fix_imports", "encoding", "errors") if k in kw}
    report = scan(data, policy=policy, **opts)
    sites = [s for s in report.sites() if s.part == ""]
    for offset, module, name in trace:
        assert any(s.offset == offset and (s.module is None or (s.raw_module, s.raw_name) == (module, name))
                   for s in sites), (offset, module, name, [(s.offset, s.raw_module, s.raw_name) for s in sites])
    return report


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_plain_data_has_no_global_under_any_protocol_but_what_data_only_allows(proto):
    report = assert_scan_covers_trace(pickle.dumps(PLAIN, proto), "data-only")
    assert report.ok, report.violations
    assert report.format == "pickle"
    assert report.protocol == (proto if proto >= 2 else None)
    for g in report.globals:
        assert g.allowed


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_stdlib_values_refused_by_data_only_and_admitted_by_stdlib(proto):
    data = pickle.dumps(STDLIB, proto)
    refused = assert_scan_covers_trace(data, "data-only")
    assert not refused.ok
    names = {g.qualified for g in refused.globals if not g.allowed}
    assert "collections:OrderedDict" in names and "decimal:Decimal" in names
    for v in refused.violations:
        assert v.kind == "global" and v.offset is not None and data[v.offset:v.offset + 1] in (b"c", b"\x93", b"i")
    admitted = assert_scan_covers_trace(data, "stdlib")
    assert admitted.ok, admitted.violations
    assert safepickle.loads(data, policy="stdlib") == STDLIB


def test_global_offsets_and_uses():
    data = (b"\x80\x02" + gbl("collections", "OrderedDict") + b")R" + b"}b"
            + gbl("builtins", "set") + b"0" + b".")
    report = scan(data, policy="stdlib")
    od = next(g for g in report.globals if g.qualified == "collections:OrderedDict")
    assert od.offsets == [2]
    assert od.uses == {"called": [28], "built": [30]}
    s = next(g for g in report.globals if g.qualified == "builtins:set")
    assert s.uses == {"pushed": [31]}


def test_construct_use_through_newobj_and_reconstructor():
    class_data = pickle.dumps(collections.OrderedDict(a=1), 0)  # copyreg._reconstructor at protocol 0
    report = scan(class_data, policy="stdlib")
    uses = {g.qualified: g.uses for g in report.globals}
    assert "called" in uses["collections:OrderedDict"] or "constructed" in uses["collections:OrderedDict"]
    data = b"\x80\x04" + suni("collections") + suni("OrderedDict") + b"\x93)\x81."
    report = scan(data, policy="stdlib")
    assert report.globals[0].uses == {"constructed": [len(data) - 2]}


def test_py2_names_are_mapped_before_the_verdict():
    data = pickle.dumps({1, 2}, 0)  # CPython writes the py2 name __builtin__:set below protocol 3
    assert b"__builtin__" in data
    report = assert_scan_covers_trace(data, "data-only")
    assert [g.qualified for g in report.globals] == ["builtins:set"]
    site = report.globals[0].sites[0]
    assert (site.raw_module, site.raw_name) == ("__builtin__", "set")
    assert report.ok
    unmapped = scan(data, policy="data-only", fix_imports=False)
    assert not unmapped.ok


def test_stack_global_names_through_the_memo_are_known():
    # module and name memoized, fetched back with BINGET, then STACK_GLOBAL
    data = (b"\x80\x04" + suni("os") + b"\x94" + suni("system") + b"\x94" + b"0" + b"0"
            + b"h\x00h\x01\x93" + suni("true") + b"\x85R.")
    report = assert_scan_covers_trace(data, "data-only")
    assert not report.ok
    assert report.violations[0].name == "os:system"
    assert report.violations[0].rule.startswith("denylist:")


def test_dynamic_stack_global_is_a_violation():
    # the name comes out of a call: scan cannot know it
    data = (b"\x80\x04" + suni("builtins") + gbl("builtins", "str") + suni("set") + b"\x85R" + b"\x93).")
    report = assert_scan_covers_trace(data, "stdlib")
    kinds = [v.kind for v in report.violations]
    assert "dynamic-global" in kinds
    dyn = [s for s in report.sites() if s.module is None]
    assert dyn and dyn[0].raw_module == "builtins" and dyn[0].raw_name is None


def test_stack_global_of_known_non_strings_is_malformed():
    report = scan(b"\x80\x04K\x01K\x02\x93.")
    assert not report.ok
    assert report.violations[0].kind == "malformed"
    with pytest.raises(safepickle.MalformedPickle):
        safepickle.loads(b"\x80\x04K\x01K\x02\x93.")


def test_scan_reports_every_global_past_the_first_refusal():
    data = b"\x80\x02" + gbl("os", "system") + b"0" + gbl("subprocess", "Popen") + b"0" + gbl("builtins", "eval") + b"."
    report = scan(data)
    assert [v.name for v in report.violations] == ["os:system", "subprocess:Popen", "builtins:eval"]
    assert [v.offset for v in report.violations] == [2, 14, 33]


def test_extension_codes_and_persistent_ids():
    data = b"\x80\x02\x82\x07\x85."
    report = scan(data)
    assert not report.ok and report.violations[0].kind == "extension"
    assert report.extensions[0].code == 7
    pol = Policy.model_validate({"name": "ext", "extends": ["stdlib"], "extensions": {7: "collections:OrderedDict"}})
    report = assert_scan_covers_trace(data, pol)
    assert report.ok and report.globals[0].qualified == "collections:OrderedDict"
    assert report.extensions[0].name == "collections:OrderedDict"
    pdata = b"\x80\x02X\x03\x00\x00\x00abcQ."
    report = scan(pdata)
    assert not report.ok and report.violations[0].kind == "persistent-id"
    assert report.persistent_ids[0].pid == "'abc'"
    assert scan(pdata, policy=Policy.model_validate({"name": "p", "persistent_ids": True})).ok


def test_out_of_band_buffers_are_reported():
    np = pytest.importorskip("numpy")
    bufs: list = []
    data = pickle.dumps(np.arange(10), protocol=5, buffer_callback=bufs.append)
    report = scan(data, policy="numpy-only")
    assert report.ok
    assert len(report.buffers) == 1


@pytest.mark.parametrize("data, rule", [
    (b"", "truncated"),
    (b"\x80\x02K", "truncated"),
    (b"\x80\x02]a.", "stack-underflow"),
    (b"\x80\x02e.", "no-mark"),
    (b"\x80\x02h\x05.", "memo-missing"),
    (b"\x80\x07N.", "bad-argument"),
    (b"\xff", "unknown-opcode"),
    (b"\x80\x02(K\x01d.", "bad-stack"),
    (b"\x80\x02]}\x85(]K\x01d.", "bad-argument"),  # a list as dict key
])
def test_malformed_streams_are_not_ok(data, rule):
    report = scan(data)
    assert not report.ok
    assert any(v.kind == "malformed" and v.rule == rule for v in report.violations), report.violations
    with pytest.raises(safepickle.SafePickleError):
        safepickle.loads(data)


def test_declared_length_beyond_the_data_is_named():
    data = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"abc"
    report = scan(data)
    msgs = [v.message for v in report.violations]
    assert any("declared length 4611686018427387904" in m for m in msgs)
    assert any(v.kind == "limit" and v.rule == "limits.max_input_bytes" for v in report.violations)


def test_static_limits():
    pol = Policy.model_validate({"name": "small", "limits": {"max_depth": 5, "max_memo": 3, "max_container": 4,
                                                             "max_ops": 50}})
    # (alone: a MARK or a container is charged more than 10 bytes too, as the VM charges it)
    pol_alloc = Policy.model_validate({"name": "tiny-alloc", "limits": {"max_alloc_bytes": 10}})
    deep = b"\x80\x02" + b"(" * 6 + b"N" + b"1" * 6 + b"N."
    assert [v.rule for v in scan(deep, policy=pol).violations] == ["limits.max_depth"]
    memo = b"\x80\x02N" + b"q\x09" + b"."
    assert [v.rule for v in scan(memo, policy=pol).violations] == ["limits.max_memo"]
    big = b"\x80\x02(" + b"N" * 5 + b"t."
    assert [v.rule for v in scan(big, policy=pol).violations] == ["limits.max_container"]
    ops = b"\x80\x02" + b"N0" * 30 + b"N."
    assert [v.rule for v in scan(ops, policy=pol).violations] == ["limits.max_ops"]
    alloc = b"\x80\x02C\x0b" + b"x" * 11 + b"."
    assert [v.rule for v in scan(alloc, policy=pol_alloc).violations] == ["limits.max_alloc_bytes"]
    for data in (deep, memo, big, ops):
        with pytest.raises(safepickle.LimitExceeded):
            safepickle.loads(data, policy=pol)
    with pytest.raises(safepickle.LimitExceeded):
        safepickle.loads(alloc, policy=pol_alloc)


def test_deep_tuple_key_is_bounded_not_hashed():
    # a key made of tuples nested far deeper than max_depth: scan must not recurse into it
    data = b"\x80\x02}" + b")" + b"\x85" * 200_000 + b"Ns."
    report = scan(data)
    assert any(v.rule == "limits.max_depth" for v in report.violations)


def test_forbidden_uses_of_vm_built_objects():
    build_on_list = b"\x80\x02]}b."
    report = scan(build_on_list)
    assert [v.kind for v in report.violations] == ["use"]
    with pytest.raises(ForbiddenGlobal):
        safepickle.loads(build_on_list)
    call_a_string = b"\x80\x02X\x01\x00\x00\x00a)R."
    assert [v.rule for v in scan(call_a_string).violations] == ["call-target"]
    with pytest.raises(ForbiddenGlobal):
        safepickle.loads(call_a_string)


def test_trailing_and_several_pickles():
    data = pickle.dumps([1]) + pickle.dumps({"b": 2}) + b"junk that is not a pickle"
    report = scan(data)
    assert report.ok
    assert [p.part for p in report.pickles] == ["", "#2"]
    assert any("after the last STOP" in n for n in report.notes)
    # what a trailing stream names before it breaks still counts
    data = pickle.dumps([1]) + b"\x80\x02" + gbl("os", "system") + b"\xff"
    report = scan(data)
    assert not report.ok and report.violations[0].name == "os:system"


def test_unknown_format_is_scanned_as_a_raw_pickle_and_says_so():
    report = scan(b"hello, this is text\n")
    assert report.format == "unknown"
    assert not report.ok
    assert any("format not recognised" in n for n in report.notes)


def test_report_is_plain_json_data():
    import json

    report = scan(pickle.dumps(STDLIB, 2), policy="data-only")
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["ok"] is False and doc["globals"] and doc["violations"]
    assert {"kind", "part", "offset", "opcode", "rule", "global", "message"} <= set(doc["violations"][0])


def test_scan_never_imports_what_the_stream_names():
    code = ("import sys, safepickle, pickle\n"
            "data = b'\\x80\\x04\\x8c\\x0f__sp_scan_mod__\\x8c\\x03obj\\x93)R.'\n"
            "r = safepickle.scan(data, policy='stdlib')\n"
            "import numpy\n"
            "before = set(sys.modules)\n"
            "r2 = safepickle.scan(pickle.dumps(numpy.arange(3), 4) + data, policy='numpy-only')\n"
            "assert '__sp_scan_mod__' not in sys.modules\n"
            "assert set(sys.modules) == before, set(sys.modules) - before\n"
            "assert not r.ok and not r2.ok\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-500:]


# -- agreement with the VM ------------------------------------------------------


STATIC_RULES = ("not-allowed", "deny", "bad-name", "dotted-needs-proto-4", "extension", "persistent-id")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_scan_and_load_agree_on_the_hostile_corpus(case):
    policy = case.policy if isinstance(case.policy, str) else Policy.model_validate(case.policy)
    kw = dict(case.kwargs)
    report = assert_scan_covers_trace(case.data, policy, **kw)
    _, err = trace_of(case.data, policy, **kw)
    rule = (err.rule or "") if err is not None else ""
    static = rule in STATIC_RULES or rule.startswith("denylist:")
    if isinstance(err, ForbiddenGlobal) and static and err.module not in ("<extension>", "<persistent-id>"):
        verdict = coerce_policy(policy).runtime().check(err.module, err.name, 4, True)
        if not verdict.allowed:  # a static refusal: scan must refuse too
            assert not report.ok, case.name
    if isinstance(err, ForbiddenGlobal) and err.module in ("<extension>", "<persistent-id>"):
        assert not report.ok, case.name


def _fuzz_corpus() -> list[Path]:
    root = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size < 1 << 20) if root.is_dir() else []


@pytest.mark.skipif(not _fuzz_corpus(), reason="no fuzz corpus in this checkout")
@pytest.mark.parametrize("policy", ["data-only", "stdlib", "numpy-only"])
def test_scan_and_load_agree_on_the_fuzz_corpus(policy):
    files = _fuzz_corpus()
    for path in files:
        assert_scan_covers_trace(path.read_bytes(), policy)


def test_base_plus_offset_is_the_offset_in_the_file():
    """Every pickle's ``base`` says where its offsets start in the input: at
    ``base + site.offset`` the file holds the opcode that named the global,
    however deep the pickle sits; decompressed bytes have no base."""
    import gzip
    import io
    import tarfile
    import zipfile

    evil2 = b"\x80\x02cos\nsystem\nX\x01\x00\x00\x00x\x85R."
    evil4 = pickle.dumps(collections.OrderedDict(a=1), 4)  # STACK_GLOBAL
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w") as z:
        z.writestr("archive/data.pkl", evil2)
        z.writestr("archive/extra.pkl", evil4)
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", evil2)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        info = tarfile.TarInfo("pickle")
        info.size = len(evil2)
        t.addfile(info, io.BytesIO(evil2))
    inputs = {
        "plain": evil2,
        "in a row": evil4 + evil2,
        "stored zip": stored.getvalue(),
        "bytes value holding a pickle": pickle.dumps([b"x" * 40, evil2], 4),
        "zip appended to a pickle": pickle.dumps([1, 2], 2) + stored.getvalue(),
        "tar": tar.getvalue(),
    }
    for name, raw in inputs.items():
        report = scan(raw, policy="data-only")
        checked = 0
        for rep in report.pickles:
            for site in rep.sites:
                assert rep.base is not None, (name, rep.part)
                assert raw[rep.base + site.offset] in (0x63, 0x93), (name, rep.part, rep.base, site.offset)
                checked += 1
        assert checked, name
    for raw in (deflated.getvalue(), gzip.compress(evil2)):
        report = scan(raw, policy="data-only")
        assert [p.base for p in report.pickles if p.sites and p.primary] == [None]
