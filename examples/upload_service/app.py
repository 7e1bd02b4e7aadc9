"""Upload service: takes pickled NumPy arrays, answers their shape, dtype and checksum.

Start it from the repository root::

    uvicorn examples.upload_service.app:app --host 127.0.0.1 --port 8000

and send a pickle::

    curl --data-binary @arrays.pkl -H 'Content-Type: application/x-python-pickle' \\
        http://127.0.0.1:8000/arrays

``POST /arrays`` loads the body under the ``numpy-only`` policy, at most
``UPLOAD_MAX_BYTES`` bytes (default 32 MiB) and ``UPLOAD_MAX_SECONDS`` seconds
of loading (default 2), with the policy's op and allocation limits lowered to
what arrays of that size need: they bound the memory one request can take
(body + allocations + objects), whatever the stream does.  The body may be one array (or NumPy scalar), or a
list, tuple or str-keyed dict of them.  Refusals answer
``application/problem+json`` (413 too large, 422 refused or not arrays) and
log one JSON line each on stderr (logger ``safepickle.web``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response

from safepickle.web import LOGGER_NAME, JsonLineFormatter, Problem
from safepickle.web.fastapi import PICKLE_MEDIA_TYPE, PickleUpload, install, problem_response
from safepickle.web.upload import DEFAULT_WORKERS

POLICY = "numpy-only"
MAX_BYTES = int(os.environ.get("UPLOAD_MAX_BYTES", 32 * 1024 * 1024))
MAX_SECONDS = float(os.environ.get("UPLOAD_MAX_SECONDS", 2.0))
# A whole body within this time (32 MiB in 60 s needs about 4.5 Mbit/s), so a
# client trickling bytes cannot hold a connection and its buffer forever.
BODY_TIMEOUT = float(os.environ.get("UPLOAD_BODY_TIMEOUT", 60.0))
MAX_ARRAYS = 1024
LIMITS = {
    # Protocol 2 carries array data as a latin-1 str re-encoded to bytes:
    # about 3x the body in payload allocations; 4x leaves room.
    "max_alloc_bytes": 4 * MAX_BYTES,
    # About 40 opcodes per array: room for MAX_ARRAYS several times over,
    # and no room for millions of empty containers from a small body.
    "max_ops": 200_000,
}

_PROBLEM_NOT_ARRAYS = "urn:example:upload-service:not-arrays"


def _configure_logging() -> None:
    """Refusal records as JSON lines on stderr, where operators collect them."""
    log = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h.formatter, JsonLineFormatter) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLineFormatter())
        log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False


_configure_logging()

upload = PickleUpload(
    policy=POLICY, max_bytes=MAX_BYTES, max_seconds=MAX_SECONDS, limits=LIMITS, body_timeout=BODY_TIMEOUT
)

app = FastAPI(title="safepickle upload service")
install(app)


class NotArrays(ValueError):
    """The pickle loaded, but it is not what this endpoint accepts."""


def _arrays(obj: Any) -> list[tuple[str | None, np.ndarray]]:
    """The (key, array) pairs of an upload: one array, or a flat container."""
    if isinstance(obj, np.ndarray | np.generic):
        items: list[tuple[str | None, Any]] = [(None, obj)]
    elif isinstance(obj, list | tuple):
        items = [(str(i), v) for i, v in enumerate(obj)]
    elif isinstance(obj, dict) and all(type(k) is str for k in obj):
        items = list(obj.items())
    else:
        raise NotArrays(f"expected an array or a list, tuple or dict of arrays, got {type(obj).__name__}")
    if len(items) > MAX_ARRAYS:
        raise NotArrays(f"more than {MAX_ARRAYS} arrays")
    out = []
    # Errors name items by position: keys are upload data and are not echoed.
    for position, (key, value) in enumerate(items):
        if not isinstance(value, np.ndarray | np.generic):
            raise NotArrays(f"item #{position} is a {type(value).__name__}, not an array")
        array = np.asarray(value)
        if array.dtype.hasobject:
            # Object arrays hold references, not data: no meaningful checksum.
            raise NotArrays(f"item #{position} has dtype object")
        out.append((key, array))
    return out


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of the array's bytes in C order (what ``a.tobytes()`` gives)."""
    contiguous = np.ascontiguousarray(array)
    try:
        return hashlib.sha256(contiguous.data).hexdigest()
    except (ValueError, TypeError, BufferError):
        # Some dtypes (datetime64...) cannot be exported as a buffer.
        return hashlib.sha256(contiguous.tobytes()).hexdigest()


def describe(obj: Any) -> dict[str, Any]:
    """The JSON answer for a loaded upload; raises :class:`NotArrays`."""
    arrays = [
        {
            "key": key,
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "nbytes": int(array.nbytes),
            "sha256": array_sha256(array),
        }
        for key, array in _arrays(obj)
    ]
    return {"count": len(arrays), "arrays": arrays}


_PICKLE_BODY = {
    "requestBody": {
        "required": True,
        "content": {PICKLE_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


@app.post("/arrays", openapi_extra=_PICKLE_BODY)
def post_arrays(obj: Annotated[Any, Depends(upload)]) -> Response:
    # A plain `def`: FastAPI runs it in a thread, so checksums of large
    # arrays do not hold up the event loop either.
    try:
        return JSONResponse(describe(obj))
    except NotArrays as exc:
        return problem_response(Problem(422, _PROBLEM_NOT_ARRAYS, "Not arrays", str(exc)))


@app.get("/healthz")
def healthz() -> dict[str, Any]:
    limits = upload.loader.limits
    return {
        "status": "ok",
        "policy": POLICY,
        "max_bytes": limits.max_input_bytes,
        "max_seconds": limits.max_seconds,
        "max_alloc_bytes": limits.max_alloc_bytes,
        "max_ops": limits.max_ops,
        "body_timeout": upload.loader.body_timeout,
        "load_workers": DEFAULT_WORKERS,
    }
