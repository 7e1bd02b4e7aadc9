"""FastAPI / Starlette integration (install the ``web`` extra).

::

    from fastapi import Depends, FastAPI
    from safepickle.web.fastapi import PickleUpload, install

    app = FastAPI()
    install(app)                      # refusals -> application/problem+json
    arrays = PickleUpload(policy="numpy-only", max_bytes=32 << 20, max_seconds=2.0, body_timeout=60)

    @app.post("/arrays")
    def post_arrays(obj=Depends(arrays)): ...

This module imports Starlette when it is imported; ``safepickle.web`` itself
never imports it.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the
# ``request: Request`` annotation of ``PickleUpload.__call__`` at runtime and
# cannot resolve a string annotation on a callable instance.

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..errors import SafePickleError
from .body import BodyBuffer
from .errors import IncompleteBody, UnsupportedMediaType
from .problem import DEFAULT_TYPE_BASE, MEDIA_TYPE, Problem, problem_for
from .refusal_log import log_refusal, refusal_record
from .upload import UploadLoader

__all__ = [
    "DEFAULT_CONTENT_TYPES",
    "PICKLE_MEDIA_TYPE",
    "PickleUpload",
    "install",
    "problem_handler",
    "problem_response",
]

PICKLE_MEDIA_TYPE = "application/x-python-pickle"
DEFAULT_CONTENT_TYPES: tuple[str, ...] = (PICKLE_MEDIA_TYPE, "application/octet-stream")

# request.state attribute where the dependency leaves what it received.
_STATE_KEY = "safepickle_body"

# Hash small refused bodies inline; larger ones in a thread (hashlib drops the GIL).
_INLINE_HASH_BYTES = 256 * 1024


def _media_type(request: Request) -> str | None:
    value = request.headers.get("content-type")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower()


class PickleUpload:
    """A FastAPI dependency that yields the object loaded from the request body.

    ``Depends(PickleUpload(policy="numpy-only", max_bytes=..., max_seconds=...))``.
    The body must have one of ``content_types`` (None accepts any) and is
    read with the limits of :class:`~safepickle.web.UploadLoader`; the load
    runs in a worker thread.  Every refusal raises a
    :class:`~safepickle.SafePickleError` subclass that :func:`install`'s
    handler answers with a problem document; the dependency records the
    received size and SHA-256 on ``request.state`` for the handler's log.
    """

    def __init__(
        self,
        policy: Any = "data-only",
        *,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
        content_types: Iterable[str] | None = DEFAULT_CONTENT_TYPES,
        loader: UploadLoader | None = None,
        **loader_kwargs: Any,
    ) -> None:
        if loader is not None and (max_bytes is not None or max_seconds is not None or loader_kwargs):
            raise TypeError("give either a loader or the loader's arguments, not both")
        self.loader = loader or UploadLoader(
            policy, max_bytes=max_bytes, max_seconds=max_seconds, **loader_kwargs
        )
        self.content_types = (
            tuple(t.lower() for t in content_types) if content_types is not None else None
        )

    async def __call__(self, request: Request) -> Any:
        if self.content_types is not None:
            media_type = _media_type(request)
            if media_type not in self.content_types:
                raise UnsupportedMediaType(media_type, self.content_types)
        body: BodyBuffer | None = None
        try:
            body = self.loader.body(request.headers.get("content-length"))
            try:
                data = await body.afill(request.stream(), self.loader.body_timeout)
            except ClientDisconnect:
                raise IncompleteBody(body.size, body.declared) from None
            return await self.loader.aloads(data)
        except SafePickleError:
            await _remember_body(request, body)
            raise


async def _remember_body(request: Request, body: BodyBuffer | None) -> None:
    if body is None:
        setattr(request.state, _STATE_KEY, (0, False, None))
        return
    if body.size > _INLINE_HASH_BYTES:
        digest = await asyncio.to_thread(body.sha256)
    else:
        digest = body.sha256()
    setattr(request.state, _STATE_KEY, (body.size, body.complete, digest))


def problem_response(problem: Problem) -> Response:
    """An ``application/problem+json`` response carrying ``problem``."""
    return Response(problem.to_json(), status_code=problem.status, media_type=MEDIA_TYPE)


def _route(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else request.url.path


def problem_handler(
    type_base: str = DEFAULT_TYPE_BASE, logger: logging.Logger | None = None
) -> Any:
    """An exception handler for :class:`~safepickle.SafePickleError`: logs one
    refusal record and answers with the problem document."""

    async def handle(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, SafePickleError):  # registered for that class only
            raise exc
        problem = problem_for(exc, type_base=type_base)
        size, complete, digest = getattr(request.state, _STATE_KEY, (None, None, None))
        client = f"{request.client.host}:{request.client.port}" if request.client else None
        record = refusal_record(
            exc,
            problem,
            client=client,
            method=request.method,
            route=_route(request),
            body_bytes=size,
            body_complete=complete,
            sha256=digest,
        )
        log_refusal(record, logger)
        return problem_response(problem)

    return handle


def install(
    app: Any, *, type_base: str = DEFAULT_TYPE_BASE, logger: logging.Logger | None = None
) -> None:
    """Register :func:`problem_handler` on a FastAPI or Starlette ``app`` for
    every :class:`~safepickle.SafePickleError` (and so every subclass)."""
    app.add_exception_handler(SafePickleError, problem_handler(type_base, logger))
