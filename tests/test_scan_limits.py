"""scan reports the max_alloc_bytes refusals a load makes, and its own
simulation stays within that limit.

The VM charges strings and bytes, containers (by their empty size and per
entry) and, every CHECK_EVERY opcodes, the references the stack and the memo
hold (``safepickle/vm/costs.py``); the scanner charges the same.  Each stream
below is loaded and scanned under policies whose limit falls before, at and
after the stream's cost: the two verdicts must agree at every one.
"""

from __future__ import annotations

import pickle
import struct

import pytest

import safepickle
from safepickle.errors import LimitExceeded, SafePickleError
from safepickle.policy import Policy
from safepickle.scan import scan
from safepickle.vm import costs


def _policy(max_alloc: int) -> Policy:
    return Policy.model_validate({"name": "alloc-probe", "extends": ["data-only"],
                                  "limits": {"max_alloc_bytes": max_alloc}})


def _streams() -> dict[str, bytes]:
    many_dicts = b"\x80\x04(" + b"}" * 300 + b"l."
    appends = b"\x80\x04](" + b"K\x01" * 500 + b"e."
    setitems = b"\x80\x04}(" + b"".join(b"M" + struct.pack("<H", i) + b"N" for i in range(300)) + b"u."
    nones = b"\x80\x04(" + b"N" * 20_000 + b"1N."  # POP_MARK: only references on the stack
    memo = b"\x80\x04N" + b"\x94" * 20_000 + b"."  # MEMOIZE: references in the memo
    return {
        "empty dicts in a list": many_dicts,
        "appends": appends,
        "setitems": setitems,
        "sets": b"\x80\x04(" + b"\x8f" * 100 + b"t.",
        "tuple": b"\x80\x04(" + b"N" * 3000 + b"t.",
        "stack references": nones,
        "memo references": memo,
        "strings": pickle.dumps(["x" * 100] * 1 + [str(i) * 50 for i in range(100)], 4),
        "real records": pickle.dumps([{"id": i, "tags": ["a", "b"], "v": (i, None)} for i in range(300)], 4),
        "real nested": pickle.dumps({"a": [{"b": {i}} for i in range(100)]}, 2),
    }


def _load_refuses_alloc(data: bytes, pol: Policy) -> bool:
    try:
        safepickle.loads(data, policy=pol)
    except LimitExceeded as e:
        return e.rule == "limits.max_alloc_bytes" or "max_alloc_bytes" in str(e.rule)
    except SafePickleError:
        return False
    return False


@pytest.mark.parametrize("name", sorted(_streams()))
def test_scan_reports_max_alloc_bytes_when_a_load_refuses_it(name):
    data = _streams()[name]
    verdicts = set()
    for limit in (100, 1000, 3000, 5000, 8000, 20_000, 40_000, 80_000, 160_000, 400_000, 10**7):
        pol = _policy(limit)
        refused = _load_refuses_alloc(data, pol)
        reported = any(v.rule == "limits.max_alloc_bytes" for v in scan(data, policy=pol).violations)
        assert refused == reported, (name, limit, refused, reported)
        verdicts.add(refused)
    assert verdicts == {True, False}, name  # the sweep crosses the stream's cost


def test_the_rule_name_of_the_load_refusal():
    """The helper above reads the VM's rule; make sure it is the one it expects."""
    with pytest.raises(LimitExceeded) as info:
        safepickle.loads(_streams()["tuple"], policy=_policy(1000))
    assert "max_alloc_bytes" in str(info.value.rule)


def test_a_stack_past_the_limit_stops_the_simulation():
    """Two million NONEs: the scanner's own stack would hold sixteen MB of
    references; past a 1 MB limit it reports the limit and stops, as a load
    stops, instead of simulating the rest."""
    n = 2_000_000
    data = b"\x80\x04(" + b"N" * n + b"1N."
    pol = _policy(1 << 20)
    report = scan(data, policy=pol)
    rep = report.pickles[0]
    assert [v.rule for v in report.violations] == ["limits.max_alloc_bytes"]
    assert rep.opcodes < (1 << 20) // costs.REF + 2 * costs.CHECK_EVERY
    assert rep.end is None  # never reached STOP
    with pytest.raises(LimitExceeded):
        safepickle.loads(data, policy=pol)


# -- containers: what a member declares, and how far decompression may grow ---------


def _deflated_zip(name: str, payload: bytes, declared: int | None = None) -> bytes:
    import io
    import zipfile

    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, payload)
    data = bytearray(bio.getvalue())
    if declared is not None:  # the central directory's uncompressed size (offset 24 of its record)
        cd = data.rindex(b"PK\x01\x02")
        struct.pack_into("<I", data, cd + 24, declared)
        struct.pack_into("<I", data, 22, declared)  # and the local header's
    return bytes(data)


def test_a_member_declaring_more_than_the_limit_is_not_inflated(monkeypatch):
    from safepickle.scan import zipread

    calls = []
    monkeypatch.setattr(zipread, "_inflate", lambda *a: calls.append(a) or bytearray())
    data = _deflated_zip("archive/data.pkl", pickle.dumps([1, 2, 3], 2), declared=3_000_000_000)
    report = scan(data)
    assert any(v.rule == "limits.max_input_bytes" and "archive/data.pkl" in v.part for v in report.violations)
    assert calls == []  # refused on what it declares, before anything was inflated


def _gzip_of_zeros(n: int) -> bytes:
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join([*(c.compress(block) for _ in range(n >> 20)), c.flush()])


def test_decompression_peaks_near_the_limit_not_at_twice_it():
    """200 MB of gzip'd zeros under a 64 MB limit: refused, and the memory
    taken on the way stays within the limit plus a few output steps (growing
    by whole decompressed pieces took twice the limit)."""
    import tracemalloc

    from safepickle.scan import formats, zipread

    limit = 64 << 20
    pol = Policy.model_validate({"name": "small-input", "extends": ["data-only"],
                                 "limits": {"max_input_bytes": limit}})
    data = _gzip_of_zeros(200 << 20)
    tracemalloc.start()
    try:
        report = scan(data, policy=pol)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert any(v.rule == "limits.max_input_bytes" for v in report.violations)
    assert peak < limit + 3 * zipread.OUTPUT_STEP, peak  # the bytearray grows in place, mostly
    small = _gzip_of_zeros(3 << 20)  # below the limit: whole, in several steps
    assert formats.decompress("gzip", small, 0, limit) == bytes(3 << 20)
