"""The one place where failures become HTTP answers: RFC 9457 ``application/problem+json`` bodies
``{type, title, status, detail}`` (plus ``errors`` for request validation). Routes raise exceptions from
the tree below or let the engine's exceptions through; they never build an error response themselves.

Exception tree (status code, problem type suffix)::

    ServiceError                    500  internal-error     base class; detail never leaks internals
     ├── BadRequest                 400  bad-request        body is not JSON / not UTF-8 / too deeply nested
     ├── Unauthorized               401  unauthorized       missing or unknown bearer API key
     ├── NotFound                   404  not-found          no such route or resource
     │    ├── UnknownIndex          404  unknown-index      no index served under that name
     │    └── DocumentNotFound      404  document-not-found doc_id outside the index
     ├── PayloadTooLarge            413  payload-too-large  body bytes or batch size over the limits
     ├── InvalidQuery               422  invalid-query      a query the limits or the engine refuse
     ├── BudgetExceeded             503  budget-exceeded    the request's time/work budget ran out
     ├── ShardsDown                 503  shards-unavailable shard groups (Ray Serve) down or late; the
     │                                                      body names them: ``missing_shards``
     └── CompatError                4xx/5xx                 infini-gram compatible ``POST /`` only: answered
                                                            as ``{"error": "..."}`` like infini-gram's API

Engine exceptions map onto it by one table, :data:`ENGINE_ERRORS` (``DocumentNotFound`` ->
DocumentNotFound, ``QueryError`` -> InvalidQuery, ``BudgetExceeded`` -> BudgetExceeded,
``IndexUnavailable`` -> UnknownIndex), and ``ShardsUnavailable`` -> ShardsDown (its shards go into the
body); any other ``EngineError`` or unexpected exception -> 500 with a reference number that is also
written to the server log with the traceback. The in-process client maps the same engine exceptions to the
client exceptions of the same problem types (:data:`clients.local.ENGINE_ERRORS`; a test checks that the
two tables agree).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.engine import errors as engine

log = logging.getLogger("taskgram.service")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:taskgram:problem:"


class ServiceError(Exception):
    """Base of the service's errors. ``detail`` is shown to the client; subclasses set status and type."""

    status = 500
    slug = "internal-error"
    title = "Internal server error"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BadRequest(ServiceError):
    status, slug, title = 400, "bad-request", "Malformed request"


class Unauthorized(ServiceError):
    status, slug, title = 401, "unauthorized", "Missing or invalid API key"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="taskgram"'})


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "Not found"


class UnknownIndex(NotFound):
    slug, title = "unknown-index", "Unknown index"


class DocumentNotFound(NotFound):
    slug, title = "document-not-found", "Document not found"


class PayloadTooLarge(ServiceError):
    status, slug, title = 413, "payload-too-large", "Request too large"


class InvalidQuery(ServiceError):
    status, slug, title = 422, "invalid-query", "Invalid query"


class BudgetExceeded(ServiceError):
    status, slug, title = 503, "budget-exceeded", "Query budget exceeded"

    def __init__(self, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class ShardsDown(ServiceError):
    """Part of a distributed index did not answer; never a partial sum. ``missing_shards`` (shard
    numbers) and ``shard_groups`` (group name -> what happened) go into the problem body."""

    status, slug, title = 503, "shards-unavailable", "Shards unavailable"

    def __init__(self, detail: str, *, shards: list[int], groups: dict[str, str], retry_after_s: int = 1):
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})
        self.shards = shards
        self.groups = groups


class CompatError(ServiceError):
    """An error of the infini-gram compatible endpoint ``POST /``: its clients read ``{"error": ...}``.
    infini-gram answers some bad queries with status 200; here every error has a 4xx/5xx status."""

    slug, title = "compat-error", "infini-gram compatible query failed"

    def __init__(self, detail: str, status: int = 400, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers=headers)
        self.status = status

    @classmethod
    def wrap(cls, err: ServiceError) -> CompatError:
        status = err.status if err.status != 422 else 400
        return cls(err.detail, status, headers=err.headers)


COMPAT_PATH = "/"


def compat_response(error: CompatError) -> Response:
    body = json.dumps({"error": error.detail}, ensure_ascii=False).encode("utf-8")
    return Response(body, status_code=error.status, media_type="application/json", headers=error.headers)


def problem_body(status: int, slug: str, title: str, detail: str, **extra: Any) -> bytes:
    payload = {
        "type": PROBLEM_TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def problem_response(error: ServiceError, **extra: Any) -> Response:
    body = problem_body(error.status, error.slug, error.title, error.detail, **extra)
    return Response(body, status_code=error.status, media_type=PROBLEM_MEDIA_TYPE, headers=error.headers)


#: engine exception -> service error, most specific first (the first match wins)
ENGINE_ERRORS: tuple[tuple[type[engine.EngineError], type[ServiceError]], ...] = (
    (engine.DocumentNotFound, DocumentNotFound),
    (engine.QueryError, InvalidQuery),
    (engine.BudgetExceeded, BudgetExceeded),
    (engine.IndexUnavailable, UnknownIndex),
)


def from_engine_error(err: engine.EngineError) -> ServiceError:
    """Translate an engine exception (whose message is written for users) into a service error."""
    if isinstance(err, engine.ShardsUnavailable):
        return ShardsDown(str(err), shards=err.shards, groups=err.groups)
    for engine_cls, service_cls in ENGINE_ERRORS:
        if isinstance(err, engine_cls):
            return service_cls(str(err))
    return ServiceError("the query engine failed")


def _internal(err: BaseException, request: Request) -> Response:
    reference = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s %s", reference, request.method, request.url.path, exc_info=err)
    detail = f"internal error; the server log has the details under {reference}"
    if request.url.path == COMPAT_PATH:
        return compat_response(CompatError(detail, 500))
    return problem_response(ServiceError(detail))


_HTTP_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    413: PayloadTooLarge,
    422: InvalidQuery,
    503: BudgetExceeded,
}


def _validation_errors(err: RequestValidationError) -> list[dict[str, Any]]:
    """Where and what, without echoing the (possibly huge) input back."""
    out = []
    for item in err.errors()[:20]:
        out.append(
            {
                "loc": [str(part) for part in item.get("loc", ())],
                "msg": str(item.get("msg", "")),
                "type": str(item.get("type", "")),
            }
        )
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into problem+json."""

    def answer(request: Request, err: ServiceError, **extra: Any) -> Response:
        if request.url.path == COMPAT_PATH:
            return compat_response(err if isinstance(err, CompatError) else CompatError.wrap(err))
        return problem_response(err, **extra)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, err: ServiceError) -> Response:
        if type(err) is ServiceError:
            return _internal(err, request)
        return answer(request, err)

    @app.exception_handler(engine.EngineError)
    async def _engine_error(request: Request, err: engine.EngineError) -> Response:
        mapped = from_engine_error(err)
        if type(mapped) is ServiceError:
            return _internal(err, request)
        if isinstance(mapped, ShardsDown):
            return answer(request, mapped, missing_shards=mapped.shards, shard_groups=mapped.groups)
        return answer(request, mapped)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> Response:
        errors = _validation_errors(err)
        if request.url.path == COMPAT_PATH:
            first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
            return compat_response(CompatError(f"{'.'.join(first['loc'][1:]) or 'body'}: {first['msg']}"))
        if any(e["type"] == "json_invalid" for e in errors):
            return answer(request, BadRequest("the body is not valid JSON"), errors=errors)
        loc: list[str] = errors[0]["loc"] if errors else []
        msg: str = errors[0]["msg"] if errors else "invalid request"
        detail = f"{'.'.join(loc)}: {msg}" if loc else msg
        if len(errors) > 1:
            detail += f" (and {len(err.errors()) - 1} more)"
        return answer(request, InvalidQuery(detail), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> Response:
        cls = _HTTP_STATUS.get(err.status_code)
        detail = err.detail if isinstance(err.detail, str) else "request refused"
        if err.status_code == 400 and "parsing the body" in detail:
            detail = "the body could not be parsed as JSON (invalid UTF-8 or nested too deeply)"
        if cls is None:
            error = ServiceError(detail)
            error.status = err.status_code
            error.slug = f"http-{err.status_code}"
            error.title = detail
            error.headers = dict(err.headers or {})
            return answer(request, error)
        return answer(request, cls(detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> Response:
        return _internal(err, request)
