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
