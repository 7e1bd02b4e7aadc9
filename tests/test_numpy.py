"""Real NumPy 2 values through ``pickle.dumps``, loaded with the numpy-only policy.

Every value kind of the NumPy 1.x fixtures (plus a few layouts pickle copies:
views, 3-d Fortran arrays, a multi-frame array, readonly arrays) is written by
``pickle.dumps`` at protocols 2 to 5, in-band and out-of-band, and
``safepickle`` must give what ``pickle.loads`` gives for the same bytes: same
types, dtypes, shapes, layout, bitwise values, writeability, shared references
and, out-of-band, the same zero-copy views of the caller's buffers.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")

import safepickle  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _fixture_module() -> Any:
    spec = importlib.util.spec_from_file_location("make_numpy1_fixtures", FIXTURES / "make_numpy1_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIX = _fixture_module()


def _readonly(arr: Any) -> Any:
    arr.flags.writeable = False
    return arr


def _values() -> dict[str, Any]:
    values = FIX.expected_values()
    nested = np.empty(2, dtype=object)
    nested[0] = np.arange(3)
    nested[1] = np.ma.array([1, 2], mask=[True, False])
    values.update(
        {
            "view_noncontiguous": np.arange(20.0).reshape(4, 5)[:, ::2],
            "fortran_3d": np.asfortranarray(np.arange(24, dtype=np.int32).reshape(2, 3, 4)),
            "multi_frame": np.random.default_rng(0).standard_normal(200_000),
            "structured_big_endian": np.array([(1, 2.5), (-1, 0.0)], dtype=[("a", ">i4"), ("b", ">f8")]),
            "readonly": _readonly(np.arange(10.0)),
            "object_of_arrays": nested,
            "masked_nomask": np.ma.array([1, 2, 3]),
        }
    )
    return values


VALUES = _values()
NAMES = sorted(VALUES)


def _writeable_flags(value: Any) -> list[bool]:
    if isinstance(value, np.ndarray):
        return [bool(value.flags.writeable)]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _writeable_flags(v)]
    return []


def _arrays(value: Any) -> list[Any]:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _arrays(v)]
    return []


def _same_as_pickle(result: Any, reference: Any) -> None:
    FIX.assert_same_value(result, reference)
    assert _writeable_flags(result) == _writeable_flags(reference)


@pytest.mark.parametrize("proto", [2, 3, 4, 5])
@pytest.mark.parametrize("name", NAMES)
def test_in_band_matches_pickle(name: str, proto: int) -> None:
    data = pickle.dumps(VALUES[name], protocol=proto)
    reference = pickle.loads(data)
    _same_as_pickle(safepickle.loads(data, policy="numpy-only"), reference)
    _same_as_pickle(safepickle.load(io.BytesIO(data), policy="numpy-only"), reference)


@pytest.mark.parametrize("name", NAMES)
def test_out_of_band_matches_pickle(name: str) -> None:
    value = VALUES[name]
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    reference = pickle.loads(data, buffers=buffers)
    result = safepickle.loads(data, policy="numpy-only", buffers=buffers)
    _same_as_pickle(result, reference)
    # Zero copy exactly where pickle is zero copy: views of the caller's memory.
    for got, ref, orig in zip(_arrays(result), _arrays(reference), _arrays(value), strict=True):
        assert np.shares_memory(got, orig) == np.shares_memory(ref, orig)
    _same_as_pickle(safepickle.load(io.BytesIO(data), policy="numpy-only", buffers=buffers), reference)


def test_out_of_band_readonly_buffer() -> None:
    arr = _readonly(np.arange(12.0).reshape(3, 4))
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(arr, protocol=5, buffer_callback=buffers.append)
    assert "READONLY_BUFFER" in {op.name for op, _, _ in pickletools.genops(data)}
    result = safepickle.loads(data, policy="numpy-only", buffers=buffers)
    reference = pickle.loads(data, buffers=buffers)
    _same_as_pickle(result, reference)
    assert not result.flags.writeable
    assert np.shares_memory(result, arr)
    # A writeable buffer given for a readonly slot still yields a readonly array.
    copies = [bytearray(b.raw()) for b in buffers]
    again = safepickle.loads(data, policy="numpy-only", buffers=copies)
    assert not again.flags.writeable
    _same_as_pickle(again, pickle.loads(data, buffers=[bytearray(b.raw()) for b in buffers]))


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_out_of_band_buffers_given_as_bytes_or_bytearray(kind: type) -> None:
    arr = np.arange(6, dtype=np.int64).reshape(2, 3)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(arr, protocol=5, buffer_callback=buffers.append)
    ours = [kind(b.raw()) for b in buffers]
    result = safepickle.loads(data, policy="numpy-only", buffers=ours)
    reference = pickle.loads(data, buffers=[kind(b.raw()) for b in buffers])
    _same_as_pickle(result, reference)
    if kind is bytearray:
        ours[0][0:8] = (99).to_bytes(8, "little")  # the array is a view of our buffer
        assert result[0, 0] == 99


@pytest.mark.parametrize("proto", [2, 3, 4, 5])
def test_shared_and_repeated_arrays_keep_identity(proto: int) -> None:
    shared = np.arange(5)
    value = {"x": shared, "y": [shared, shared], "dt": shared.dtype, "dt2": shared.dtype}
    data = pickle.dumps(value, protocol=proto)
    result = safepickle.loads(data, policy="numpy-only")
    assert result["x"] is result["y"][0] is result["y"][1]
    reference = pickle.loads(data)
    assert (result["dt"] is result["dt2"]) == (reference["dt"] is reference["dt2"])
    FIX.assert_same_value(result, reference)


def test_out_of_band_stream_without_buffers_is_refused() -> None:
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(np.arange(3), protocol=5, buffer_callback=buffers.append)
    with pytest.raises(safepickle.MalformedPickle):
        safepickle.loads(data, policy="numpy-only")
