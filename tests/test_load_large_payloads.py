"""``load(file)`` reads a large BINBYTES, BINBYTES8 or BYTEARRAY8 payload
straight into the object it pushes, as ``pickle.load`` does, when the file is
seekable and holds the payload whole; everything else about the load is as
before: the same values and shared references, the same refusals with the
same offsets, the file left just after STOP, and a lying length costs only
the bytes present.
"""

from __future__ import annotations

import io
import pickle
import struct
import tracemalloc

import pytest

import safepickle
from safepickle.errors import ForbiddenGlobal, LimitExceeded, MalformedPickle
from safepickle.policy import Policy
from safepickle.vm.engine import LARGE_PAYLOAD

MB = 1 << 20


def _policy(**limits: int) -> Policy:
    return Policy.model_validate({"name": "probe", "extends": ["data-only"], "limits": limits})


class CountingFile(io.BytesIO):
    """A seekable file that counts the bytes handed out by read/readinto."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.handed = 0

    def read(self, n: int | None = -1) -> bytes:
        out = super().read(n)
        self.handed += len(out)
        return out

    def readinto(self, b) -> int:
        n = super().readinto(b)
        self.handed += n
        return n


class Pipe(io.RawIOBase):
    """A stream that is not seekable (a pipe, a socket)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return self._inner.readinto(b)


def _values():
    big = b"\x01\x02" * (LARGE_PAYLOAD + 7)
    return [
        (big, 4),  # BINBYTES (protocol 4 writes BINBYTES8 only from 4 GiB on)
        ([big, big, b"tail"], 4),  # shared reference through the memo
        ({"a": bytearray(big), "b": [1, 2]}, 5),  # BYTEARRAY8
        ((bytearray(3 * MB), "x" * 100, bytearray(LARGE_PAYLOAD - 1)), 5),
        ([b"s" * (LARGE_PAYLOAD + 1)] * 2, 3),
    ]


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("opener", ["file", "bytesio"])
def test_large_payloads_load_as_pickle_load_does(tmp_path, case, opener):
    value, proto = _values()[case]
    data = pickle.dumps(value, proto) + pickle.dumps("next", 2) + b"trailing"
    path = tmp_path / "x.pkl"
    path.write_bytes(data)
    f = open(path, "rb") if opener == "file" else io.BytesIO(data)  # noqa: SIM115
    with f:
        got = safepickle.load(f)
        assert safepickle.load(f) == "next"  # left just after the first STOP
        assert f.read() == b"trailing"
    want = pickle.loads(data)
    assert type(got) is type(want) and got == want
    if isinstance(want, list) and len(want) > 1 and want[0] is want[1]:
        assert got[0] is got[1]


def test_binbytes8_written_by_hand():
    payload = bytes(range(256)) * (LARGE_PAYLOAD // 256 + 1)
    data = b"\x80\x04\x8e" + struct.pack("<Q", len(payload)) + payload + b"\x94."
    got = safepickle.load(io.BytesIO(data + b"rest"))
    assert got == payload and type(got) is bytes


def test_a_non_seekable_stream_loads_the_same():
    value = {"a": bytearray(b"z" * (LARGE_PAYLOAD + 3)), "b": b"y" * (2 * MB)}
    data = pickle.dumps(value, 5)
    got = safepickle.load(io.BufferedReader(Pipe(data)))
    assert got == value and type(got["a"]) is bytearray


def test_errors_after_a_large_payload_keep_their_offsets():
    data = pickle.dumps([b"x" * (2 * MB)], 2)[:-1] + b"cos\nsystem\n."
    with pytest.raises(ForbiddenGlobal) as from_bytes:
        safepickle.loads(data)
    with pytest.raises(ForbiddenGlobal) as from_file:
        safepickle.load(io.BytesIO(data))
    assert from_file.value.offset == from_bytes.value.offset
    assert (from_file.value.rule, str(from_file.value)) == (from_bytes.value.rule, str(from_bytes.value))


def test_a_lying_length_costs_only_the_bytes_present():
    head = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40)  # BINBYTES8 declaring 1 TiB
    f = CountingFile(head + b"z" * 100)
    with pytest.raises(MalformedPickle) as info:
        safepickle.load(f, policy=_policy(max_input_bytes=1 << 62, max_alloc_bytes=1 << 62))
    assert info.value.rule == "truncated"
    assert f.handed <= len(head) + 100
    truncated = pickle.dumps(b"q" * (3 * MB), 4)[: 2 * MB]
    for policy in ("data-only", _policy(max_alloc_bytes=MB)):
        try:
            safepickle.loads(truncated, policy=policy)
        except MalformedPickle as e:
            want = (type(e), e.rule, e.offset)
        with pytest.raises(MalformedPickle) as info:
            safepickle.load(io.BytesIO(truncated), policy=policy)
        assert (type(info.value), info.value.rule, info.value.offset) == want


def test_limits_refuse_before_the_payload_is_read():
    data = pickle.dumps(b"w" * (8 * MB), 4)
    f = CountingFile(data)
    with pytest.raises(LimitExceeded) as info:
        safepickle.load(f, policy=_policy(max_alloc_bytes=4 * MB))
    assert "max_alloc_bytes" in str(info.value.rule)
    assert f.handed < 2 * MB  # the first buffer, not the 8 MB payload
    with pytest.raises(LimitExceeded) as info:
        safepickle.load(io.BytesIO(data), policy=_policy(max_input_bytes=4 * MB))
    assert "max_input_bytes" in str(info.value.rule)


def test_peak_memory_is_one_copy_of_the_payload(tmp_path):
    size = 48 * MB
    path = tmp_path / "big.pkl"
    path.write_bytes(pickle.dumps([bytearray(size), b"b" * size], 5))
    with open(path, "rb") as f:
        tracemalloc.start()
        try:
            value = safepickle.load(f)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(value[0]) == len(value[1]) == size
    assert peak < 2 * size + 8 * MB, peak  # the two payloads, once each (buffering first held each twice)
