"""Refusals that belong to HTTP framing rather than to the pickle stream.

They subclass :class:`safepickle.SafePickleError` so that one
``except SafePickleError`` (or ``except pickle.UnpicklingError``) around an
upload catches every reason it was refused, and one exception handler maps
them all to a problem document.  ``rule`` names the HTTP rule that was broken;
``status`` is the HTTP status the refusal maps to.
"""

from __future__ import annotations

from ..errors import SafePickleError

__all__ = ["BadContentLength", "IncompleteBody", "UnsupportedMediaType", "UploadRefused"]


class UploadRefused(SafePickleError):
    """The request carrying the upload broke an HTTP rule of the endpoint."""

    status = 400

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message, rule=rule)


class UnsupportedMediaType(UploadRefused):
    """The request's ``Content-Type`` is not one the endpoint accepts."""

    status = 415

    def __init__(self, media_type: str | None, accepted: tuple[str, ...]) -> None:
        self.media_type = media_type
        self.accepted = accepted
        super().__init__(
            f"Content-Type must be one of {', '.join(accepted)}", rule="http.content_type"
        )


class BadContentLength(UploadRefused):
    """The ``Content-Length`` header is not a single decimal number, or the
    body carried more bytes than it declared."""

    def __init__(self, message: str) -> None:
        super().__init__(message, rule="http.content_length")


class IncompleteBody(UploadRefused):
    """The body ended (or the client went away) before the bytes that
    ``Content-Length`` announced had arrived."""

    def __init__(self, received: int, declared: int | None) -> None:
        self.received = received
        self.declared = declared
        expected = f" of {declared}" if declared is not None else ""
        super().__init__(
            f"request body ended after {received}{expected} bytes", rule="http.incomplete_body"
        )


class BodyTimeout(UploadRefused):
    """The body did not arrive completely within the endpoint's
    ``body_timeout`` (a client trickling bytes to hold a connection)."""

    status = 408

    def __init__(self, received: int, timeout: float) -> None:
        self.received = received
        self.timeout = timeout
        super().__init__(
            f"request body not complete after {timeout} seconds ({received} bytes)", rule="http.body_timeout"
        )
