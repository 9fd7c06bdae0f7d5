"""Structured logs: one JSON object per line (or plain text), each carrying the id of the HTTP request
being handled, with secrets kept out.

Wiring::

    configure_logging(level=settings.log_level, fmt=settings.log_format)      # once, before serving
    app.add_middleware(RequestIdMiddleware, access_log=settings.access_log)   # in create_app, added last
    uvicorn.run(app, ..., log_config=None, access_log=False)                  # keep this module's handlers

``configure_logging`` routes the root logger and uvicorn's loggers through one handler. uvicorn's own
access log is switched off: ``RequestIdMiddleware`` writes one access record per request instead, with the
request id, the route path without its query string, the status and the duration, and answers every
request with an ``X-Request-ID`` header (the caller's own id when it sent a well-formed one).

What is never logged: request or response headers, query strings, bodies. Messages and extra fields go
through ``redact``, which masks bearer tokens and ``key=value`` pairs whose key names a secret, and
``safe_settings`` masks secret fields of a settings object before it is logged.
"""

from __future__ import annotations

import functools
import json
import logging
import logging.config
import re
import time
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from typing import IO, Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "RequestContextFilter",
    "RequestIdMiddleware",
    "TextFormatter",
    "configure_logging",
    "current_request_id",
    "logging_config",
    "redact",
    "safe_settings",
]


LogFormat = Literal["json", "text"]
REQUEST_ID_HEADER = "x-request-id"
ACCESS_LOGGER = "taskgram.access"
REDACTED = "[redacted]"
_MAX_PATH_CHARS = 256
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# A key names a secret when one of its underscore-separated words is one of these ("max_query_tokens"
# does not: it counts tokens of text).
_SECRET_KEY = re.compile(
    r"(?:^|[_-])(?:authorization|(?:api|access|secret|private)[_-]?keys?|secrets?|passwords?|passwd|"
    r"cookies?|bearer|credentials?|token)(?:$|[_-])",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_KEY_VALUE = re.compile(
    r"(?i)\b([A-Za-z0-9_-]*?(?:authorization|(?:api|access|secret|private)[_-]?keys?|secrets?|passwords?|"
    r"passwd|cookies?|token|credentials?))(?![A-Za-z0-9])(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
)
# Every string that redact() changes contains one of these; the others are returned as they are.
_SECRET_HINT = re.compile(r"(?i)bearer|basic|authoriz|key|secret|passw|token|cookie|credential")
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's copy of the message with terminal colour codes
}

_request_id: ContextVar[str | None] = ContextVar("taskgram_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this context (thread-pool handlers included), or None."""
    return _request_id.get()


def redact(text: str) -> str:
    """Mask bearer/basic credentials and ``secret-key=value`` pairs in free text."""
    if not _SECRET_HINT.search(text):  # the common case, at the cost of one scan
        return text
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def _clean_value(key: str, value: Any) -> Any:
    if _is_secret_key(key):
        return REDACTED
    kind = type(value)
    if kind is str:
        return redact(value)
    if value is None or kind in (int, float, bool):
        return value
    if kind.__name__ in ("SecretStr", "SecretBytes"):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _clean_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_value(key, v) for v in value]
    return value


def safe_settings(settings: Any) -> dict[str, Any]:
    """A settings object (pydantic model or mapping) as a dict fit for a log line: secret fields masked."""
    if isinstance(settings, Mapping):
        raw = dict(settings)
    elif hasattr(settings, "model_dump"):
        raw = settings.model_dump()
        # model_dump() turns SecretStr into SecretStr objects (masked) but plain str secrets stay plain.
        raw = {k: getattr(settings, k, v) for k, v in raw.items()}
    else:
        raise TypeError(f"cannot list the fields of {type(settings).__name__}")
    return {str(k): _clean_value(str(k), v) for k, v in raw.items()}


class RequestContextFilter(logging.Filter):
    """Puts the current request id on every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id() or "-"
        return True


_second_cache: tuple[int, str] = (-1, "")


def _utc_iso(created: float) -> str:
    """``2026-01-02T03:04:05.678Z``; the part up to the second is formatted once per second."""
    global _second_cache
    second = int(created)
    cached = _second_cache
    if cached[0] != second:
        cached = _second_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, request_id, the record's ``extra`` fields, and
    exc_type/exc for exceptions. Secrets are masked."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _utc_iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id and request_id != "-":
            payload["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                payload[key] = _clean_value(key, value)
        if record.exc_info:
            payload["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            payload["exc"] = redact(self.formatException(record.exc_info))
        elif record.stack_info:
            payload["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(payload, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO logger [request-id] message key=value ...`` with secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or current_request_id() or "-"
        extras = " ".join(
            f"{k}={_clean_value(k, v)}"
            for k, v in vars(record).items()
            if k not in _RECORD_ATTRS and not k.startswith("_")
        )
        line = (
            f"{_utc_iso(record.created)} {record.levelname} {record.name} [{request_id}] "
            f"{redact(record.getMessage())}"
        )
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def logging_config(
    *, level: str = "INFO", fmt: LogFormat = "json", stream: IO[str] | None = None
) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary (also fit for uvicorn's ``log_config``): root and uvicorn
    loggers share one handler writing to ``stream`` (stderr by default) with this module's formatter;
    uvicorn's access logger is silenced (the middleware logs requests)."""
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be 'json' or 'text', got {fmt!r}")
    level_name = str(level).upper()
    if not isinstance(logging.getLevelName(level_name), int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    formatter = "service.logs.JsonFormatter" if fmt == "json" else "service.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": "service.logs.RequestContextFilter"}},
        "formatters": {"taskgram": {"()": formatter}},
        "handlers": {
            "taskgram": {
                "class": "logging.StreamHandler",
                "stream": stream if stream is not None else "ext://sys.stderr",
                "formatter": "taskgram",
                "filters": ["request"],
            },
        },
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level_name},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level_name},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
        },
        "root": {"handlers": ["taskgram"], "level": level_name},
    }


def configure_logging(*, level: str = "INFO", fmt: LogFormat = "json", stream: IO[str] | None = None) -> None:
    """Send all logs through one handler in the given format (``stream`` defaults to stderr). Calling it
    again replaces the handler rather than adding a second one."""
    logging.config.dictConfig(logging_config(level=level, fmt=fmt, stream=stream))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            try:
                return bytes(value).decode("latin-1")
            except (TypeError, ValueError):
                return None
    return None


class RequestIdMiddleware:
    """Pure ASGI middleware: gives each HTTP request an id (the caller's ``X-Request-ID`` when it is 1–128
    characters of ``[A-Za-z0-9._:-]``, else a new UUID), makes it visible to ``current_request_id()``,
    to log records and as ``request.state.request_id``, returns it as ``X-Request-ID``, and writes one
    access record per request. Add it last so that it wraps the other middleware."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True, logger_name: str = ACCESS_LOGGER) -> None:
        self.app = app
        self.access_log = access_log
        self.logger = logging.getLogger(logger_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = _request_id.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        t0 = time.perf_counter()
        failed: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            failed = exc
            raise
        finally:
            if self.access_log or failed is not None:
                fields = {
                    "method": scope.get("method"),
                    "path": str(scope.get("path", ""))[:_MAX_PATH_CHARS],
                    "status": status if status is not None else 500,
                    "duration_ms": round((time.perf_counter() - t0) * 1000.0, 3),
                    "client": (scope.get("client") or ("-",))[0],
                    "request_id": request_id,
                }
                if failed is None:
                    self.logger.info("request", extra=fields)
                else:
                    self.logger.error(
                        "request failed: %s",
                        type(failed).__name__,
                        extra=fields,
                        exc_info=(type(failed), failed, failed.__traceback__),
                    )
            _request_id.reset(token)
