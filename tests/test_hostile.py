"""Every stream of the hostile corpus is refused, with the right error, and runs nothing.

Each case goes through ``safepickle.loads`` and ``safepickle.load(io.BytesIO)``
under an :class:`~safepickle.audit.AuditRecorder`.  A case passes when, on both
paths: the error is the expected :class:`SafePickleError` subclass (nothing else
escapes), it carries the offset and opcode and its message names them, the
opcode/limit/global are the ones the case names, both paths agree, no
dangerous audit event was raised and no module outside the allowed set was
imported.
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import json
import pickle
import pickletools
import sys
from typing import Any

import pytest

import safepickle
from safepickle import ForbiddenGlobal, LimitExceeded, SafePickleError
from safepickle.audit import AuditRecorder

try:
    from hostile_corpus import CASES, HostileCase
except ImportError:  # tests/ imported as a package
    from tests.hostile_corpus import CASES, HostileCase

GLOBAL_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST"}
# Refusing at one of these means refusing the name itself: nothing may be imported.
NAME_OPCODES = GLOBAL_OPCODES | {"EXT1", "EXT2", "EXT4"}
_POLICIES: dict[str, Any] = {}


def _warm_up_values(base: str) -> list[Any]:
    """Legitimate values of a built-in policy, loaded once before any case so that
    the modules it allows are imported and resolved outside the recorders."""
    if base == "numpy-only":
        import numpy as np

        return [np.ma.array([1.0, 2.0], mask=[False, True]), np.arange(3), np.float64(1.5), np.dtype("U3")]
    if base == "stdlib":
        import collections
        import datetime
        import decimal
        import fractions

        return [collections.OrderedDict(a=1), collections.Counter("ab"), collections.deque([1]),
                fractions.Fraction(1, 3), decimal.Decimal("1.5"), datetime.date(2020, 1, 1)]
    return [{"a": [1, 2.5, b"x", (None, True)]}, {1, 2}, frozenset({3}), bytearray(b"ab"), 1j]


def _policy(case: HostileCase) -> Any:
    """The case's policy as a Policy object, built and warmed up outside any recorder."""
    key = case.policy if isinstance(case.policy, str) else json.dumps(case.policy, sort_keys=True)
    if key not in _POLICIES:
        if isinstance(case.policy, str):
            pol, base = safepickle.load_policy(case.policy), case.policy
        else:
            pol, base = safepickle.Policy.model_validate(case.policy), case.policy["extends"][0]
        # First use reads policy files, imports allowed modules, fills caches: not part of any case.
        for value in _warm_up_values(base):
            for proto in (2, 5):
                # A tight test policy may refuse its base's values; the rest is warm anyway.
                with contextlib.suppress(SafePickleError):
                    safepickle.loads(pickle.dumps(value, protocol=proto), policy=pol)
        assert safepickle.loads(b"\x80\x04K\x01.", policy=pol) == 1
        _POLICIES[key] = pol
    return _POLICIES[key]


def _allowed_roots(case: HostileCase) -> frozenset[str]:
    """Modules the load may import: the reached global's package, when the
    case is refused later than at the global itself (the global is allowed)."""
    if case.reaches is None or case.at is None or case.at in NAME_OPCODES:
        return frozenset()
    return frozenset({case.reaches[0].split(".")[0]})


def _in_tree(name: str, roots: frozenset[str]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def _run(case: HostileCase, pol: Any, via: str) -> tuple[BaseException | None, AuditRecorder, set[str]]:
    kwargs = dict(case.kwargs)
    if "buffers" in kwargs:
        kwargs["buffers"] = list(kwargs["buffers"])
    roots = _allowed_roots(case)
    before = set(sys.modules)
    err: BaseException | None = None
    with AuditRecorder(allowed_modules=roots) as rec:
        try:
            if via == "loads":
                safepickle.loads(case.data, policy=pol, **kwargs)
            else:
                safepickle.load(io.BytesIO(case.data), policy=pol, **kwargs)
        except Exception as exc:  # anything: what escaped is checked below
            err = exc
    new_modules = {m for m in set(sys.modules) - before if not _in_tree(m, roots)}
    return err, rec, new_modules


def _problems(case: HostileCase, pol: Any, via: str, err: BaseException | None) -> list[str]:
    where = f"{case.name} via {via}"
    if err is None:
        return [f"{where}: loaded without any error"]
    if not isinstance(err, SafePickleError):
        return [f"{where}: {type(err).__name__} escaped: {err!r}"]
    out = []
    if not isinstance(err, case.expect):
        out.append(f"{where}: expected {case.expect.__name__}, got {type(err).__name__}: {err}")
    msg = str(err)
    # A message may echo the input, never amplify it (no rendering of attacker objects).
    if len(msg) > 1024 + 4 * len(case.data):
        out.append(f"{where}: a {len(msg)}-character message for a {len(case.data)}-byte input: {msg[:300]}")
    if err.offset is None:
        out.append(f"{where}: no offset: {msg}")
    elif not 0 <= err.offset <= len(case.data) or str(err.offset) not in msg:
        out.append(f"{where}: offset {err.offset} out of the input or not in the message: {msg}")
    if case.needs_opcode and (not err.opcode or err.opcode not in msg):
        out.append(f"{where}: opcode {err.opcode!r} missing or not in the message: {msg}")
    if case.at is not None and err.opcode != case.at:
        out.append(f"{where}: refused at {err.opcode} (offset {err.offset}), expected at {case.at}: {msg}")
    if case.limit is not None and getattr(err, "limit", None) != case.limit:
        out.append(f"{where}: limit {getattr(err, 'limit', None)!r}, expected {case.limit!r}: {msg}")
    if isinstance(err, ForbiddenGlobal):
        if pol.name not in msg:
            out.append(f"{where}: policy name {pol.name!r} not in the message: {msg}")
        named = f"{err.module}:{err.name}"
        if err.opcode in GLOBAL_OPCODES and named not in msg and repr(named)[1:-1] not in msg:
            out.append(f"{where}: '{err.module}:{err.name}' not in the message: {msg}")
    if isinstance(err, LimitExceeded) and case.expect is LimitExceeded and err.limit not in msg:
        out.append(f"{where}: limit name {err.limit!r} not in the message: {msg}")
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_stream_is_refused_and_runs_nothing(case: HostileCase) -> None:
    pol = _policy(case)
    problems: list[str] = []
    seen: dict[str, tuple[Any, ...]] = {}
    if case.copyreg_extension:
        copyreg.add_extension(*case.copyreg_extension)
    try:
        for via in ("loads", "load"):
            err, rec, new_modules = _run(case, pol, via)
            problems += _problems(case, pol, via, err)
            if rec.events:
                problems.append(f"{case.name} via {via}: dangerous audit events:\n{rec.format()}")
            if new_modules:
                problems.append(f"{case.name} via {via}: imported {sorted(new_modules)}")
            seen[via] = (type(err), getattr(err, "offset", None), getattr(err, "opcode", None))
    finally:
        if case.copyreg_extension:
            copyreg.remove_extension(*case.copyreg_extension)
    # A refusal of the whole input (its size) comes before any opcode for
    # loads, and at the opcode that reads past the limit for load.
    if case.needs_opcode and seen["loads"] != seen["load"]:
        problems.append(f"{case.name}: loads and load disagree: {seen['loads']} vs {seen['load']}")
    assert not problems, "\n".join(problems)


# -- the corpus itself -----------------------------------------------------


def test_corpus_is_large_with_unique_names() -> None:
    assert len(CASES) >= 50
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)
    for c in CASES:
        assert issubclass(c.expect, SafePickleError), c.name
        assert c.expect is not SafePickleError, f"{c.name}: expect a precise error class"
        assert c.note, c.name
        assert isinstance(c.data, bytes), c.name


def _opcode_names(data: bytes) -> set[str]:
    """Opcodes pickletools decodes from the stream (up to the first undecodable one)."""
    names = set()
    try:
        for op, _arg, _pos in pickletools.genops(data):
            names.add(op.name)
    except Exception:
        pass
    return names


def test_corpus_covers_every_dangerous_opcode() -> None:
    used = set().union(*(_opcode_names(c.data) for c in CASES))
    refused_at = {c.at for c in CASES}
    wanted = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "REDUCE", "BUILD",
              "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID", "FRAME", "NEXT_BUFFER", "READONLY_BUFFER",
              "SETITEM", "SETITEMS", "APPEND", "APPENDS", "ADDITEMS", "MEMOIZE", "LONG_BINPUT", "PUT"}
    assert wanted <= used, wanted - used
    assert wanted <= refused_at, wanted - refused_at


class _Asked(Exception):
    pass


@pytest.mark.parametrize("case", [c for c in CASES if c.reaches], ids=lambda c: c.name)
def test_cpython_would_reach_the_named_global(case: HostileCase) -> None:
    """The corpus is meaningful: CPython's own unpickler asks for ``reaches`` first."""
    asked: list[tuple[str, str]] = []

    class Recording(pickle._Unpickler):  # type: ignore[name-defined]
        def find_class(self, module: str, name: str) -> Any:
            asked.append((module, name))
            raise _Asked

    kwargs = {k: v for k, v in case.kwargs.items() if k != "buffers"}
    if case.copyreg_extension:
        copyreg.add_extension(*case.copyreg_extension)
    try:
        with pytest.raises(_Asked):
            Recording(io.BytesIO(case.data), **kwargs).load()
    finally:
        if case.copyreg_extension:
            copyreg.remove_extension(*case.copyreg_extension)
    assert asked == [case.reaches]
