"""Exceptions of the taskgram client, and the one place where failures become them:
:func:`error_from_response` for server answers, :func:`error_from_transport` for httpx failures (the
clients raise them ``from`` the original error).

::

    TaskgramError
     ├── TransportError              no answer: connection refused/reset, timeout (after the retries)
     │    └── RequestTimeout         the request timed out
     ├── ProtocolError               the server answered something that is not the expected JSON
     └── APIError                    the server answered with an error (problem+json); .status .type .detail
          ├── BadRequestError        400 malformed request
          ├── AuthenticationError    401 missing or invalid API key
          ├── NotFoundError          404
          │    ├── UnknownIndexError       no index of that name
          │    └── DocumentNotFoundError   doc_id out of range
          ├── PayloadTooLargeError   413 batch or body over the server's limits
          ├── InvalidQueryError      422 the query is invalid (field and reason in .detail)
          └── BudgetExceededError    503 the query ran over its time/work budget (retried first)

Evaluation code lets these propagate: a failed query is never a zero count.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "DocumentNotFoundError",
    "InvalidQueryError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProtocolError",
    "RequestTimeout",
    "TaskgramError",
    "TransportError",
    "UnknownIndexError",
    "error_from_response",
    "error_from_transport",
]

PROBLEM_TYPE_PREFIX = "urn:taskgram:problem:"


class TaskgramError(Exception):
    """Base of every exception the client raises."""


class TransportError(TaskgramError):
    """The server could not be reached or did not answer (after retries)."""


class RequestTimeout(TransportError):
    """The request timed out."""


class ProtocolError(TaskgramError):
    """The server's answer is not what the API promises (not JSON, missing fields, wrong length)."""


class APIError(TaskgramError):
    """The server answered with an error status. ``type``/``title``/``detail`` come from problem+json.

    Each subclass names its status, problem type (``urn:taskgram:problem:<slug>``) and title, the same as
    the server's; :meth:`from_detail` builds one with them (the in-process transport does).
    """

    status_code: int = 500
    slug: str = "internal-error"
    default_title: str = "Internal server error"

    def __init__(
        self,
        detail: str,
        *,
        status: int,
        type: str = "about:blank",
        title: str = "",
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if title else f"{status}: {detail}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = errors or []

    @classmethod
    def from_detail(cls, detail: str) -> APIError:
        """The error the server answers for this class's failure, with its status, type and title."""
        return cls(
            detail, status=cls.status_code, type=PROBLEM_TYPE_PREFIX + cls.slug, title=cls.default_title
        )


class BadRequestError(APIError):
    status_code, slug, default_title = 400, "bad-request", "Malformed request"


class AuthenticationError(APIError):
    status_code, slug, default_title = 401, "unauthorized", "Missing or invalid API key"


class NotFoundError(APIError):
    status_code, slug, default_title = 404, "not-found", "Not found"


class UnknownIndexError(NotFoundError):
    slug, default_title = "unknown-index", "Unknown index"


class DocumentNotFoundError(NotFoundError):
    slug, default_title = "document-not-found", "Document not found"


class PayloadTooLargeError(APIError):
    status_code, slug, default_title = 413, "payload-too-large", "Request too large"


class InvalidQueryError(APIError):
    status_code, slug, default_title = 422, "invalid-query", "Invalid query"


class BudgetExceededError(APIError):
    status_code, slug, default_title = 503, "budget-exceeded", "Query budget exceeded"


#: problem type slug -> class, for the subclasses more specific than their status
_BY_TYPE: dict[str, type[APIError]] = {cls.slug: cls for cls in (UnknownIndexError, DocumentNotFoundError)}
#: status -> class
_BY_STATUS: dict[int, type[APIError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        NotFoundError,
        PayloadTooLargeError,
        InvalidQueryError,
        BudgetExceededError,
    )
}


def error_class(status: int, problem_type: str = "") -> type[APIError]:
    slug = problem_type.removeprefix(PROBLEM_TYPE_PREFIX)
    return _BY_TYPE.get(slug) or _BY_STATUS.get(status) or APIError


def error_from_response(status: int, content_type: str, body: bytes) -> APIError:
    """Build the exception for an error answer (problem+json, or anything else a proxy may send)."""
    problem: dict[str, Any] = {}
    if "json" in content_type:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            problem = parsed
    detail = problem.get("detail") or problem.get("error")
    if not isinstance(detail, str):
        detail = body[:500].decode("utf-8", errors="replace") or f"HTTP {status}"
    raw_type, raw_title = problem.get("type"), problem.get("title")
    problem_type = raw_type if isinstance(raw_type, str) else "about:blank"
    title = raw_title if isinstance(raw_title, str) else ""
    errors = problem.get("errors") if isinstance(problem.get("errors"), list) else None
    cls = error_class(status, problem_type)
    return cls(detail, status=status, type=problem_type, title=title, errors=errors)


def error_from_transport(method: str, url: str, err: Exception) -> TransportError:
    """A request that got no answer: a timeout while waiting for it, or a connection failure."""
    import httpx

    if isinstance(err, httpx.TimeoutException) and not isinstance(err, httpx.ConnectTimeout):
        return RequestTimeout(f"{method} {url}: timed out ({err.__class__.__name__})")
    return TransportError(f"{method} {url}: {err.__class__.__name__}: {err}")
