"""Pickles written by NumPy 1.26 load under NumPy 2 with the numpy-only policy.

The fixtures in ``tests/fixtures/numpy1/`` were written by
``tests/fixtures/make_numpy1_fixtures.py`` under NumPy 1.26.4 (see its
docstring and ``MANIFEST.json``).  Each one must load with
``safepickle.loads(data, policy="numpy-only")`` (and ``load``) into the same
value NumPy 2 builds today, and into what ``pickle.loads`` gives for the same
bytes, without a DeprecationWarning: NumPy 1.x names ``numpy.core.*``, which
NumPy 2 renamed ``numpy._core.*``, and the policy maps the old names.
"""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")

import safepickle  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NUMPY1 = FIXTURES / "numpy1"


def _fixture_module() -> Any:
    spec = importlib.util.spec_from_file_location("make_numpy1_fixtures", FIXTURES / "make_numpy1_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIX = _fixture_module()
MANIFEST = json.loads((NUMPY1 / "MANIFEST.json").read_text())
EXPECTED = FIX.expected_values()


def _variants() -> list[tuple[str, str, int]]:
    out = []
    for name, entry in sorted(MANIFEST["values"].items()):
        out += [(name, f"p{p}", 0) for p in entry["protocols"]]
        if entry["oob_buffers"]:
            out.append((name, "p5oob", entry["oob_buffers"]))
    return out


VARIANTS = _variants()


def _read(name: str, variant: str, nbuf: int) -> tuple[bytes, list[bytes] | None]:
    data = (NUMPY1 / f"{name}.{variant}.pkl").read_bytes()
    buffers = [(NUMPY1 / f"{name}.{variant}.{i}.bin").read_bytes() for i in range(nbuf)]
    return data, buffers or None


def _load_quietly(loader: Any) -> Any:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = loader()
    deprecations = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert not deprecations, deprecations
    return result


def _writeable_flags(value: Any) -> list[bool]:
    if isinstance(value, np.ndarray):
        return [bool(value.flags.writeable)]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _writeable_flags(v)]
    return []


def test_manifest_matches_the_files_and_the_values() -> None:
    assert MANIFEST["numpy"].startswith("1.")
    assert set(MANIFEST["values"]) == set(EXPECTED)
    on_disk = {p.name for p in NUMPY1.glob("*.pkl")} | {p.name for p in NUMPY1.glob("*.bin")}
    listed = {f"{n}.{v}.pkl" for n, v, _ in VARIANTS}
    listed |= {f"{n}.{v}.{i}.bin" for n, v, k in VARIANTS for i in range(k)}
    assert on_disk == listed


def test_fixtures_cover_the_required_kinds() -> None:
    arrays = [v for v in EXPECTED.values() if isinstance(v, np.ndarray)]
    dtype_kinds = {a.dtype.kind for a in arrays}
    assert {"f", "i", "u", "b", "c", "O", "V", "M", "m", "U", "S"} <= dtype_kinds
    assert any(a.flags.f_contiguous and not a.flags.c_contiguous for a in arrays)
    assert any(a.ndim == 0 for a in arrays) and any(a.size == 0 for a in arrays)
    assert any(isinstance(v, np.ma.MaskedArray) for v in arrays)
    assert any(isinstance(v, np.generic) for v in EXPECTED.values())
    assert any(isinstance(v, np.dtype) for v in EXPECTED.values())
    assert any(variant == "p5oob" for _, variant, _ in VARIANTS)


@pytest.mark.parametrize(("name", "variant", "nbuf"), VARIANTS, ids=[f"{n}.{v}" for n, v, _ in VARIANTS])
def test_numpy1_fixture_loads_under_numpy_only(name: str, variant: str, nbuf: int) -> None:
    data, buffers = _read(name, variant, nbuf)
    result = _load_quietly(lambda: safepickle.loads(data, policy="numpy-only", buffers=buffers))
    FIX.assert_same_value(result, EXPECTED[name])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # stdlib pickle warns on numpy.core
        reference = pickle.loads(data, buffers=buffers)
    FIX.assert_same_value(result, reference)
    assert _writeable_flags(result) == _writeable_flags(reference)
    if name == "container":
        assert result["a"] is result["b"]

    from_file = _load_quietly(lambda: safepickle.load(io.BytesIO(data), policy="numpy-only", buffers=buffers))
    FIX.assert_same_value(from_file, EXPECTED[name])


def test_numpy1_fixtures_are_refused_by_data_only() -> None:
    data, _ = _read("float64_c", "p2", 0)
    with pytest.raises(safepickle.ForbiddenGlobal) as info:
        safepickle.loads(data, policy="data-only")
    assert info.value.module.startswith("numpy")
