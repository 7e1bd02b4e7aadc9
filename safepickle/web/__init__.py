"""Accept pickled uploads in web services.

This package uses the standard library only; the FastAPI/Starlette dependency
and exception handler live in :mod:`safepickle.web.fastapi` (extra ``web``),
which is imported only when you import it.

- :class:`UploadLoader` reads a request body in bounded chunks (sync from a
  file object, async from an iterable of chunks) and loads it under a policy
  with per-endpoint ``max_bytes`` / ``max_seconds``; async loads run in a
  worker thread.  :func:`load_upload` / :func:`aload_upload` are one-shot forms.
- :func:`problem_for` maps any :class:`~safepickle.SafePickleError` to an
  HTTP status (413 input size, 422 forbidden global / malformed / other
  refusals, 400/408/415 for HTTP framing) and an RFC 9457 problem document.
- :func:`refusal_record` / :func:`log_refusal` emit one structured WARNING
  per refusal on the ``safepickle.web`` logger.
"""

from .body import BodyBuffer, parse_content_length
from .errors import BadContentLength, BodyTimeout, IncompleteBody, UnsupportedMediaType, UploadRefused
from .problem import MEDIA_TYPE, Problem, clean_text, problem_for, status_for
from .refusal_log import LOGGER_NAME, JsonLineFormatter, log_refusal, refusal_record
from .upload import UploadLoader, aload_upload, default_executor, load_upload

__all__ = [
    "LOGGER_NAME",
    "MEDIA_TYPE",
    "BadContentLength",
    "BodyBuffer",
    "BodyTimeout",
    "IncompleteBody",
    "JsonLineFormatter",
    "Problem",
    "UnsupportedMediaType",
    "UploadLoader",
    "UploadRefused",
    "aload_upload",
    "clean_text",
    "default_executor",
    "load_upload",
    "log_refusal",
    "parse_content_length",
    "problem_for",
    "refusal_record",
    "status_for",
]
