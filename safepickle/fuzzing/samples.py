"""Sample values of the built-in policies' types, pickled at every protocol.

They seed the byte-level mutator (``fuzz/corpus/``) and give the grammar
generator *templates*: real opcode programs that call the globals a policy
allows with the arguments pickle writes, which it then mutates into hostile
arguments.  A sample is kept for a policy only when CPython's own unpickler,
with ``find_class`` restricted to that policy's allowlist, loads it (see
:func:`admitted`), so templates are the policy's data by the differential
oracle's own definition.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import io
import ipaddress
import pathlib
import pickle
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = ["Sample", "sample_values", "pickled_samples", "admitted"]


class Sample:
    """One pickled sample: its name, protocol, stream and out-of-band buffers."""

    __slots__ = ("name", "proto", "data", "buffers")

    def __init__(self, name: str, proto: int, data: bytes, buffers: tuple[bytes, ...] | None) -> None:
        self.name = name
        self.proto = proto
        self.data = data
        self.buffers = buffers


def _data_values() -> dict[str, Any]:
    shared = [1, "x"]
    rec_list: list = [0]
    rec_list.append(rec_list)
    rec_dict: dict = {}
    rec_dict["self"] = rec_dict
    return {
        "none": None,
        "bools": [True, False],
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**63, -(2**100)],
        "floats": [0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"), 5e-324, 1e308],
        "complex": complex(1.5, -2),
        "str": ["", "abc", "e\u0301\u20ac\U0001f600", "line\nbreak\\", "\udc80"],
        "long_str": "x" * 300,
        "bytes": [b"", b"\x00\xff", b"y" * 300],
        "bytearray": bytearray(b"\x00mutable"),
        "tuples": [(), (1,), (1, 2), (1, 2, 3), tuple(range(7))],
        "nested": [1, [2, [3, [4, {"k": (5,)}]]]],
        "dict": {"a": 1, 2: "b", (3, 4): [5], None: frozenset({6})},
        "sets": [set(), {1, 2, 3}, frozenset({"a", 1}), frozenset()],
        "shared": [shared, shared, (shared,)],
        "recursive_list": rec_list,
        "recursive_dict": rec_dict,
        "ellipsis": [Ellipsis, NotImplemented],
    }


def _stdlib_values() -> dict[str, Any]:
    tz = datetime.timezone(datetime.timedelta(hours=5, minutes=30), "IST")
    dd: collections.defaultdict = collections.defaultdict(list)
    dd["k"].append(1)
    return {
        "date": datetime.date(2024, 2, 29),
        "time": datetime.time(12, 30, 15, 500, tzinfo=datetime.UTC),
        "datetime": datetime.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=tz),
        "timedelta": datetime.timedelta(days=-3, seconds=7, microseconds=11),
        "decimal": [decimal.Decimal("1.50"), decimal.Decimal("-Infinity"), decimal.Decimal("NaN")],
        "fraction": fractions.Fraction(-7, 3),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "ordereddict": collections.OrderedDict([("b", 1), ("a", 2)]),
        "defaultdict": dd,
        "deque": collections.deque([1, 2, 3], maxlen=5),
        "counter": collections.Counter("abracadabra"),
        "purepaths": [pathlib.PurePosixPath("/a/b"), pathlib.PureWindowsPath(r"C:\x\y")],
        "ip": [ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv6Network("2001:db8::/32"),
               ipaddress.IPv4Interface("192.168.1.1/24"),
               # single-host and two-host networks keep a lambda / a bound method as ``hosts``
               ipaddress.IPv4Network("10.0.0.1/32"), ipaddress.IPv4Network("10.0.0.0/31"),
               ipaddress.IPv6Interface("::1/128")],
        "slice": slice(1, None, -2),
        "range": range(3, 30, 4),
    }


def _numpy_values() -> dict[str, Any]:
    try:
        import numpy as np
    except ImportError:
        return {}
    masked = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    return {
        "np_int": np.arange(6, dtype=np.int64).reshape(2, 3),
        "np_fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "np_bool": np.array([True, False, True]),
        "np_complex": np.array([1 + 2j, -3j], dtype=np.complex128),
        "np_object": np.array([1, "a", None], dtype=object),
        "np_structured": np.array([(1, 2.5), (3, -1.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        "np_datetime": np.array(["2024-01-01", "1970-01-01"], dtype="datetime64[D]"),
        "np_unicode": np.array(["ab", "\u20ac"], dtype="<U2"),
        "np_bytes": np.array([b"ab", b"c"], dtype="S2"),
        "np_scalars": [np.float64(1.5), np.int32(-7), np.bool_(True), np.complex64(1j)],
        "np_dtypes": [np.dtype("<f8"), np.dtype(">i2"), np.dtype([("x", "u1")])],
        "np_masked": masked,
        "np_zero_d": np.array(3.25),
        "np_empty": np.zeros((0, 4), dtype=np.uint8),
    }


def sample_values() -> dict[str, Any]:
    """Every sample value by name (NumPy ones only when NumPy is installed)."""
    return {**_data_values(), **_stdlib_values(), **_numpy_values()}


def pickled_samples(names: list[str] | None = None) -> Iterator[Sample]:
    """Each sample pickled at protocols 0-5; protocol 5 NumPy arrays also
    out-of-band (their buffers kept apart)."""
    values = sample_values()
    for name, value in values.items():
        if names is not None and name not in names:
            continue
        for proto in range(6):
            try:
                data = pickle.dumps(value, proto)
            except Exception:  # some values cannot be written at low protocols
                continue
            yield Sample(name, proto, data, None)
        if name.startswith("np_"):
            bufs: list = []
            try:
                data = pickle.dumps(value, 5, buffer_callback=bufs.append)
            except Exception:
                continue
            if bufs:
                yield Sample(name + "_oob", 5, data, tuple(bytes(b.raw()) for b in bufs))


class _Allowlisted(pickle.Unpickler):
    def __init__(self, data: bytes, runtime: Any, proto_of_call: list[int], **kw: Any) -> None:
        super().__init__(io.BytesIO(data), **kw)
        self._rt = runtime
        self._protos = proto_of_call
        self._calls = 0

    def find_class(self, module: str, name: str) -> Any:
        proto = self._protos[min(self._calls, len(self._protos) - 1)] if self._protos else 0
        self._calls += 1
        if not self._rt.check(module, name, proto, True).allowed:
            raise pickle.UnpicklingError(f"{module}:{name} not allowed")
        return super().find_class(module, name)


def admitted(sample: Sample, runtime: Any) -> bool:
    """Does CPython's unpickler, restricted to the policy's allowlist, load it?
    (Our own samples only: they are trusted bytes.)"""
    from .cpython_side import global_protocols

    try:
        protos = global_protocols(sample.data)
        kw: dict[str, Any] = {}
        if sample.buffers is not None:
            kw["buffers"] = [bytearray(b) for b in sample.buffers]
        _Allowlisted(sample.data, runtime, protos, **kw).load()
    except Exception:
        return False
    return True
