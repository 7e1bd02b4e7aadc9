"""The oracles have teeth: plant a defect in the VM, fuzz, and the harness must
find it within a bounded budget, write a minimized reproducer and a report,
and ``replay`` must reproduce it while the defect is in place and pass once
it is gone.

The defects are planted by wrapping the real VM from the outside (never by
editing it).  A plant is a function that takes a ``setattr``-like callable:
the fuzzing child process calls it with the default (``--setup``, so the
plant lives as long as that process), the test process with
``monkeypatch.setattr`` (undone after the test).  The fuzz runs are isolated
in child processes, like CI's, so a stream that crashes the interpreter ends
a child, not pytest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safepickle.codec import decode
from safepickle.errors import MalformedPickle
from safepickle.fuzzing.replay import replay
from safepickle.fuzzing.runner import FuzzConfig, run
from safepickle.vm import actions

HERE = "tests.test_fuzz_teeth"


def _plant_forbidden_global(patch=setattr) -> None:
    """VM variant: GLOBAL/STACK_GLOBAL hand over ``builtins:eval`` without
    asking the policy (the name is still traced, as the real VM does)."""
    original = actions.LoadContext.find_global

    def find_global(self, module, name, offset):
        if (module, name) == ("builtins", "eval"):
            if self.trace is not None:
                self.trace.append((offset, module, name))
            return eval
        return original(self, module, name, offset)

    patch(actions.LoadContext, "find_global", find_global)


def _plant_internal_index_error(patch=setattr) -> None:
    """VM variant: the py2 string opcodes (STRING, BINSTRING, SHORT_BINSTRING)
    raise a bare IndexError inside the VM."""

    def py2_string(self, raw):
        raise IndexError("planted: py2 string index out of range")

    patch(actions.LoadContext, "py2_string", py2_string)


def _ops(data: bytes) -> list[str]:
    names = []
    try:
        for op in decode(data):
            names.append(op.opcode.name)
    except MalformedPickle:
        pass
    return names


def _plant_escaping_index_error(patch=setattr) -> None:
    """VM variant: ``loads``/``load`` let a bare IndexError escape for any
    stream with a TUPLE2 opcode (as if the VM's catch-all were missing)."""
    import io

    import safepickle.vm as vm

    loads, load = vm.loads, vm.load

    def bad_loads(data, /, **kw):
        if "TUPLE2" in _ops(bytes(data)):
            raise IndexError("planted: TUPLE2 on a short stack")
        return loads(data, **kw)

    def bad_load(file, /, **kw):
        data = file.read()
        if "TUPLE2" in _ops(data):
            raise IndexError("planted: TUPLE2 on a short stack")
        return load(io.BytesIO(data), **kw)

    patch(vm, "loads", bad_loads)
    patch(vm, "load", bad_load)


# the --setup hooks of the fuzzing children
def plant_forbidden_global() -> None:
    _plant_forbidden_global()


def plant_internal_index_error() -> None:
    _plant_internal_index_error()


def plant_escaping_index_error() -> None:
    _plant_escaping_index_error()


def _fuzz(tmp_path: Path, setup: str, examples: int, generator: str = "grammar", seed: int = 11) -> list[dict]:
    cfg = FuzzConfig(policies=["data-only"], generators=[generator], examples=examples, seed=seed,
                     artifacts=str(tmp_path / "artifacts"), setup=f"{HERE}:{setup}", minimize_seconds=8,
                     isolate=True)
    result = run(cfg)
    assert result.exit_code == 1
    return result.findings


def _report(finding: dict) -> tuple[dict, bytes]:
    path = Path(finding["report"])
    report = json.loads(path.read_text())
    data = (path.parent / report["reproducer"]).read_bytes()
    assert data == bytes.fromhex(report["case"]["data_hex"])
    assert report["minimized_size"] <= report["original_size"]
    return report, data


def test_finds_a_forbidden_global_let_through(tmp_path, monkeypatch, capsys):
    findings = _fuzz(tmp_path, "plant_forbidden_global", examples=600, seed=1)
    caught = [f for f in findings if tuple(f["signature"][:2]) in {
        ("scan", "passed-refused-global"), ("audit", "forbidden-object"),
        ("differential", "loaded-what-cpython-refuses")}]
    assert caught, [f["summary"] for f in findings]
    report, data = _report(caught[0])
    assert b"eval" in data
    assert report["policy"]["builtin"] == "data-only"
    # the reproducer fails while the defect is planted, and passes on the real VM
    with monkeypatch.context() as m:
        _plant_forbidden_global(m.setattr)
        assert replay(caught[0]["report"]) == 1
    assert replay(caught[0]["report"]) == 0
    capsys.readouterr()


def test_finds_a_bare_index_error_inside_the_vm(tmp_path, monkeypatch, capsys):
    findings = _fuzz(tmp_path, "plant_internal_index_error", examples=150)
    caught = [f for f in findings if f["signature"][:2] == ["exceptions", "internal-error"]]
    assert caught, [f["summary"] for f in findings]
    report, data = _report(caught[0])
    assert "IndexError" in json.dumps(report["finding"]["detail"])
    assert set(_ops(data)) & {"STRING", "BINSTRING", "SHORT_BINSTRING"}
    assert len(data) < 40, data  # minimized to little more than the string opcode
    with monkeypatch.context() as m:
        _plant_internal_index_error(m.setattr)
        assert replay(caught[0]["report"]) == 1
    assert replay(caught[0]["report"]) == 0
    capsys.readouterr()


def test_finds_a_bare_index_error_escaping_loads(tmp_path, monkeypatch, capsys):
    findings = _fuzz(tmp_path, "plant_escaping_index_error", examples=150, generator="bytes")
    caught = [f for f in findings if f["signature"] == ["exceptions", "escaped", "IndexError"]]
    assert caught, [f["summary"] for f in findings]
    report, data = _report(caught[0])
    assert "TUPLE2" in _ops(data)
    assert "IndexError: planted" in report["finding"]["exception"]
    with monkeypatch.context() as m:
        _plant_escaping_index_error(m.setattr)
        assert replay(caught[0]["report"]) == 1
    assert replay(caught[0]["report"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("plant", [_plant_forbidden_global, _plant_internal_index_error])
def test_plants_can_be_undone(monkeypatch, plant):
    before = dict(vars(actions.LoadContext))
    with monkeypatch.context() as m:
        plant(m.setattr)
        assert dict(vars(actions.LoadContext)) != before
    assert dict(vars(actions.LoadContext)) == before
