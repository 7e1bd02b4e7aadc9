"""The codec: one opcode table, shared readers, decoder and encoder."""

from __future__ import annotations

import pickle
import pickletools
import re
from pathlib import Path

import pytest

from safepickle.codec import BY_NAME, OPCODES, decode, encode
from safepickle.codec.readers import (
    BadArgument,
    parse_float_line,
    parse_int_line,
    parse_long_line,
    parse_memo_key_line,
    parse_string_line,
    parse_unicode_line,
)
from safepickle.errors import MalformedPickle


class Plain:
    def __init__(self) -> None:
        self.x = 1


SAMPLES = [
    None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -(2**31), 2**31 - 1, 2**31, 2**63, -(2**63) - 1, 2**1000,
    0.0, -0.0, 1.5, 1e300, float("inf"), -float("inf"), 1 / 3,
    "", "a", "héllo", "\\ \n \r \x00 \x1a \U0001f600 \ud800x", "x" * 300, "y" * 70000,
    b"", b"\x00\xff", b"z" * 300, bytearray(b"ab"), bytearray(),
    (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1, [2, [3]]], list(range(2500)),
    {}, {"a": 1, 2: "b", (1, 2): None}, {i: str(i) for i in range(2500)},
    set(), {1, 2, 3}, frozenset(), frozenset({"a"}), set(range(2500)),
    1 + 2j, Ellipsis, NotImplemented,
]


def _all_streams():
    for value in SAMPLES:
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            yield proto, value, pickle.dumps(value, proto)


def test_table_matches_pickletools():
    ours = {(op.code, op.name, op.proto) for op in OPCODES}
    theirs = {(ord(op.code), op.name, op.proto) for op in pickletools.opcodes}
    assert ours == theirs
    assert len(OPCODES) == 68


def test_engine_handles_exactly_the_table():
    source = (Path(__file__).parent.parent / "safepickle" / "vm" / "engine.py").read_text()
    handled = {int(h, 16) for h in re.findall(r"code == (0x[0-9A-Fa-f]{2})", source)}
    assert handled == {op.code for op in OPCODES}


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_roundtrip_every_protocol(proto):
    for value in [*SAMPLES, Plain()]:
        data = pickle.dumps(value, proto)
        assert encode(decode(data)) == data, (proto, value)


def test_decoder_agrees_with_pickletools():
    for _proto, _value, data in _all_streams():
        ours = [(op.offset, op.opcode.name) for op in decode(data)]
        theirs = [(pos, op.name) for op, _arg, pos in pickletools.genops(data)]
        assert ours == theirs


def test_decoder_arguments_are_values():
    ops = list(decode(pickle.dumps(["ab", 7, 2**70], 2)))
    args = [op.arg for op in ops if op.opcode.arg is not None]
    assert "ab" in args and 7 in args and 2**70 in args


def test_decoder_refuses_truncation_with_offset():
    data = pickle.dumps({"a": [1, 2, "xyz"]}, 4)
    for cut in range(len(data)):
        with pytest.raises(MalformedPickle) as info:
            list(decode(data[:cut]))
        assert info.value.offset is not None


def test_decoder_refuses_unknown_opcode():
    with pytest.raises(MalformedPickle) as info:
        list(decode(b"\x80\x04\xff."))
    assert info.value.offset == 2 and info.value.rule == "unknown-opcode"


def test_decoder_refuses_frame_straddle():
    # a 2-byte frame whose second opcode (a 2-byte BININT1) crosses its end
    data = b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00NK\x01."
    with pytest.raises(MalformedPickle) as info:
        list(decode(data))
    assert info.value.rule == "frame-straddle"


def test_encode_accepts_names_and_pairs():
    data = encode([("PROTO", 2), ("BININT1", 5), "STOP"])
    assert pickle.loads(data) == 5


class TestTextGrammar:
    def test_int_booleans_and_decimals(self):
        assert parse_int_line(b"00") is False
        assert parse_int_line(b"01") is True
        assert parse_int_line(b"-12") == -12
        assert parse_int_line(b"0") == 0
        # CPython: a 2-character line worth 0 or 1 is a bool
        assert parse_int_line(b"+0") is False and parse_int_line(b"-0") is False
        assert parse_int_line(b"+1") is True
        assert parse_int_line(b"-1") == -1 and type(parse_int_line(b"-1")) is int
        assert type(parse_int_line(b"10")) is int

    @pytest.mark.parametrize("bad", [b"010", b"0x10", b" 1", b"1 ", b"1_000", b"", b"+", b"1.0"])
    def test_int_refuses_other_spellings(self, bad):
        with pytest.raises(BadArgument):
            parse_int_line(bad)

    def test_long(self):
        assert parse_long_line(b"123L") == 123
        assert parse_long_line(b"-5") == -5
        with pytest.raises(BadArgument):
            parse_long_line(b"12LL")

    def test_long_beyond_int_max_str_digits(self):
        with pytest.raises(BadArgument):
            parse_long_line(b"9" * 10000)

    def test_memo_key(self):
        assert parse_memo_key_line(b"17") == 17
        for bad in (b"-1", b"a", b""):
            with pytest.raises(BadArgument):
                parse_memo_key_line(bad)

    def test_float(self):
        assert parse_float_line(b"1.5") == 1.5
        assert parse_float_line(b"-inf") == float("-inf")
        assert parse_float_line(b"1e-999") == 0.0
        for bad in (b"1e999", b"1_0.0", b" 1.0", b"0x1p3", b""):
            with pytest.raises(BadArgument):
                parse_float_line(bad)

    def test_string(self):
        assert parse_string_line(b"'a\\nb'") == b"a\nb"
        assert parse_string_line(b'"\\x41\\101"') == b"AA"
        for bad in (b"abc", b"'abc\"", b"'", b"'a\\q'", b"'a\\'"):
            with pytest.raises(BadArgument):
                parse_string_line(bad)

    def test_unicode(self):
        assert parse_unicode_line(b"a\\u00e9") == "aé"
        with pytest.raises(BadArgument):
            parse_unicode_line(b"\\u12")

    def test_cpython_writes_what_the_grammar_reads(self):
        for value in (0, 1, -7, True, False, 2**80, -(2**80), 1.25, -0.0, 1e300, "é\\\n"):
            data = pickle.dumps(value, 0)
            assert [op.opcode.name for op in decode(data)][-1] == "STOP"
            assert encode(decode(data)) == data


def test_shared_readers_are_the_table_readers():
    from safepickle.vm import engine

    assert engine._READ_INT is BY_NAME["INT"].arg.read
    assert engine._READ_PAIR is BY_NAME["GLOBAL"].arg.read
