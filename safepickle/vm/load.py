"""``loads`` and ``load``: the safe counterparts of ``pickle.loads``/``pickle.load``."""

from __future__ import annotations

from typing import Any

from ..codec.decode import as_buffer
from ..errors import LimitExceeded, MalformedPickle
from ._engine_select import run
from .actions import LoadContext
from .feed import StreamFeeder
from .gcpause import GCPause

__all__ = ["loads", "load"]


def _runtime(policy: Any) -> Any:
    from ..policy import coerce_policy

    return coerce_policy(policy).runtime()


def loads(
    data: Any,
    /,
    *,
    policy: Any = None,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Any = None,
    persistent_load: Any = None,
    pause_gc: bool = True,
    trace: list | None = None,
) -> Any:
    """Load one pickle from the bytes-like ``data`` under ``policy``.

    ``policy`` is a built-in policy name, a path to a policy file or a
    :class:`~safepickle.Policy`; the default is ``"data-only"``.
    ``fix_imports``, ``encoding``, ``errors`` and ``buffers`` mean what they
    mean for :func:`pickle.loads`.  ``persistent_load`` is called for
    persistent ids when the policy enables them.  ``pause_gc`` pauses the
    cyclic garbage collector for the duration of the load (see README).
    ``trace``, when a list, receives ``(offset, module, name)`` for every
    global the stream asks the policy for (used by the fuzz harness to check
    that ``scan`` saw the same globals).

    Returns what ``pickle.loads`` would return with ``find_class`` limited to
    the policy's globals.  Raises a :class:`~safepickle.SafePickleError`
    subclass for every refusal; nothing else escapes for any input bytes.
    """
    runtime = _runtime(policy)
    buf = as_buffer(data)
    size = len(buf)
    max_input = runtime.limits.max_input_bytes
    if size > max_input:
        raise LimitExceeded("max_input_bytes", size, max_input, offset=0)
    ctx = LoadContext(runtime, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers,
                      persistent_load=persistent_load, trace=trace)
    with GCPause(pause_gc):
        result, _ = run(buf, 0, ctx)
    return result


def load(
    file: Any,
    /,
    *,
    policy: Any = None,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Any = None,
    persistent_load: Any = None,
    pause_gc: bool = True,
    trace: list | None = None,
) -> Any:
    """Load one pickle from the binary file object ``file``, as :func:`loads`.

    Reads in bounded chunks (never more than the policy's
    ``max_input_bytes``) and leaves the file positioned just after the
    pickle's STOP, so consecutive pickles load one after another.
    """
    runtime = _runtime(policy)
    feeder = StreamFeeder(file, runtime.limits.max_input_bytes)
    ctx = LoadContext(runtime, fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers,
                      persistent_load=persistent_load, trace=trace)
    try:
        first = feeder.first()
    except MalformedPickle as e:
        raise e.located(0, None) from None
    with GCPause(pause_gc):
        result, stop = run(first, 0, ctx, feeder)
    feeder.finish(stop)
    return result
