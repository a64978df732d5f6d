"""The project's error hierarchy: each class carries the HTTP status it maps to.

Lives beside the content model because every layer (content, storage, channels, bot) raises these and
only `bot/` translates them into responses, exit codes or chat replies, in one place each.
Messages are one line, name what was wrong, and never contain a stack trace.
"""

from __future__ import annotations


class JianbaoError(Exception):
    status = 500
    kind = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadInput(JianbaoError):
    status = 400
    kind = "bad_input"


class IssueFormatError(BadInput):
    """A newsletter file that cannot be read as an issue (bad encoding, no title line, no sections...)."""

    status = 422
    kind = "bad_issue"

    def __init__(self, message: str, line: int | None = None) -> None:
        # With a line (1-based) the message says it, so every place that prints errors shows it; `line`
        # is there for pages that point at the line itself (the console's upload form).
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


class TooLarge(BadInput):
    status = 413
    kind = "too_large"


class TooManyRequests(JianbaoError):
    """A client over a rate limit; `retry_after` seconds (rounded up) go into the Retry-After header."""

    status = 429
    kind = "too_many_requests"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(JianbaoError):
    """A service we depend on (the database, a platform API) cannot be reached right now."""

    status = 503
    kind = "unavailable"


class NotFound(JianbaoError):
    status = 404
    kind = "not_found"


class Conflict(JianbaoError):
    """The request is well-formed but contradicts the current state (e.g. resuming a cancelled broadcast)."""

    status = 409
    kind = "conflict"
