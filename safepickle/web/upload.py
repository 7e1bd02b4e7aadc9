"""Load pickled request bodies under a policy, with per-endpoint limits.

An :class:`UploadLoader` is built once per endpoint: it resolves the policy,
narrows its ``max_input_bytes`` and ``max_seconds`` to the endpoint's own
limits (a limit is only ever lowered, never raised), and then reads bodies
with :class:`~safepickle.web.body.BodyBuffer` and loads them with
:func:`safepickle.loads`.  The async methods read the body on the event loop
and run the load in a worker thread, so a slow or hostile load never blocks
the loop; the time limit itself is enforced by the VM inside the load.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Any, BinaryIO

from .. import loads
from ..policy import Limits, Policy, coerce_policy
from .body import DEFAULT_CHUNK_SIZE, BodyBuffer

__all__ = ["DEFAULT_WORKERS", "UploadLoader", "aload_upload", "default_executor", "load_upload"]

# Loads are CPU-bound under the GIL, so more threads add no throughput; a few
# spare ones keep benign loads moving while hostile ones run to their limit.
# Each running load may hold up to one body plus what the policy lets it build.
DEFAULT_WORKERS = min(8, (os.cpu_count() or 1) + 2)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def default_executor() -> ThreadPoolExecutor:
    """The process-wide pool (``DEFAULT_WORKERS`` threads) used for loads
    when an :class:`UploadLoader` is given no executor of its own."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(DEFAULT_WORKERS, thread_name_prefix="safepickle-web")
        return _executor


def _narrowed(policy: Any, lower: Mapping[str, float]) -> Policy:
    """``policy`` with each limit named in ``lower`` lowered to that value
    (a limit already lower is kept: an endpoint never raises a limit)."""
    base = coerce_policy(policy)
    unknown = sorted(set(lower) - set(Limits.model_fields))
    if unknown:
        raise ValueError(f"unknown limit(s) {', '.join(unknown)}; known: {', '.join(Limits.model_fields)}")
    current = base.runtime().limits
    update: dict[str, Any] = {}
    for name, value in lower.items():
        if value is None:
            continue
        if isinstance(value, bool) or value <= 0:
            raise ValueError(f"limit {name} must be > 0, not {value!r}")
        if value < getattr(current, name):
            update[name] = float(value) if name == "max_seconds" else int(value)
    if not update:
        return base
    # Rebuild from the fields the policy set (not model_copy: that would carry
    # over the cached merged limits), so its parents are merged again and only
    # these limits change.
    data = base.model_dump(exclude_unset=True)
    data["limits"] = {**data.get("limits", {}), **update}
    return Policy.model_validate(data)


class UploadLoader:
    """Reads and loads request bodies for one endpoint.

    ``policy``: anything :func:`safepickle.loads` accepts.  ``max_bytes`` /
    ``max_seconds``: endpoint limits, applied by lowering the policy's
    ``max_input_bytes`` / ``max_seconds`` (the smaller wins); ``limits``
    lowers any other field of :class:`safepickle.Limits` the same way (e.g.
    ``{"max_ops": 200_000, "max_alloc_bytes": 128 << 20}``: in a server these
    bound the memory and CPU one request can take).  ``body_timeout``:
    seconds the async readers allow for a whole body (None: no limit; the
    server's own timeouts apply, and uvicorn has none for a slow body).
    ``executor``: where async loads run (default: a
    shared thread pool).  ``load_kwargs``: passed to :func:`safepickle.loads`
    (``fix_imports``, ``encoding``, ``errors``, ``pause_gc``).

    ``pause_gc`` defaults to False here, unlike :func:`safepickle.loads`:
    the pause is process-wide and lasts while any load is running, so in a
    server with overlapping loads the collector could stay off for as long
    as traffic lasts, and cyclic garbage (a sender can build cycles) would
    pile up.  Pass ``pause_gc=True`` for container-heavy uploads when loads
    do not overlap.

    Every refusal raises a :class:`~safepickle.SafePickleError` subclass: a
    body above the size limit raises :class:`~safepickle.LimitExceeded`
    (limit ``max_input_bytes``) before it is read (declared length) or as soon
    as it passes the limit (streamed), never buffering more than the limit.
    """

    def __init__(
        self,
        policy: Any = "data-only",
        *,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
        limits: Mapping[str, float] | None = None,
        body_timeout: float | None = None,
        executor: Executor | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **load_kwargs: Any,
    ) -> None:
        if body_timeout is not None and body_timeout <= 0:
            raise ValueError("body_timeout must be > 0")
        if "buffers" in load_kwargs:
            raise TypeError("an HTTP body carries no out-of-band buffers")
        load_kwargs.setdefault("pause_gc", False)
        lower = dict(limits or {})
        for name, value in (("max_input_bytes", max_bytes), ("max_seconds", max_seconds)):
            if value is not None:
                lower[name] = min(value, lower.get(name, value))
        self.policy = _narrowed(policy, lower)
        limits = self.policy.runtime().limits
        self.max_bytes: int = limits.max_input_bytes
        self.max_seconds: float = limits.max_seconds
        self.limits: Limits = limits
        self.chunk_size = chunk_size
        self.body_timeout = body_timeout
        self._executor = executor
        self._load_kwargs = load_kwargs

    def body(self, content_length: str | bytes | int | None = None) -> BodyBuffer:
        """A buffer for one body; refuses a declared length above the limit."""
        return BodyBuffer(self.max_bytes, content_length)

    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Load a complete body in the calling thread."""
        return loads(data, policy=self.policy, **self._load_kwargs)

    async def aloads(self, data: bytes | bytearray | memoryview) -> Any:
        """Load a complete body in a worker thread and await the result."""
        loop = asyncio.get_running_loop()
        executor = self._executor if self._executor is not None else default_executor()
        return await loop.run_in_executor(executor, partial(self.loads, data))

    def load(self, fileobj: BinaryIO, content_length: str | bytes | int | None = None) -> Any:
        """Read a body from a blocking file object (e.g. ``wsgi.input``) and
        load it.  Give ``content_length`` whenever the request declared one."""
        return self.loads(self.body(content_length).fill(fileobj, self.chunk_size))

    async def aload(
        self, chunks: AsyncIterable[bytes], content_length: str | bytes | int | None = None
    ) -> Any:
        """Read a body from an async iterable of chunks (e.g. Starlette's
        ``request.stream()``) and load it in a worker thread."""
        return await self.aloads(await self.body(content_length).afill(chunks, self.body_timeout))


def load_upload(
    fileobj: BinaryIO,
    policy: Any = "data-only",
    *,
    content_length: str | bytes | int | None = None,
    max_bytes: int | None = None,
    max_seconds: float | None = None,
    limits: Mapping[str, float] | None = None,
    **load_kwargs: Any,
) -> Any:
    """One-shot :meth:`UploadLoader.load`; build an :class:`UploadLoader`
    once per endpoint instead when it serves many requests."""
    loader = UploadLoader(policy, max_bytes=max_bytes, max_seconds=max_seconds, limits=limits, **load_kwargs)
    return loader.load(fileobj, content_length)


async def aload_upload(
    chunks: AsyncIterable[bytes],
    policy: Any = "data-only",
    *,
    content_length: str | bytes | int | None = None,
    max_bytes: int | None = None,
    max_seconds: float | None = None,
    limits: Mapping[str, float] | None = None,
    **load_kwargs: Any,
) -> Any:
    """One-shot :meth:`UploadLoader.aload`; build an :class:`UploadLoader`
    once per endpoint instead when it serves many requests."""
    loader = UploadLoader(policy, max_bytes=max_bytes, max_seconds=max_seconds, limits=limits, **load_kwargs)
    return await loader.aload(chunks, content_length)
