"""Bugs the fuzz harness found, each as a minimized reproducer.

Each test states what the contract requires.  A test marked ``xfail`` (strict)
is a bug that is not fixed yet: fixing it makes the test pass, strict xfail
then fails the suite, and whoever fixed it removes the mark.  The streams are
written out by hand from the harness's minimized reproducers (the fuzz
artifacts named in each docstring), so they read as what they test.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import textwrap

import pytest

import safepickle
from safepickle import InternalError, SafePickleError

PROTO2 = b"\x80\x02"


def _survives(expr: str, data: bytes, policy: str = "data-only") -> subprocess.CompletedProcess:
    """Run ``expr`` (``loads``/``load``/``scan`` of ``data``) in a child: a
    crash must end the child, never the test run."""
    code = textwrap.dedent(f"""
        import io, sys
        import safepickle
        data = sys.stdin.buffer.read()
        try:
            {expr}
        except safepickle.SafePickleError as e:
            print("refused", type(e).__name__, e.offset, e.opcode)
        else:
            print("returned")
    """)
    return subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=300)


def _deep_tuple(depth: int) -> bytes:
    """EMPTY_TUPLE then TUPLE1 ``depth`` times: a tuple nested ``depth``
    deep in one byte per level, with no MARK (``max_depth`` never sees it)."""
    return b")" + b"\x85" * depth


# -- crash: hashing a deeply nested tuple overflows the C stack -----------------------
#
# fuzz: [exceptions/crash] "the process dies with SIGSEGV while loading this
# stream" (grammar generator, stdlib and numpy-only policies, seed 7).  A 200 KB
# stream builds a tuple nested 200,000 deep without a single MARK and uses it as
# a dict key (SETITEM) or a frozenset item (FROZENSET): ``hash()`` recurses in C
# once per level and the interpreter dies with SIGSEGV.  CPython's pickle.loads
# dies the same way; the contract wants a SafePickleError (LimitExceeded).
# Fixed in the VM (tuple nesting counted against max_depth); the memo variants
# nest through GET/PUT with a single level of MARK or none at all.

CRASHERS = {
    "dict-key": PROTO2 + b"}" + _deep_tuple(200_000) + b"Ns.",
    "frozenset-item": PROTO2 + b"(" + _deep_tuple(200_000) + b"\x91.",
    "set-item": b"\x80\x04\x8f(" + _deep_tuple(200_000) + b"\x90.",
    "memo-tuple1": PROTO2 + b"})q\x00" + b"h\x00\x85q\x00" * 200_000 + b"h\x00Ns.",
    "memo-mark-tuple": PROTO2 + b"})q\x00" + b"(h\x00tq\x00" * 200_000 + b"h\x00Ns.",
}


@pytest.mark.parametrize("name", sorted(CRASHERS))
@pytest.mark.parametrize("how", ["loads", "load"])
def test_deeply_nested_hashed_tuple_is_refused_not_a_crash(name, how):
    expr = ("safepickle.loads(data)" if how == "loads" else "safepickle.load(io.BytesIO(data))")
    proc = _survives(expr, CRASHERS[name])
    assert proc.returncode == 0, f"the child died with {proc.returncode}: {proc.stderr[-300:]!r}"
    assert proc.stdout.startswith(b"refused LimitExceeded"), proc.stdout


def test_moderately_nested_tuples_still_load():
    # the fix must not refuse what real data holds: 500 levels hash fine
    data = PROTO2 + b"}" + _deep_tuple(500) + b"Ns."
    (key,) = safepickle.loads(data).keys()
    depth = 0
    while key:
        (key,) = key
        depth += 1
    assert depth == 500


# -- InternalError: SETITEM(S) on an allowed object without __setitem__ -----------------
#
# fuzz: [exceptions/internal-error] at offset 66 (SETITEM): "loads: InternalError
# (cause AttributeError)" (bytes generator, stdlib, seed 7).  builtins:complex is
# allowed and called; SETITEM on its result reaches
# ``type(target).__setitem__`` in LoadContext.set_items, which raises
# AttributeError.  APPEND, ADDITEMS and BUILD on the same object are refused as
# MalformedPickle (rule bad-argument); SETITEM must be too.

COMPLEX = PROTO2 + b"cbuiltins\ncomplex\n)R"


@pytest.mark.parametrize("tail", [b"K\x01K\x02s.", b"(K\x01K\x02u."], ids=["SETITEM", "SETITEMS"])
def test_setitem_on_object_without_setitem_is_malformed(tail):
    data = COMPLEX + tail
    for load in (lambda: safepickle.loads(data), lambda: safepickle.load(io.BytesIO(data))):
        with pytest.raises(SafePickleError) as info:
            load()
        assert not isinstance(info.value, InternalError), info.value
        assert info.value.offset == len(COMPLEX) + len(tail) - 2


@pytest.mark.parametrize("tail", [b"K\x01a.", b"(K\x01e.", b"(K\x01\x90.", b"}b."],
                         ids=["APPEND", "APPENDS", "ADDITEMS", "BUILD"])
def test_other_uses_of_the_same_object_are_malformed(tail):
    with pytest.raises(safepickle.MalformedPickle):
        safepickle.loads(COMPLEX + tail)


# -- scan raises RecursionError on a deeply nested APPEND target -----------------------
#
# fuzz: [scan/scan-raised] "safepickle.scan raised RecursionError" (grammar
# generator, data-only, seed 7).  scan describes the target of a refused use
# (APPEND on a tuple) recursively (scan/values.py ``describe``); a tuple nested
# 500 deep is enough.  The contract: scan never raises for any bytes.

@pytest.mark.parametrize("depth", [500, 10_000])
def test_scan_of_deeply_nested_use_target_does_not_raise(depth):
    data = _deep_tuple(depth) + b"Na."
    report = safepickle.scan(data)
    assert not report.ok
    with pytest.raises(SafePickleError):  # APPEND on a tuple, or the nesting limit
        safepickle.loads(data)


# -- READONLY_BUFFER twice on an out-of-band buffer --------------------------------------
#
# fuzz: [differential/refused-what-cpython-loads] at offset 23 (READONLY_BUFFER)
# (bytes generator, stdlib, seed 1).  The first READONLY_BUFFER turns the
# out-of-band bytearray into a read-only memoryview; the second is refused
# (rule readonly-target) because that view is not registered as out-of-band
# data, although the VM made it itself and no allowed call touched it.
# CPython returns the read-only view; so should we (a no-op, like CPython's).

def test_readonly_buffer_twice_is_a_no_op():
    import pickle

    data = b"\x80\x05\x97\x98\x98."
    expected = pickle.loads(data, buffers=[bytearray(b"ab")])
    got = safepickle.loads(data, buffers=[bytearray(b"ab")])
    assert type(got) is type(expected) is memoryview
    assert got.readonly and got.tobytes() == b"ab"


# -- numpy-only: a dtype string from the stream is compiled ----------------------------------
#
# fuzz: [audit/event-code] "loads: dangerous audit event compile ((b'2',
# '<unknown>'))" (grammar generator, numpy-only, seed 1).  numpy:dtype is
# allowed; a spec string with a repeat count or shape ("2", "(2,3)i4") makes
# NumPy's comma-string parser call ast.literal_eval, i.e. compile(), on text
# from the stream -- in the dtype guard (policy/guards.py ``_dtype_arg``) and
# again in the call.  NumPy's regex only lets digit tuples through, so nothing
# runs today, but stream text reaching compile() is what the audit oracle
# exists to catch: the guard should refuse comma-string specs (or parse them
# itself) so that no load ever compiles.

@pytest.mark.parametrize("spec", [b"2", b"(2,3)i4", b"3f8"])
def test_numpy_dtype_spec_is_never_compiled(spec):
    pytest.importorskip("numpy")
    from safepickle.audit import AuditRecorder

    data = b"cnumpy\ndtype\n(V" + spec + b"\nI0\nI1\ntR."
    with AuditRecorder(allowed_modules={"numpy"}) as rec, contextlib.suppress(SafePickleError):
        safepickle.loads(data, policy="numpy-only")
    assert not rec.events, rec.format()


# -- load() from a stream counts re-run opcodes against max_ops ---------------------------
#
# fuzz: [differential/load-vs-loads] "loads loaded but load(pipe) refused
# (LimitExceeded: limit max_ops exceeded: 301 > 300 (at offset 300, opcode
# STOP))" (bytes generator, numpy-only under the tight limits, seed 1).  When an
# opcode runs past the bytes read so far, the VM fetches more and runs the
# opcode again; the second run is counted again.  A non-seekable stream is read
# as the VM asks, so nearly every opcode is counted twice and load() refuses at
# about half of max_ops what loads() accepts.

class _Pipe:
    """A non-seekable binary stream (a socket, a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)

    def readline(self, n: int = -1) -> bytes:
        return self._buf.readline(n)


def test_max_ops_counts_each_opcode_once_when_loading_from_a_stream():
    policy = safepickle.Policy.model_validate(
        {"name": "ops-300", "extends": ["data-only"], "limits": {"max_ops": 300}})
    data = PROTO2 + b"]" + b"K\x01a" * 148 + b"."  # 299 opcodes
    assert len(safepickle.loads(data, policy=policy)) == 148
    assert len(safepickle.load(io.BytesIO(data), policy=policy)) == 148
    assert len(safepickle.load(_Pipe(data), policy=policy)) == 148


# -- differential: a __setstate__ stored on the instance by an earlier BUILD -------------
#
# fuzz: [differential/refused-what-cpython-loads] (bytes generator, stdlib, seed
# 12, from the corpus seed hostile-build-setstate-hijack-p4).  A first BUILD puts
# {"__setstate__": bytearray} in an OrderedDict's __dict__; a second BUILD with
# an int state makes pickle call bytearray(int) (an 8 MB allocation here: any
# allowed callable could be called this way).  The VM looks __setstate__ up on
# the type only, so it refused with "BUILD state is not a dictionary": the
# right outcome under a misleading rule.  It now says what it refuses, under
# the semantic rule build-setstate, whatever the second state is.

_HIJACK = (b"\x8c\x0bcollections\x8c\x0bOrderedDict\x93(tR"  # OrderedDict()
           b"}\x8c\x0c__setstate__\x8c\x08builtins\x8c\x09bytearray\x93sb")  # BUILD {"__setstate__": bytearray}


@pytest.mark.parametrize("state", [b"\x8a\x06\x00\xff\x7f\x00\x00\x00", b"}", b"N"], ids=["int", "dict", "None"])
def test_a_setstate_stored_on_the_instance_is_never_called(state):
    data = b"\x80\x04" + _HIJACK + state + b"b."
    with pytest.raises(safepickle.ForbiddenGlobal) as info:
        safepickle.loads(data, policy="stdlib")
    assert info.value.rule == "build-setstate" and info.value.opcode == "BUILD"
    assert "__setstate__" in str(info.value)
    # one BUILD storing the attribute is loaded as pickle loads it
    once = safepickle.loads(b"\x80\x04" + _HIJACK + b".", policy="stdlib")
    assert once.__dict__ == {"__setstate__": bytearray}
