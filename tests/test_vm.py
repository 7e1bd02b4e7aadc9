"""The VM against CPython's pickle: equal values, same types, sharing, recursion,
and the refusals and limits of the core issue."""

from __future__ import annotations

import gc
import io
import pickle
import struct
import threading

import pytest

import safepickle
from safepickle import ForbiddenGlobal, LimitExceeded, MalformedPickle, Policy, SafePickleError
from tests.structural import same_structure
from tests.test_codec import SAMPLES

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def tight(**limits) -> Policy:
    return Policy.model_validate({"name": "tight", "extends": ["data-only"], "limits": limits})


def shared_and_recursive():
    inner = [1, "two", (3.0,)]
    rec: list = [inner, inner, {"k": inner}]
    rec.append(rec)
    d: dict = {"self": None, "t": (inner, inner)}
    d["self"] = d
    t_cycle: list = []
    t = (t_cycle, 5)
    t_cycle.append(t)
    s = "shared string"
    return [rec, d, t, [s, s, s], {1: inner, 2: (inner,)}, [b"x" * 10] * 3]


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_samples_equal_cpython(proto):
    for value in SAMPLES:
        data = pickle.dumps(value, proto)
        got = safepickle.loads(data)
        want = pickle.loads(data)
        assert same_structure(got, want), (proto, value)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_sharing_and_recursion(proto):
    for value in shared_and_recursive():
        data = pickle.dumps(value, proto)
        assert same_structure(safepickle.loads(data), pickle.loads(data)), (proto, value)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_bytes_like_inputs(proto):
    data = pickle.dumps({"a": [1, "b", b"c"]}, proto)
    for form in (data, bytearray(data), memoryview(data), memoryview(bytearray(data))):
        assert safepickle.loads(form) == {"a": [1, "b", b"c"]}


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_every_truncation_is_malformed(proto):
    data = pickle.dumps({"a": [1, 2.5, "xyz", b"q", (None, True)], "b": 2**70}, proto)
    for cut in range(len(data)):
        with pytest.raises(MalformedPickle) as info:
            safepickle.loads(data[:cut])
        assert info.value.offset is not None
        with pytest.raises(MalformedPickle):
            safepickle.load(io.BytesIO(data[:cut]))


class Trickle(io.RawIOBase):
    """A non-seekable stream that hands out at most 3 bytes a read."""

    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)
        self.requested = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        chunk = self._src.read(min(len(b), 3))
        b[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_load_consecutive_pickles(proto):
    values = [[1], {"b": 2}, "three", shared_and_recursive()[0]]
    blob = b"".join(pickle.dumps(v, proto) for v in values)
    for stream in (io.BytesIO(blob), io.BufferedReader(Trickle(blob)), Trickle(blob)):
        for v in values:
            assert same_structure(safepickle.load(stream), v)
        assert stream.read() == b""


def test_load_leaves_the_file_after_stop():
    blob = pickle.dumps([1, 2], 4) + b"TRAILER"
    f = io.BytesIO(blob)
    assert safepickle.load(f) == [1, 2]
    assert f.read() == b"TRAILER"


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked = 0

    def read(self, n=-1):
        self.asked += n if n and n > 0 else 0
        return super().read(n)


def test_huge_declared_length_costs_only_the_bytes_present():
    for opcode, width in ((b"\x8e", "<Q"), (b"\x8d", "<Q"), (b"\x96", "<Q"), (b"B", "<I"), (b"X", "<I")):
        data = b"\x80\x05" + opcode + struct.pack(width, (1 << 62) if width == "<Q" else 2**32 - 1) + b"abc"
        with pytest.raises((MalformedPickle, LimitExceeded)):
            safepickle.loads(data)
        f = CountingFile(data)
        with pytest.raises((MalformedPickle, LimitExceeded)):
            safepickle.load(f)
        assert f.asked < 1 << 20


def test_frame_longer_than_data():
    with pytest.raises(MalformedPickle):
        safepickle.loads(b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.")


def test_frame_straddle_is_refused():
    data = b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00NK\x01."
    with pytest.raises(MalformedPickle) as info:
        safepickle.loads(data)
    assert info.value.rule == "frame-straddle" and info.value.opcode == "BININT1"


def test_out_of_band_buffers():
    payload = bytearray(b"0123456789")
    bufs: list = []
    data = pickle.dumps([pickle.PickleBuffer(payload), 1], 5, buffer_callback=bufs.append)
    got = safepickle.loads(data, buffers=bufs)
    assert got[0] is bufs[0]
    with pytest.raises(MalformedPickle):
        safepickle.loads(data)
    with pytest.raises(MalformedPickle):
        safepickle.loads(data, buffers=[])
    ro = pickle.dumps(pickle.PickleBuffer(b"readonly"), 5, buffer_callback=bufs.append)
    got = safepickle.loads(ro, buffers=[pickle.PickleBuffer(bytearray(b"readonly"))])
    assert memoryview(got).readonly


def test_py2_strings_and_names():
    # protocol 2 as Python 2 wrote it: a str, a set via __builtin__
    data = b"\x80\x02U\x04caf\xe9q\x00c__builtin__\nset\n]K\x01a\x85R\x86."
    assert safepickle.loads(data, encoding="latin1") == ("café", {1})
    assert safepickle.loads(data, encoding="bytes") == (b"caf\xe9", {1})
    with pytest.raises(MalformedPickle):
        safepickle.loads(data)  # ASCII cannot decode \xe9
    with pytest.raises(ForbiddenGlobal):
        safepickle.loads(data, encoding="latin1", fix_imports=False)


def test_text_protocol_grammar():
    assert safepickle.loads(b"I01\n.") is True
    assert safepickle.loads(b"L12L\n.") == 12
    assert safepickle.loads(b"S'a\\x41'\n.", encoding="latin1") == "aA"
    with pytest.raises(MalformedPickle) as info:
        safepickle.loads(b"I010\n.")
    assert info.value.rule == "bad-argument" and info.value.offset == 0


@pytest.mark.parametrize("bad", [b"", b"\xff", b"\x80\x07.", b"(.", b"a.", b"h\x05.", b"}e.", b"0.", b"]0a.",
                                 b"(N1.", b"}(Nu.", b"N(}u.", b"K\x01K\x02\x86\x86.", b"\x93."])
def test_malformed_stack_shapes(bad):
    with pytest.raises(SafePickleError) as info:
        safepickle.loads(bad)
    assert not isinstance(info.value, safepickle.InternalError)


def test_pop_takes_a_mark_on_top():
    # MARK then POP removes the mark, as CPython does
    data = b"K\x01(0."
    assert safepickle.loads(data) == pickle.loads(data) == 1


class TestLimits:
    def test_depth(self):
        with pytest.raises(LimitExceeded) as info:
            safepickle.loads(b"\x80\x02" + b"(" * 1_000_000 + b"l" * 1_000_000 + b".")
        assert info.value.limit == "max_depth" and info.value.offset == 1002
        data = pickle.dumps([[[[[[1]]]]]], 2)
        assert safepickle.loads(data, policy=tight(max_depth=10)) == [[[[[[1]]]]]]

    def test_memo(self):
        with pytest.raises(LimitExceeded) as info:
            safepickle.loads(b"\x80\x02]r\xff\xff\xff\x7f.")
        assert info.value.limit == "max_memo"
        data = pickle.dumps([[i] for i in range(50)], 4)
        with pytest.raises(LimitExceeded):
            safepickle.loads(data, policy=tight(max_memo=10))

    def test_sparse_memo_costs_nothing(self):
        data = b"\x80\x02]r\x00\x00\xff\x00j\x00\x00\xff\x00\x86."
        got = safepickle.loads(data)
        assert same_structure(got, pickle.loads(data)) and got[0] is got[1]

    def test_ops(self):
        data = pickle.dumps(list(range(10_000)), 2)
        with pytest.raises(LimitExceeded) as info:
            safepickle.loads(data, policy=tight(max_ops=5000))
        assert info.value.limit == "max_ops"

    def test_container(self):
        data = pickle.dumps(list(range(2000)), 2)
        with pytest.raises(LimitExceeded) as info:
            safepickle.loads(data, policy=tight(max_container=1500))
        assert info.value.limit == "max_container"

    def test_alloc(self):
        data = pickle.dumps(["x" * 1000] * 1 + ["y" * 1000, "z" * 1000], 4)
        with pytest.raises(LimitExceeded) as info:
            safepickle.loads(data, policy=tight(max_alloc_bytes=2500))
        assert info.value.limit == "max_alloc_bytes"

    def test_input_size(self):
        data = pickle.dumps(list(range(1000)), 4)
        with pytest.raises(LimitExceeded) as info:
            safepickle.loads(data, policy=tight(max_input_bytes=100))
        assert info.value.limit == "max_input_bytes"
        with pytest.raises(LimitExceeded):
            safepickle.load(io.BytesIO(data), policy=tight(max_input_bytes=100))

    def test_hash_collisions_stop_at_the_time_limit(self):
        n = 60_000
        keys = b"".join(b"\x8a\x10" + (i * (2**61 - 1)).to_bytes(16, "little", signed=True) + b"N" for i in range(n))
        data = b"\x80\x04}(" + keys + b"u."
        with pytest.raises(LimitExceeded) as info:
            safepickle.loads(data, policy=tight(max_seconds=0.5))
        assert info.value.limit == "max_seconds"


class TestGC:
    def test_restored_after_success_and_errors(self):
        assert gc.isenabled()
        safepickle.loads(pickle.dumps([1, 2]))
        assert gc.isenabled()
        with pytest.raises(SafePickleError):
            safepickle.loads(b"\x80\x02(.")
        assert gc.isenabled()
        with pytest.raises(LimitExceeded):
            safepickle.loads(b"(" * 2000 + b".")
        assert gc.isenabled()

    def test_restored_after_keyboard_interrupt(self):
        class Boom:
            def read(self, n=-1):
                raise KeyboardInterrupt

            def seekable(self):
                return False

        with pytest.raises(KeyboardInterrupt):
            safepickle.load(Boom())
        assert gc.isenabled()

    def test_stays_disabled_if_it_was(self):
        gc.disable()
        try:
            safepickle.loads(pickle.dumps([1]))
            assert not gc.isenabled()
        finally:
            gc.enable()

    def test_threads(self):
        data = pickle.dumps([{"k": list(range(100))} for _ in range(2000)], 4)
        errors: list = []

        def work():
            try:
                for _ in range(20):
                    assert safepickle.loads(data)[0]["k"][5] == 5
                    with pytest.raises(SafePickleError):
                        safepickle.loads(data[:-5])
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert gc.isenabled()

    def test_gc_state_inside_a_load(self):
        probe_policy = Policy.model_validate(
            {"name": "probe", "extends": ["data-only"], "allow": ["tests.test_vm:GCProbe"]})
        data = pickle.dumps(GCProbe(), 2)
        GCProbe.seen.clear()
        safepickle.loads(data, policy=probe_policy)
        safepickle.loads(data, policy=probe_policy, pause_gc=False)
        assert GCProbe.seen == [False, True]
        assert gc.isenabled()


class GCProbe:
    seen: list = []

    def __getstate__(self):
        return {"x": 1}

    def __setstate__(self, state):
        GCProbe.seen.append(gc.isenabled())


def test_inst_names_are_ascii():
    data = b"(i\xc3\xa9\nx\n."
    with pytest.raises(MalformedPickle):
        safepickle.loads(data)
    with pytest.raises(Exception):  # noqa: B017 - CPython refuses it too (UnicodeDecodeError)
        pickle.loads(data)


def test_int_two_characters_worth_zero_or_one_are_bools():
    for text in (b"+0", b"-0", b"+1", b"00", b"01"):
        data = b"I" + text + b"\n."
        got = safepickle.loads(data)
        assert got == pickle.loads(data) and type(got) is bool


def test_readonly_buffer_only_on_buffers():
    # READONLY_BUFFER on a bytearray built in-band is fine (CPython makes a view)
    data = b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x98."
    assert bytes(safepickle.loads(data)) == b"ab"
    # on something that is no buffer it is malformed, as in CPython
    with pytest.raises(MalformedPickle):
        safepickle.loads(b"\x80\x05cbuiltins\nset\n)R\x98.")
    # on a buffer an allowed call built (a NumPy array) it is refused: a later
    # BUILD could free the memory under the view
    np = pytest.importorskip("numpy")
    data = pickle.dumps(np.arange(3), 5)
    with pytest.raises(ForbiddenGlobal) as info:
        safepickle.loads(data[:-1] + b"\x98.", policy="numpy-only")
    assert info.value.rule == "readonly-target"


def test_deeply_nested_tuples_are_refused_before_hashing():
    # a million nested 1-tuples as a dict key: CPython's tuple hash recurses in
    # C without a guard (pickle.loads crashes the process on this stream)
    data = b"\x80\x02}" + b")" + b"\x85" * 1_000_000 + b"Ns."
    with pytest.raises(LimitExceeded) as info:
        safepickle.loads(data)
    assert info.value.limit == "max_depth"
    deep = ()
    for _ in range(200):
        deep = (deep, 1)
    for proto in PROTOCOLS:
        got = safepickle.loads(pickle.dumps({deep: [deep]}, proto))
        assert same_structure(got, {deep: [deep]})


def test_tuple_depth_is_tracked_through_the_memo_and_marks():
    # TUPLE (mark) and memo references are measured too
    inner = (((1,),),)
    data = pickle.dumps([inner, (inner, inner)], 0)
    assert same_structure(safepickle.loads(data), [inner, (inner, inner)])
    with pytest.raises(LimitExceeded):
        safepickle.loads(b"\x80\x02)q\x000" + b"(h\x00tq\x000" * 20 + b"h\x00.", policy=tight(max_depth=10))
    data = b"\x80\x02)q\x000" + b"(h\x00tq\x000" * 9 + b"h\x00."
    assert safepickle.loads(data, policy=tight(max_depth=10)) == pickle.loads(data)


def test_containers_count_against_the_allocation_budget():
    # 1 byte of EMPTY_SET is a 216-byte set: a stream of them must hit max_alloc_bytes
    data = b"\x80\x04(" + b"\x8f" * 100_000 + b"l."
    with pytest.raises(LimitExceeded) as info:
        safepickle.loads(data, policy=tight(max_alloc_bytes=10_000_000))
    assert info.value.limit == "max_alloc_bytes"
    for opcode in (b"}", b"]"):
        with pytest.raises(LimitExceeded):
            safepickle.loads(b"\x80\x04(" + opcode * 200_000 + b"l.", policy=tight(max_alloc_bytes=10_000_000))
    # references pushed by NONE are counted at the periodic check
    with pytest.raises(LimitExceeded):
        safepickle.loads(b"\x80\x04" + b"N" * 2_000_000 + b".", policy=tight(max_alloc_bytes=10_000_000))
    # ordinary data stays far below the default budget
    value = [{"k": [1, 2, 3], "s": {1}} for _ in range(10_000)]
    assert safepickle.loads(pickle.dumps(value, 4)) == value


def test_gc_pause_keeps_the_applications_frozen_objects_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        safepickle.loads(pickle.dumps([{"a": [1]} for _ in range(1000)], 4))
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
    assert gc.isenabled()


def test_gc_pause_leaves_the_loaded_objects_in_the_oldest_generation():
    gc.collect()
    value = safepickle.loads(pickle.dumps([[i] for i in range(5000)], 4))
    assert gc.get_freeze_count() == 0
    young = gc.get_count()[0]
    assert young < 5000  # the 5001 lists were not left in generation 0
    assert len(value) == 5000
