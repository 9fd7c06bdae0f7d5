"""The FastAPI application: ``create_app(settings)`` builds it; the lifespan opens the indexes (read-only
memory maps), refuses broken ones with the reason recorded, and warms the query kernels.

Authentication: when ``settings.api_keys`` is non-empty every endpoint requires ``Authorization: Bearer
<key>``, except ``GET /v1/health`` (liveness probes; it shows index names, version and limits, nothing
from the data) and the API documentation (``/docs``, ``/openapi.json``).
"""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.deps import ServiceState, index_identity, require_api_key
from service.engine import Index, IndexSet
from service.errors import COMPAT_PATH, PROBLEM_MEDIA_TYPE, install_error_handlers, problem_body
from service.logs import RequestIdMiddleware, configure_logging
from service.metrics import install_metrics
from service.schemas import problem_responses
from service.settings import Settings

log = logging.getLogger("taskgram.service")


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with a 413 problem, whether or not the client sent a
    Content-Length (the body is read up to the limit before the application sees it)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, send: Send, size: str) -> None:
        detail = f"the request body is {size} bytes, the limit is {self.max_bytes}; split the batch"
        if scope.get("path") == COMPAT_PATH:  # infini-gram's clients read {"error": ...}
            body, media_type = json.dumps({"error": detail}).encode(), "application/json"
        else:
            body = problem_body(413, "payload-too-large", "Request too large", detail)
            media_type = PROBLEM_MEDIA_TYPE
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", media_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(scope, send, str(declared))
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # client went away before sending the whole body: nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, send, f"more than {self.max_bytes}")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Move every object alive after start-up (tokenizer, compiled kernels, ...) out of the collector's
    reach and collect young objects less often: a request of 100,000 queries allocates ~500,000 JSON
    objects, and with the default threshold each of them pays for rescans of the whole start-up heap."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, gc.get_threshold()[0]), gen1, gen2)


def open_indexes(settings: Settings) -> IndexSet:
    """Open every configured index; broken ones are refused with the reason (``IndexSet.failures``)."""
    return IndexSet.open(
        settings.indexes,
        verify_checksums=settings.verify_checksums,
        max_occurrences=settings.max_occurrences,
        space=settings.space,
    )


def create_app(settings: Settings, *, indexes: Mapping[str, Index] | None = None) -> FastAPI:
    """Build the application. ``indexes`` serves already opened indexes (embedding the service in a
    larger program); by default the lifespan opens ``settings.indexes``."""
    from service.routes import counts, distributions, documents, infinigram, meta, runs, tokenize, trace
    from service.ui import install_ui
    from taskgram import __version__

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        index_set = IndexSet(indexes) if indexes is not None else open_indexes(settings)
        opened, refused = dict(index_set.items()), index_set.failures
        for name, why in refused.items():
            log.error("index %r refused: %s", name, why)
        if not opened:
            reasons = "; ".join(f"{n}: {why}" for n, why in refused.items()) or "no index configured"
            raise RuntimeError(f"no index could be opened ({reasons})")
        if settings.warmup:
            for index in opened.values():
                index.warm_up()
        if metrics is not None:
            for name, index in opened.items():
                metrics.track_index(name, index.manifest)
                if hasattr(index, "group_states"):  # shard groups served elsewhere (service.ray_serve)
                    metrics.track_shard_groups(name, index.group_states)
        if settings.gc_tuning:
            tune_gc()
        app.state.taskgram = ServiceState(
            settings=settings,
            indexes=index_set,
            identities={name: index_identity(index) for name, index in opened.items()},
        )
        yield
        app.state.taskgram = None

    app = FastAPI(
        title="taskgram",
        version=__version__,
        description="Exact n-gram counts, document co-occurrence and ∞-gram probabilities over "
        "pretraining corpora. Errors are RFC 9457 application/problem+json.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    auth = [Depends(require_api_key)]
    app.include_router(meta.public_router, prefix="/v1")
    errors = problem_responses(400, 401, 404, 413, 422, 503)
    for module in (meta, counts, distributions, documents, tokenize, trace, runs):
        app.include_router(module.router, prefix="/v1", dependencies=auth, responses=errors)
    app.include_router(infinigram.router, dependencies=auth)
    install_ui(app)  # the /ui explorer: static assets; its API calls carry the key
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    metrics = install_metrics(app, dependencies=auth) if settings.metrics else None
    app.add_middleware(RequestIdMiddleware, access_log=settings.access_log)  # last: wraps everything
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (``taskgram serve --workers N`` and deployments): the settings
    ``taskgram serve`` passed in ``TASKGRAM_SERVE_SETTINGS`` (JSON), else ``TASKGRAM_*`` variables."""
    import json

    passed = os.environ.get("TASKGRAM_SERVE_SETTINGS")
    settings = Settings(**json.loads(passed)) if passed else Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)  # each worker process
    if settings.workers > 1 and settings.metrics:
        log.warning("each of the %d worker processes keeps its own /metrics counts", settings.workers)
    return create_app(settings)
