"""The VM's slow paths: every act that touches an object the VM did not build
itself, each asking the policy first.

Resolving a global, calling it (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ),
applying BUILD state, item assignment on anything but a plain list/dict/set,
persistent ids, extension codes and out-of-band buffers all live here, in
:class:`LoadContext`, so that the hot loop in ``engine.py`` stays small and
every policy decision sits in one readable place.
"""

from __future__ import annotations

import sys
import time
from pickle import PickleBuffer
from typing import Any

from ..errors import (
    CallFailed,
    ForbiddenGlobal,
    GuardViolation,
    LimitExceeded,
    MalformedPickle,
    SafePickleError,
)
from ..policy.resolver import CODE_KINDS

__all__ = ["LoadContext"]

# Deadline checks inside long opcodes: every this many items.
_CHUNK = 256


def brief(obj: Any) -> str:
    """A short rendering of a stream-controlled object for a message: never
    its full ``repr`` (a deep or shared structure can make that exponential)."""
    t = type(obj)
    if t is str or t is bytes:
        return repr(obj[:60]) + ("..." if len(obj) > 60 else "")
    if t is int:
        return repr(obj) if obj.bit_length() <= 128 else f"<int of {obj.bit_length()} bits>"
    if t is bool or obj is None or t is float:
        return repr(obj)
    return f"<{getattr(t, '__qualname__', 'object')} object>"


def brief_exception(e: BaseException) -> str:
    """``Type: message`` of an exception, bounded, rendering no argument that
    is not text (``KeyError(deep_tuple)`` must not repr the tuple)."""
    parts = [a[:200] if type(a) is str else brief(a) for a in e.args[:3]]
    return f"{type(e).__name__}: {'; '.join(parts)}" if parts else type(e).__name__


def _describe(obj: Any) -> tuple[str, str]:
    t = type(obj)
    return getattr(t, "__module__", "?") or "?", getattr(t, "__qualname__", t.__name__)


class LoadContext:
    """Per-load state that the slow paths need: the policy's runtime and
    limits, the keyword arguments of the load, the objects this load created
    through allowed calls (kept alive, so their ids stay theirs), the bytes
    allocated so far and the deadline."""

    __slots__ = (
        "runtime",
        "limits",
        "policy_name",
        "proto",
        "fix_imports",
        "encoding",
        "errors",
        "buffers",
        "persistent_load",
        "created",
        "alloc",
        "max_alloc",
        "max_container",
        "deadline",
        "max_seconds",
        "started",
        "trace",
        "out_of_band",
        "tuple_depths",
        "max_depth",
    )

    def __init__(
        self,
        runtime: Any,
        *,
        fix_imports: bool = True,
        encoding: str = "ASCII",
        errors: str = "strict",
        buffers: Any = None,
        persistent_load: Any = None,
        trace: list | None = None,
    ) -> None:
        limits = runtime.limits
        self.runtime = runtime
        self.limits = limits
        self.policy_name = runtime.name
        self.proto = 0
        self.fix_imports = fix_imports
        self.encoding = encoding
        self.errors = errors
        self.buffers = None if buffers is None else iter(buffers)
        self.persistent_load = persistent_load
        self.created: dict[int, Any] = {}
        self.alloc = 0
        self.max_alloc = limits.max_alloc_bytes
        self.max_container = limits.max_container
        self.max_seconds = limits.max_seconds
        self.started = time.monotonic()
        self.deadline = self.started + limits.max_seconds
        self.trace = trace
        self.out_of_band: dict[int, Any] = {}
        # id -> (tuple, depth) for tuples that hold tuples; the tuple is kept
        # so that its id stays its own for the whole load.
        self.tuple_depths: dict[int, tuple[tuple, int]] = {}
        self.max_depth = limits.max_depth

    # -- limits -------------------------------------------------------------

    def charge(self, nbytes: int) -> None:
        """Count ``nbytes`` against ``max_alloc_bytes`` before allocating them."""
        self.alloc += nbytes
        if self.alloc > self.max_alloc:
            raise LimitExceeded("max_alloc_bytes", self.alloc, self.max_alloc)

    def check_deadline(self) -> None:
        now = time.monotonic()
        if now > self.deadline:
            raise LimitExceeded("max_seconds", round(now - self.started, 3), self.max_seconds)

    def check_container(self, n: int) -> None:
        if n > self.max_container:
            raise LimitExceeded("max_container", n, self.max_container)

    def nest_tuple(self, t: tuple) -> int:
        """Record how deeply tuples nest inside ``t`` and refuse it past
        ``max_depth``: CPython hashes a tuple by recursing into its items in C
        with no depth guard, so a deep enough tuple used as a dict key or set
        item crashes the process (``pickle.loads`` included)."""
        depths = self.tuple_depths
        entry = depths.get(id(t))
        if entry is not None and entry[0] is t:
            return entry[1]
        # Iterative post-order walk over the tuple children not yet measured.
        todo = [t]
        while todo:
            top = todo[-1]
            deepest = 0
            pending = False
            for item in top:
                if type(item) is tuple:
                    known = depths.get(id(item))
                    if known is not None and known[0] is item:
                        if known[1] > deepest:
                            deepest = known[1]
                    else:
                        todo.append(item)
                        pending = True
                        if len(todo) > self.max_depth + 1:
                            raise LimitExceeded("max_depth", len(todo), self.max_depth,
                                                message="tuples nested deeper than max_depth")
            if pending:
                continue
            todo.pop()
            depth = deepest + 1
            if depth > self.max_depth:
                raise LimitExceeded("max_depth", depth, self.max_depth,
                                    message="tuples nested deeper than max_depth")
            depths[id(top)] = (top, depth)
        return depths[id(t)][1]

    # -- globals ------------------------------------------------------------

    def find_global(self, module: Any, name: Any, offset: int) -> Any:
        """The object the policy hands over for ``module:name``; raises
        :class:`ForbiddenGlobal` when it does not."""
        if type(module) is not str or type(name) is not str:
            raise MalformedPickle("STACK_GLOBAL requires str module and name", rule="bad-argument")
        if self.trace is not None:
            self.trace.append((offset, module, name))
        return self.runtime.resolve(module, name, self.proto, self.fix_imports)

    def extension(self, code: int, offset: int) -> Any:
        if code <= 0:
            raise MalformedPickle(f"EXT specifies code {code} <= 0", rule="bad-argument")
        module, name = self.runtime.resolve_extension(code)
        return self.find_global(module, name, offset)

    def persistent(self, pid: Any) -> Any:
        if not self.runtime.persistent_ids:
            raise ForbiddenGlobal(
                "<persistent-id>", brief(pid),
                f"persistent id {brief(pid)} refused: policy {self.policy_name!r} does not enable "
                "persistent ids (set persistent_ids = true and pass persistent_load=)",
                policy=self.policy_name, rule="persistent-id")
        if self.persistent_load is None:
            raise MalformedPickle("a persistent id was encountered but no persistent_load function was given",
                                  rule="persistent-id")
        return self._guarded(self.persistent_load, (pid,), None, "persistent_load")

    # -- calls ----------------------------------------------------------------

    def _refuse_call(self, func: Any, use: str) -> ForbiddenGlobal:
        module, name = _describe(func)
        return ForbiddenGlobal(
            module, name,
            f"{use} target is a {module}.{name} value, not a global that policy {self.policy_name!r} "
            "handed over for calling",
            policy=self.policy_name, rule="call-target")

    def _check_call(self, func: Any, args: tuple, kwargs: dict | None, use: str) -> None:
        rt = self.runtime
        if not rt.is_callable(func):
            raise self._refuse_call(func, use)
        guard = rt.guard(func)
        if guard is not None:
            try:
                cost = guard(args, kwargs, self.limits)
            except GuardViolation as g:
                raise self._guard_error(func, g) from None
            if cost:
                self.charge(cost)
        if args:
            for a in args:
                if isinstance(a, (list, dict, set, frozenset, tuple)):
                    self.check_container(len(a))

    def _guard_error(self, func: Any, g: GuardViolation) -> SafePickleError:
        if g.limit is not None:
            return LimitExceeded(g.limit, g.value, getattr(self.limits, g.limit, None),
                                 message=f"{g.reason}: limit {g.limit}")
        module = getattr(func, "__module__", "?") or "?"
        name = getattr(func, "__qualname__", "?")
        return ForbiddenGlobal(module, name, f"arguments refused for {module}:{name}: {g.reason}",
                               policy=self.policy_name, rule="guard")

    def _guarded(self, func: Any, args: tuple, kwargs: dict | None, what: str) -> Any:
        """Run an allowed callable; whatever it raises becomes a SafePickleError."""
        try:
            if kwargs:
                result = func(*args, **kwargs)
            else:
                result = func(*args)
        except SafePickleError:
            raise
        except MemoryError:
            raise LimitExceeded("max_alloc_bytes", "MemoryError", message=f"{what} ran out of memory") from None
        except RecursionError:
            raise LimitExceeded("max_depth", "RecursionError", message=f"{what} recursed too deep") from None
        except Exception as e:  # an allowed callable refusing hostile arguments
            raise CallFailed(f"{what} raised {brief_exception(e)}", rule="call-raised") from e
        self.created[id(result)] = result
        if type(result) is tuple:
            self.nest_tuple(result)
        # An allowed call can take long on hostile arguments (keys with
        # colliding hashes inside a constructor): look at the clock after each.
        self.check_deadline()
        return result

    def call(self, func: Any, args: Any) -> Any:
        """REDUCE: ``func(*args)``."""
        if type(args) is not tuple:
            raise MalformedPickle(f"REDUCE arguments must be a tuple, not {type(args).__name__}",
                                  rule="bad-argument")
        self._check_call(func, args, None, "REDUCE")
        return self._guarded(func, args, None, _qualname(func))

    def new_object(self, cls: Any, args: Any, kwargs: Any, use: str) -> Any:
        """NEWOBJ / NEWOBJ_EX: ``cls.__new__(cls, *args, **kwargs)``."""
        if not self.runtime.is_callable(cls):
            raise self._refuse_call(cls, use)
        if not isinstance(cls, type):
            raise MalformedPickle(f"{use} class argument must be a type, not {type(cls).__name__}",
                                  rule="bad-argument")
        if type(args) is not tuple:
            raise MalformedPickle(f"{use} args argument must be a tuple, not {type(args).__name__}",
                                  rule="bad-argument")
        if kwargs is not None and type(kwargs) is not dict:
            raise MalformedPickle(f"{use} kwargs argument must be a dict, not {type(kwargs).__name__}",
                                  rule="bad-argument")
        self._check_call(cls, args, kwargs, use)
        return self._guarded(cls.__new__, (cls, *args), kwargs, f"{_qualname(cls)}.__new__")

    def instantiate(self, cls: Any, args: tuple, use: str) -> Any:
        """INST / OBJ: ``cls.__new__(cls)`` for a class without arguments (and
        no ``__getinitargs__``), else ``cls(*args)``, as CPython does."""
        self._check_call(cls, args, None, use)
        if not args and isinstance(cls, type) and not hasattr(cls, "__getinitargs__"):
            return self._guarded(cls.__new__, (cls,), None, f"{_qualname(cls)}.__new__")
        return self._guarded(cls, args, None, _qualname(cls))

    # -- acting on objects the VM did not build -------------------------------

    def _check_target(self, obj: Any, use: str) -> None:
        if isinstance(obj, CODE_KINDS):
            module, name = _describe(obj)
            raise ForbiddenGlobal(module, name, f"{use} on a {name} object is never allowed",
                                  policy=self.policy_name, rule=f"{use.lower()}-target")
        if self.created.get(id(obj)) is not obj:
            module, name = _describe(obj)
            raise ForbiddenGlobal(
                module, name,
                f"{use} on a {module}.{name} object that this load did not create by an allowed call",
                policy=self.policy_name, rule=f"{use.lower()}-target")
        if not self.runtime.admits(obj):
            module, name = _describe(obj)
            raise ForbiddenGlobal(
                module, name,
                f"{use} on a {module}.{name} object: policy {self.policy_name!r} does not allow that type "
                f"(add \"{module}:{name}\" to allow)",
                policy=self.policy_name, rule=f"{use.lower()}-target")

    def build(self, inst: Any, state: Any) -> None:
        """BUILD: the type's own ``__setstate__``, else ``__dict__`` update and
        slot ``setattr``, as CPython does, on an admitted object this load
        created."""
        self._check_target(inst, "BUILD")
        guard = self.runtime.state_guard(inst)
        if guard is not None:
            try:
                cost = guard(inst, state, self.limits)
            except GuardViolation as g:
                raise self._guard_error(type(inst), g) from None
            if cost:
                self.charge(cost)
        # Looked up on the type, not the instance: instance attributes set by
        # an earlier BUILD must not be able to redirect this call.
        setstate = getattr(type(inst), "__setstate__", None)
        if setstate is not None:
            self._guarded(setstate, (inst, state), None, f"{_qualname(type(inst))}.__setstate__")
            return
        if _own_setstate(inst):
            # pickle would call that attribute (whatever an earlier BUILD stored
            # there); we never do, and never quietly do something else instead.
            module, name = _describe(inst)
            raise ForbiddenGlobal(module, name, f"BUILD on a {_qualname(type(inst))} whose __setstate__ an earlier "
                                  "BUILD stored on the instance: only a __setstate__ its type defines is called",
                                  policy=self.policy_name, rule="build-setstate")
        slotstate = None
        if type(state) is tuple and len(state) == 2:
            state, slotstate = state
        if state is not None:
            if not isinstance(state, dict):
                raise MalformedPickle("BUILD state is not a dictionary", rule="bad-argument")
            try:
                inst_dict = inst.__dict__
            except AttributeError:
                raise MalformedPickle(f"BUILD target {_qualname(type(inst))} has no __dict__",
                                      rule="bad-argument") from None
            intern = sys.intern
            for k, v in state.items():
                if type(k) is str:
                    k = intern(k)
                inst_dict[k] = v
        if slotstate is not None:
            if not isinstance(slotstate, dict):
                raise MalformedPickle("BUILD slot state is not a dictionary", rule="bad-argument")
            for k, v in slotstate.items():
                if type(k) is not str or (k.startswith("__") and k.endswith("__")):
                    raise ForbiddenGlobal(_describe(inst)[0], _describe(inst)[1],
                                          f"BUILD slot state may not set attribute {brief(k)}",
                                          policy=self.policy_name, rule="build-attribute")
                self._guarded(setattr, (inst, k, v), None, "setattr")

    def append_items(self, target: Any, items: list) -> None:
        """APPEND / APPENDS on something other than a plain list."""
        self._check_target(target, "APPEND")
        t = type(target)
        extend = getattr(t, "extend", None)
        if extend is not None:
            self._guarded(extend, (target, items), None, f"{_qualname(t)}.extend")
            return
        append = getattr(t, "append", None)
        if append is None:
            raise MalformedPickle(f"APPEND target {_qualname(t)} has no append", rule="bad-argument")
        for i, item in enumerate(items):
            self._guarded(append, (target, item), None, f"{_qualname(t)}.append")
            if i % _CHUNK == 0:
                self.check_deadline()

    def set_items(self, target: Any, items: list, start: int) -> None:
        """SETITEM / SETITEMS: ``target[k] = v`` for the pairs of ``items[start:]``."""
        n = len(items) - start
        if n % 2:
            raise MalformedPickle("odd number of items for SETITEMS", rule="bad-stack")
        if type(target) is dict:
            self.check_container(len(target) + n // 2)
            fill_dict(self, target, items, start)
            return
        self._check_target(target, "SETITEM")
        setitem = getattr(type(target), "__setitem__", None)
        if setitem is None:
            raise MalformedPickle(f"SETITEM target {_qualname(type(target))} has no __setitem__",
                                  rule="bad-argument")
        for i in range(start, len(items), 2):
            self._guarded(setitem, (target, items[i], items[i + 1]), None,
                          f"{_qualname(type(target))}.__setitem__")
            if (i - start) % (2 * _CHUNK) == 0:
                self.check_deadline()

    def add_items(self, target: Any, items: list) -> None:
        """ADDITEMS on something other than a plain set."""
        self._check_target(target, "ADDITEMS")
        t = type(target)
        add = set.add if isinstance(target, set) else getattr(t, "add", None)
        if add is None:
            raise MalformedPickle(f"ADDITEMS target {_qualname(t)} has no add", rule="bad-argument")
        for i, item in enumerate(items):
            self._guarded(add, (target, item), None, f"{_qualname(t)}.add")
            if i % _CHUNK == 0:
                self.check_deadline()

    # -- protocol 5 and py2 strings --------------------------------------------

    def next_buffer(self) -> Any:
        if self.buffers is None:
            raise MalformedPickle("pickle stream refers to out-of-band data but no buffers argument was given",
                                  rule="out-of-band")
        try:
            buf = next(self.buffers)
            self.out_of_band[id(buf)] = buf
            return buf
        except StopIteration:
            raise MalformedPickle("not enough out-of-band buffers", rule="out-of-band") from None
        except Exception as e:  # the caller's own iterable failed
            raise CallFailed(f"the buffers iterable raised {brief_exception(e)}", rule="out-of-band") from e

    def readonly(self, buf: Any) -> Any:
        """READONLY_BUFFER: a read-only view of an out-of-band buffer (or of
        plain bytes-like data).  Never of an object an allowed call built: a
        later BUILD could free the memory under the view."""
        try:
            view = memoryview(buf)
        except TypeError:
            raise MalformedPickle(f"READONLY_BUFFER on a {type(buf).__name__}, not a buffer",
                                  rule="bad-argument") from None
        with view:
            if self.out_of_band.get(id(buf)) is not buf and type(buf) not in (bytes, bytearray, PickleBuffer):
                module, name = _describe(buf)
                raise ForbiddenGlobal(module, name, f"READONLY_BUFFER on a {module}.{name} object: only "
                                      "out-of-band buffers and plain bytes-like data may be made read-only",
                                      policy=self.policy_name, rule="readonly-target")
            if view.readonly:
                return buf
            readonly = view.toreadonly()
        self.out_of_band[id(readonly)] = readonly  # READONLY_BUFFER again on it is a no-op, as in CPython
        return readonly

    def py2_string(self, raw: bytes) -> Any:
        """STRING / BINSTRING / SHORT_BINSTRING payloads, decoded as pickle does."""
        if self.encoding == "bytes":
            return raw
        try:
            return raw.decode(self.encoding, self.errors)
        except (UnicodeDecodeError, LookupError) as e:
            raise MalformedPickle(f"py2 string could not be decoded with encoding={self.encoding!r}: "
                                  f"{brief_exception(e)}",
                                  rule="bad-argument") from None


def fill_dict(ctx: LoadContext, d: dict, items: list, start: int) -> None:
    """``d[k] = v`` for the pairs of ``items[start:]``, checking the deadline
    every few hundred pairs: keys with colliding hashes make each insertion
    cost the size of the dict, and must not run far past ``max_seconds``."""
    stop = len(items)
    try:
        if stop - start <= 2 * _CHUNK:
            for i in range(start, stop, 2):
                d[items[i]] = items[i + 1]
            if len(d) > _CHUNK:
                ctx.check_deadline()
            return
        for chunk in range(start, stop, 2 * _CHUNK):
            for i in range(chunk, min(chunk + 2 * _CHUNK, stop), 2):
                d[items[i]] = items[i + 1]
            ctx.check_deadline()
    except SafePickleError:
        raise
    except Exception as e:  # unhashable key, or a key type's own __hash__/__eq__ failing
        raise MalformedPickle(f"dict key refused: {brief_exception(e)}", rule="bad-argument") from None


def fill_set(ctx: LoadContext, s: set, items: list) -> None:
    """``s.update(items)`` with the same deadline checks as :func:`fill_dict`."""
    try:
        if len(items) <= 2 * _CHUNK:
            s.update(items)
            if len(s) > _CHUNK:
                ctx.check_deadline()
            return
        for i in range(0, len(items), _CHUNK):
            s.update(items[i:i + _CHUNK])
            ctx.check_deadline()
    except SafePickleError:
        raise
    except Exception as e:
        raise MalformedPickle(f"set item refused: {brief_exception(e)}", rule="bad-argument") from None


def _own_setstate(inst: Any) -> bool:
    """Whether ``inst`` holds a ``__setstate__`` in its own ``__dict__``."""
    try:
        d = object.__getattribute__(inst, "__dict__")
    except AttributeError:
        return False
    return type(d) is dict and "__setstate__" in d


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}" if module else name
