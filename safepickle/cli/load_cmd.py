"""``safepickle load PATH --policy P``: load under the policy and summarise the result.

Reads a pickle file (the first pickle, or every one with ``--all``) or the
object array of a ``.npy`` file.  Prints the type and size of the result
(length, keys, shape and dtype), or the refusal with its offset.  Exit 0
loaded, 1 refused, 2 unreadable or not a pickle.

The summary never calls a method of a loaded object other than those of
built-in containers and NumPy arrays (whose types the policy admitted).
"""

from __future__ import annotations

import collections
import io
import itertools
import sys
from typing import Any

from .common import EXIT_OK, EXIT_REFUSED, CliError, load_policy_arg, read_input

__all__ = ["run", "summarize"]

_CONTAINERS = (dict, list, tuple, set, frozenset)


def _type_name(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


def _short(obj: Any, width: int = 40) -> str:
    t = type(obj)
    if t in (str, bytes, bytearray):
        text = repr(obj[:width]) + ("..." if len(obj) > width else "")
    elif t in (int, float, bool, complex, type(None)):
        text = repr(obj) if not (t is int and obj.bit_length() > 128) else f"<int of {obj.bit_length()} bits>"
    elif t in _CONTAINERS:
        text = f"<{t.__name__} of {len(obj)}>"
    else:
        text = f"<{_type_name(obj)}>"
    return text if len(text) <= width + 10 else text[: width + 7] + "..."


def _builtin_base(obj: Any) -> type | None:
    """The built-in container type ``obj`` is (or subclasses: OrderedDict,
    defaultdict, Counter, deque, namedtuple...), whose C methods read it
    without running a Python override."""
    t = type(obj)  # not isinstance: it would read a __class__ the object may define
    for base in (dict, list, tuple, set, frozenset, collections.deque):
        if issubclass(t, base):
            return base
    return None


def summarize(obj: Any) -> list[str]:
    """A few lines about ``obj``: its type, size, first keys or items, shape."""
    t = type(obj)
    lines = [f"type: {_type_name(obj)}"]
    base = _builtin_base(obj)
    if t in (str, bytes, bytearray):
        lines.append(f"length: {len(obj)}")
        lines.append(f"value: {_short(obj, 60)}")
    elif base is not None:
        n = base.__len__(obj)
        first = list(itertools.islice(base.__iter__(obj), 10))
        lines.append(f"length: {n}")
        label = "keys" if base is dict else "items"
        lines.append(f"{label}: " + ", ".join(_short(x, 30) for x in first) + (", ..." if n > 10 else ""))
    elif t.__module__.split(".")[0] == "numpy" and hasattr(t, "shape") and hasattr(t, "dtype"):
        lines.append(f"shape: {tuple(obj.shape)}")
        lines.append(f"dtype: {obj.dtype}")
    elif t in (int, float, bool, complex, type(None)):
        lines.append(f"value: {_short(obj, 60)}")
    return lines


def run(args: Any) -> int:
    from .. import MalformedPickle, SafePickleError, load
    from ..scan.formats import npy_header, sniff

    policy = load_policy_arg(args.policy)
    data = read_input(args.path)
    if not data:
        raise CliError(f"{args.path}: the file is empty")
    start = 0
    kind = sniff(data)
    if kind == "npy":
        h = npy_header(data)
        if isinstance(h, str):
            raise CliError(f"{args.path}: {h}")
        if h.objects is False:
            raise CliError(f"{args.path}: a .npy array of {h.descr!r} holds no pickle (load it with numpy.load)")
        start = h.data_offset
    elif kind is not None:
        raise CliError(f"{args.path} is a {kind} file; 'load' reads pickle files and .npy object arrays "
                       "(use 'safepickle scan' to inspect it)")
    f = io.BytesIO(data)
    f.seek(start)
    index = 0
    out = sys.stdout
    while True:
        pos = f.tell()
        try:
            obj = load(f, policy=policy, fix_imports=not args.no_fix_imports, encoding=args.encoding,
                       errors=args.errors)
        except SafePickleError as e:
            # Offsets in the error count from the start of this pickle.
            base = f" (the pickle starts at file offset {pos})" if pos else ""
            if index == 0 and kind is None and data[0] != 0x80 and isinstance(e, MalformedPickle) \
                    and e.offset in (0, None):
                base += " (the file's format is not recognised: it was read as a raw pickle)"
            out.write(f"{args.path}: REFUSED: {type(e).__name__}: {e}{base}\n")
            return EXIT_REFUSED
        index += 1
        head = f"{args.path}: loaded" + (f" pickle {index} (offset {pos})" if args.all or index > 1 else "")
        out.write(f"{head} under policy {policy.name}\n")
        for line in summarize(obj):
            out.write(f"  {line}\n")
        left = len(data) - f.tell()
        if left <= 0 or kind == "npy":
            return EXIT_OK
        if not args.all:
            out.write(f"  note: {left} more bytes follow at offset {f.tell()} (--all loads every pickle)\n")
            return EXIT_OK
